"""Vector reference labels: a file's features as class-indexed polygons in the grid CRS.

Mapping teams keep reference data in whatever their GIS writes (GeoPackage,
GeoJSON, FlatGeobuf, GeoParquet), in whatever CRS, with class names typed by
hand. Everything that can be wrong with such a file is found here, once, when
the labels are opened: a misspelt class caught while rasterising chip 9,000 on
a Ray worker would cost the whole run. ``cluster.training.labels`` turns the
result into tiles; this module knows nothing of grids.

``LabelError`` lives here, not in ``labels``, because ``labels`` imports this
module and an import loop is not allowed; ``labels`` re-exports it.
"""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import pyogrio.raw
import shapely
from pyogrio.errors import DataLayerError, DataSourceError
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform as warp_transform

from cluster.errors import ClusterError

__all__ = [
    "OGR_SUFFIXES",
    "PARQUET_SUFFIXES",
    "LabelError",
    "class_indices",
    "footprints",
    "is_ogr_vector",
    "read_vector",
    "to_crs",
]

OGR_SUFFIXES = (".gpkg", ".geojson", ".json", ".fgb")
PARQUET_SUFFIXES = (".parquet", ".geoparquet")
_SHOWN = 5  # distinct bad values named in one message; more would bury the fix
_LINES = (1, 2)  # shapely type ids of LineString and LinearRing (parts, so no multis)
_POLYGON, _POINT = 3, 0
_MULTI = (4, 5, 6, 7)  # MultiPoint, MultiLineString, MultiPolygon, GeometryCollection
log = logging.getLogger(__name__)


class LabelError(ClusterError):
    """Reference labels that cannot be used as given: names the file, the values and the fix."""


def is_ogr_vector(path: Path) -> bool:
    """Whether GDAL opens ``path`` as vector data: how a file with an unknown suffix is sorted."""
    try:
        return bool(len(pyogrio.list_layers(path)))
    except (DataSourceError, DataLayerError):
        return False


def read_vector(
    path: Path, source: str, field: str, layer: str | None
) -> tuple[np.ndarray, np.ndarray, str]:
    """(geometries, the field's values, the file's CRS) of every feature with a geometry.

    Features without geometry are dropped: they label no pixel, so their
    values cannot make a map wrong.
    """
    if path.suffix.lower() in PARQUET_SUFFIXES:
        wkb, values, crs = _read_parquet(path, source, field)
    else:
        wkb, values, crs = _read_ogr(path, source, field, layer)
    geoms = shapely.from_wkb(wkb)
    if shapely.has_z(geoms).any():  # GeoParquet may carry heights; rasterising has no use
        geoms = shapely.force_2d(geoms)
    keep = ~(shapely.is_missing(geoms) | shapely.is_empty(geoms))
    if not keep.any():
        raise LabelError(_no_features(source, len(geoms)))
    return geoms[keep], np.asarray(values, dtype=object)[keep], crs


def _read_ogr(
    path: Path, source: str, field: str, layer: str | None
) -> tuple[np.ndarray, np.ndarray, str]:
    try:
        info = pyogrio.read_info(path, layer=layer)
    except DataLayerError as exc:
        layers = [str(name) for name, _ in pyogrio.list_layers(path)]
        raise LabelError(
            f"{source}: has no layer {layer!r} ({exc}); its layers are {layers}: choose one"
        ) from exc
    except DataSourceError as exc:
        raise LabelError(
            f"{source}: GDAL cannot read it as vector data ({exc}); fix: give a "
            f"{'/'.join(OGR_SUFFIXES + PARQUET_SUFFIXES)} file, or a raster of class indices"
        ) from exc
    if info["features"] == 0:
        raise LabelError(_no_features(source, 0))
    fields = [str(f) for f in info["fields"]]
    if field not in fields:
        raise LabelError(_missing_field(source, field, fields))
    meta, _, wkb, values = pyogrio.raw.read(path, layer=layer, columns=[field], force_2d=True)
    crs = meta["crs"]
    if crs is None and info["driver"] == "GeoJSON":
        crs = "EPSG:4326"  # RFC 7946: GeoJSON without a crs member is WGS 84 lon/lat
    if crs is None:
        raise LabelError(
            f"{source}: has no CRS, so its coordinates could be anywhere; fix: assign the "
            f"CRS they are in, e.g. ogr2ogr -a_srs EPSG:25832 fixed{path.suffix} {path.name}"
        )
    return wkb, values[0], str(crs)


def _read_parquet(path: Path, source: str, field: str) -> tuple[np.ndarray, np.ndarray, str]:
    try:
        schema = pq.read_schema(path)
    except (OSError, pa.ArrowException) as exc:
        raise LabelError(f"{source}: not a readable Parquet file ({exc})") from exc
    raw = (schema.metadata or {}).get(b"geo")
    if raw is None:
        raise LabelError(
            f"{source}: Parquet without 'geo' metadata, so not GeoParquet; fix: write it "
            "with GeoPandas to_parquet() or ogr2ogr -f Parquet"
        )
    geo = json.loads(raw)
    column = geo.get("primary_column")
    meta = geo.get("columns", {}).get(column)
    if meta is None:
        raise LabelError(f"{source}: GeoParquet metadata names no primary geometry column")
    encoding = str(meta.get("encoding"))
    if encoding.upper() != "WKB":
        raise LabelError(
            f"{source}: geometry column {column!r} is encoded as {encoding!r}; only WKB is "
            "read; fix: rewrite it with WKB geometries (GeoPandas to_parquet("
            "geometry_encoding='WKB'), or ogr2ogr -lco GEOMETRY_ENCODING=WKB)"
        )
    if "crs" not in meta:
        crs = "EPSG:4326"  # the spec's default, OGC:CRS84: lon/lat, as rasterio orders 4326
    elif meta["crs"] is None:
        raise LabelError(
            f"{source}: GeoParquet says its CRS is unknown (crs: null); fix: write the file "
            "with the CRS its coordinates are in"
        )
    else:
        crs = json.dumps(meta["crs"]) if isinstance(meta["crs"], dict) else str(meta["crs"])
    fields = [name for name in schema.names if name != column]
    if field not in fields:
        raise LabelError(_missing_field(source, field, fields))
    table = pq.read_table(path, columns=[column, field])
    values = table.column(field)
    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    wkb = table.column(column).to_numpy()
    return np.asarray(wkb, dtype=object), values.to_numpy(zero_copy_only=False), crs


def _no_features(source: str, read: int) -> str:
    return (
        f"{source}: no features with a geometry (of {read} read); fix: point the labels "
        "at the file (or layer) that holds the reference data"
    )


def _missing_field(source: str, field: str, fields: Sequence[str]) -> str:
    return (
        f"{source}: has no field {field!r}; its fields are {list(fields)}; "
        "fix: set label_field to the one that holds the class"
    )


def class_indices(
    values: np.ndarray, class_names: Sequence[str], source: str, field: str
) -> np.ndarray:
    """uint8 class index of each value: a class name (any case, spaces trimmed) or 0..n-1.

    Every bad value is collected before refusing, so one run of the check
    shows the whole list to fix, not one value per attempt.
    """
    lookup = {name.strip().casefold(): i for i, name in enumerate(class_names)}
    n = len(class_names)
    cache: dict[object, int] = {}
    out = np.empty(len(values), dtype=np.uint8)
    bad: Counter[object] = Counter()
    nulls = 0
    for k, value in enumerate(values.tolist()):
        if not isinstance(value, str | int | float | bytes | None):
            value = repr(value)  # a list or date: no class, but named in the message
        try:
            index = cache[value]
        except KeyError:
            index = cache[value] = _class_index(value, lookup, n)
        if index >= 0:
            out[k] = index
        elif index == -1:
            nulls += 1
        else:
            bad[value] += 1
    if not bad and not nulls:
        return out
    problems = []
    if bad:
        listed = [f"{v!r} ({c:,} feature{'s' * (c != 1)})" for v, c in bad.most_common(_SHOWN)]
        more = f" and {len(bad) - _SHOWN} more" if len(bad) > _SHOWN else ""
        problems.append(f"values that are no class: {', '.join(listed)}{more}")
    if nulls:
        problems.append(f"{nulls:,} feature{'s' * (nulls != 1)} with no value (null or empty)")
    raise LabelError(
        f"{source}: field {field!r} has {'; '.join(problems)}. The classes are "
        f"{list(class_names)} (or their index 0..{n - 1}); fix: add missing names to "
        "classes, correct the values in the file, or choose another label_field"
    )


def _class_index(value: object, lookup: dict[str, int], n: int) -> int:
    """Index 0..n-1; -1 for no value; -2 for a value that is no class."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return -1
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return -1
        if text.casefold() in lookup:
            return lookup[text.casefold()]
        value = _number(text)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < n:
        return value
    return -2


def _number(text: str) -> object:
    """The number a text spells ("2", "2.0": a column GDAL typed as text), else the text."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        return float(text)
    except ValueError:
        return text


def to_crs(geoms: np.ndarray, src: str, dst: str, source: str) -> np.ndarray:
    """``geoms`` from ``src`` to ``dst``: one PROJ call for all coordinates of all features."""
    try:
        src_crs = CRS.from_user_input(src)
    except CRSError as exc:
        raise LabelError(f"{source}: its CRS is not one GDAL knows ({exc}): {src[:200]}") from exc
    dst_crs = CRS.from_user_input(dst)
    if src_crs == dst_crs:
        return geoms

    def move(xy: np.ndarray) -> np.ndarray:
        xs, ys = warp_transform(src_crs, dst_crs, xy[:, 0], xy[:, 1])
        return np.column_stack([xs, ys])

    out = shapely.transform(geoms, move)
    coords, owner = shapely.get_coordinates(out, return_index=True)
    broken = np.unique(owner[~np.isfinite(coords).all(axis=1)])
    if broken.size:
        raise LabelError(
            f"{source}: {broken.size:,} feature(s) cannot be projected from {src_crs} to "
            f"{dst} (e.g. feature #{broken[0]}); fix: check the file's CRS is the one its "
            "coordinates are in, or drop features far outside the grid's area"
        )
    return out


def footprints(
    geoms: np.ndarray,
    classes: np.ndarray,
    source: str,
    *,
    point_size: float,
    point_shape: str,
    inner_buffer: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(single polygons, their class, the feature each came from): points grown, polygons
    shrunk, multi-parts split.

    Split parts keep bounding boxes tight, so a multipolygon strewn across a
    state does not send its every tile to every part.
    """
    parts, owner = _explode(geoms)
    kind = shapely.get_type_id(parts)
    lines = np.isin(kind, _LINES)
    if lines.any():
        count = np.unique(owner[lines]).size
        raise LabelError(
            f"{source}: {count:,} feature(s) are lines, which cover no pixel area; fix: "
            "buffer them into polygons of the width they stand for, or remove them"
        )
    points, polys = kind == _POINT, kind == _POLYGON
    other = ~(points | polys)
    if other.any():
        names = sorted({g.geom_type for g in parts[other]})
        raise LabelError(
            f"{source}: {np.unique(owner[other]).size:,} feature(s) are {names}, not points "
            "or polygons; fix: convert them to polygons (ogr2ogr -nlt CONVERT_TO_LINEAR)"
        )
    out = parts.copy()
    half = point_size / 2
    if points.any():
        if point_shape == "disc":
            out[points] = shapely.buffer(parts[points], half, quad_segs=16)
        else:
            x, y = shapely.get_x(parts[points]), shapely.get_y(parts[points])
            out[points] = shapely.box(x - half, y - half, x + half, y + half)
    if inner_buffer > 0 and polys.any():
        out[polys] = shapely.buffer(parts[polys], -inner_buffer)
    alive = ~shapely.is_empty(out)
    had_area = np.unique(owner[polys])
    vanished = had_area.size - np.unique(owner[polys & alive]).size
    if not alive.any():
        raise LabelError(
            f"{source}: all {had_area.size:,} polygon feature(s) vanish under "
            f"inner_buffer={inner_buffer:g} m; fix: lower inner_buffer below the features' "
            "half-width"
        )
    if vanished:
        log.info(
            "%s: %d of %d polygon features vanish under inner_buffer=%g m",
            source, vanished, had_area.size, inner_buffer,
        )  # fmt: skip
    parts, again = _explode(out[alive])
    return parts, classes[owner[alive]][again], owner[alive][again]


def _explode(geoms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Single-part geometries and the index of the input each came from."""
    if not np.isin(shapely.get_type_id(geoms), _MULTI).any():
        return geoms, np.arange(len(geoms))  # the common case, kept cheap
    parts, owner = shapely.get_parts(geoms, return_index=True)
    while (nested := np.isin(shapely.get_type_id(parts), _MULTI)).any():  # nested collections
        inner, sub = shapely.get_parts(parts[nested], return_index=True)
        parts = np.concatenate([parts[~nested], inner])
        owner = np.concatenate([owner[~nested], owner[nested][sub]])
    return parts, owner
