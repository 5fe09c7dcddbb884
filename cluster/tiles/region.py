"""The region of interest: a (multi)polygon in the grid's CRS.

A state boundary arrives as GeoJSON, usually in WGS 84 (RFC 7946 allows
nothing else) but often, from surveying offices, in the projected CRS of the
grid with a legacy ``crs`` member. Both are accepted; either way the region
is reprojected once, here, so that tile enumeration and masking never deal
with CRSs. Anything that is not an area (points, lines, empty or invalid
polygons) is refused up front, because a mapping run over it would either
do nothing or silently map the wrong place.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import shapely
from rasterio._err import CPLE_BaseError  # what GDAL/PROJ failures raise; not re-exported
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform_geom

from cluster.errors import ClusterError

# RFC 7946: GeoJSON without a CRS is WGS 84 longitude/latitude.
GEOJSON_DEFAULT_CRS = "EPSG:4326"
_POLYGONAL = ("Polygon", "MultiPolygon")


@dataclass(frozen=True)
class Region:
    """A non-empty, valid (multi)polygon in ``crs``; ``source`` names where it came from.

    The geometry is prepared (GEOS spatial index) on creation, because every
    tile of a run asks it an intersection question.
    """

    geometry: shapely.Geometry
    crs: str
    source: str = "<region>"

    def __post_init__(self) -> None:
        if not isinstance(self.geometry, shapely.Polygon | shapely.MultiPolygon):
            raise ClusterError(
                f"{self.source}: region must be a Polygon or MultiPolygon, "
                f"got {self.geometry.geom_type}"
            )
        if self.geometry.is_empty or self.geometry.area <= 0:
            raise ClusterError(f"{self.source}: region is empty (no area); give a polygon")
        if not self.geometry.is_valid:
            raise ClusterError(
                f"{self.source}: region polygon is invalid "
                f"({shapely.is_valid_reason(self.geometry)}); repair it, e.g. with "
                "`ogr2ogr -makevalid` or shapely.make_valid"
            )
        if shapely.get_precision(self.geometry) != 0:
            # A fixed precision would make every clip snap to it and lose slivers.
            object.__setattr__(self, "geometry", shapely.set_precision(self.geometry, 0))
        shapely.prepare(self.geometry)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(minx, miny, maxx, maxy) in the region's CRS."""
        minx, miny, maxx, maxy = self.geometry.bounds
        return (minx, miny, maxx, maxy)


def load_region(source: str | os.PathLike[str] | Mapping[str, Any], grid_crs: str) -> Region:
    """Read a GeoJSON Feature, FeatureCollection or geometry and return it in ``grid_crs``.

    The CRS of the input is, in order: a feature's ``properties.crs``, the
    document's ``crs`` member (a string such as ``"EPSG:25832"`` or the 2008
    ``{"type": "name", "properties": {"name": ...}}`` form), else EPSG:4326.
    All polygons are unioned, so overlapping districts form one region.
    """
    if isinstance(source, Mapping):
        name, doc = "<geojson dict>", source
    else:
        name, doc = str(source), _read_json(str(source))
    target = _parse_crs(grid_crs, f"{name}: grid CRS")
    parts = []
    for index, geom, declared in _walk(doc, name, None, "root"):
        crs_text = declared or GEOJSON_DEFAULT_CRS
        src = _parse_crs(crs_text, f"{name}: CRS of {index}")
        try:
            shape = shapely.geometry.shape(geom)
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise ClusterError(f"{name}: {index} has malformed coordinates ({exc})") from exc
        if src.is_geographic and not shape.is_empty:
            _check_lonlat(shape, name, index, crs_text, declared is None)
        try:
            if src != target and not shape.is_empty:
                shape = shapely.geometry.shape(transform_geom(src, target, shape.__geo_interface__))
        except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
            raise ClusterError(f"{name}: {index} has malformed coordinates ({exc})") from exc
        except CPLE_BaseError as exc:  # PROJ refusing a point: outside the CRS's domain
            raise ClusterError(
                f"{name}: {index} cannot be reprojected from {crs_text} to {grid_crs} ({exc}); "
                "check that its crs member names the CRS its coordinates are in"
            ) from exc
        if not shape.is_valid:
            raise ClusterError(
                f"{name}: {index} is an invalid polygon ({shapely.is_valid_reason(shape)}); "
                "repair it, e.g. with `ogr2ogr -makevalid` or shapely.make_valid"
            )
        if not shape.is_empty:
            parts.append(shape)
    if not parts:
        raise ClusterError(f"{name}: region is empty (no polygon with coordinates); give one")
    merged = shapely.union_all(parts) if len(parts) > 1 else parts[0]
    if isinstance(merged, shapely.GeometryCollection) and not isinstance(
        merged, shapely.MultiPolygon
    ):
        polys = [p for p in shapely.get_parts(merged) if isinstance(p, shapely.Polygon)]
        merged = shapely.MultiPolygon(polys)
    return Region(merged, grid_crs, name)


def _check_lonlat(
    shape: shapely.Geometry, name: str, index: str, crs_text: str, defaulted: bool
) -> None:
    """Projected metres in a file read as lon/lat (GeoJSON without a ``crs`` member,
    the commonest mistake with surveying offices' exports) would otherwise end in
    PROJ's "Invalid latitude", naming neither the file nor the fix."""
    minx, miny, maxx, maxy = shape.bounds
    if minx >= -180 and maxx <= 180 and miny >= -90 and maxy <= 90:
        return
    x, y = next((x, y) for x, y in shapely.get_coordinates(shape) if abs(x) > 180 or abs(y) > 90)
    said = "has no crs member, so GeoJSON reads it as" if defaulted else "declares"
    fix = "add a crs member naming" if defaulted else "make its crs member name"
    raise ClusterError(
        f"{name}: {index} has coordinates like ({x:.6g}, {y:.6g}), which cannot be longitude/"
        f"latitude, but the file {said} {crs_text}; if they are projected (e.g. metres), "
        f'{fix} their CRS (e.g. "crs": "EPSG:25832"), or reproject the file to EPSG:4326 '
        "(ogr2ogr -t_srs EPSG:4326)"
    )


def _read_json(path: str) -> Mapping[str, Any]:
    """A local path or an s3:// URI."""
    from cluster.storage import objstore  # deferred: objstore pulls in boto3

    try:
        data = objstore.read_bytes(path)
        if data is None:
            raise ClusterError(f"{path}: region file not found; check the path")
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ClusterError(f"{path}: cannot read region file ({exc})") from exc
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ClusterError(f"{path}: not valid JSON ({exc}); give a GeoJSON file") from exc
    if not isinstance(doc, Mapping):
        raise ClusterError(f"{path}: not a GeoJSON object (top level is {type(doc).__name__})")
    return doc


def _crs_member(obj: Mapping[str, Any], inherited: str | None, where: str) -> str | None:
    """The CRS text an object declares, else the one it inherits."""
    crs = obj.get("crs")
    if crs is None:
        return inherited
    if isinstance(crs, str):
        return crs
    if isinstance(crs, Mapping):
        props = crs.get("properties") or {}
        if "name" in props:
            return str(props["name"])
        if "code" in props:  # the 2008 draft's {"type": "EPSG", "properties": {"code": ...}}
            return f"EPSG:{props['code']}"
    raise ClusterError(f"{where}: unrecognised crs member {crs!r}; use a string like 'EPSG:25832'")


def _walk(
    obj: Any, name: str, crs: str | None, index: str
) -> Iterator[tuple[str, Mapping[str, Any], str | None]]:
    """Yield (where, polygonal geometry dict, declared crs text or None) for every
    polygon in ``obj``."""
    if not isinstance(obj, Mapping) or "type" not in obj:
        raise ClusterError(f"{name}: {index} is not a GeoJSON object (no 'type')")
    kind = obj["type"]
    crs = _crs_member(obj, crs, f"{name}: {index}")
    if kind == "FeatureCollection":
        features = obj.get("features")
        if not isinstance(features, list):
            raise ClusterError(f"{name}: FeatureCollection has no 'features' list")
        for i, feature in enumerate(features):
            yield from _walk(feature, name, crs, f"feature {i}")
    elif kind == "Feature":
        props = obj.get("properties") or {}
        if isinstance(props, Mapping) and props.get("crs") is not None:
            crs = str(props["crs"])
        if obj.get("geometry") is not None:  # a null geometry is legal GeoJSON: no area
            yield from _walk(obj["geometry"], name, crs, index)
    elif kind == "GeometryCollection":
        for i, geom in enumerate(obj.get("geometries") or []):
            yield from _walk(geom, name, crs, f"{index} geometry {i}")
    elif kind in _POLYGONAL:
        if not isinstance(obj.get("coordinates"), list | tuple):
            raise ClusterError(f"{name}: {index} ({kind}) has no coordinates list")
        yield index, obj, crs
    else:
        raise ClusterError(
            f"{name}: {index} is a {kind}, but a region must be Polygon or MultiPolygon "
            "(buffer points and lines into areas first)"
        )


def _parse_crs(text: str, what: str) -> CRS:
    try:
        return CRS.from_user_input(text)
    except CRSError as exc:
        raise ClusterError(f"{what} {text!r} is not a CRS rasterio knows ({exc})") from exc
