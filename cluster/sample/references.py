"""The sample region's truth as reference data arrives from mapping teams.

Real labels are never the model's own grid: stands are polygons in a GIS
(GeoPackage, lon/lat, class names as text), field plots are points
(GeoJSON, class codes), an older map is a raster in another CRS at another
resolution. Writing the sample's labels those three ways lets tests check
that each route through ``cluster.training.labels`` lands on the same pixels
as ``labels.tif``.

Seeded like the rest of the sample: the same spec writes the same files.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyogrio
import pyogrio.raw
import rasterio
import shapely
from affine import Affine
from rasterio import features
from rasterio.enums import Resampling
from rasterio.warp import reproject, transform, transform_bounds, transform_geom
from scipy import ndimage

from cluster.errors import ClusterError
from cluster.sample.catalog import SampleRegion, write_labels
from cluster.sample.imagery import Raster
from cluster.sample.scene import CLASS_NAMES, NODATA_CLASS, SampleSpec

__all__ = [
    "POINT_COUNT",
    "RASTER_CRS",
    "RASTER_RESOLUTION",
    "References",
    "write_references",
    "write_stands",
]

POINT_COUNT = 300
POINT_MARGIN_PX = 3  # points keep this far from any other class or nodata
RASTER_CRS = "EPSG:32632"  # WGS 84 / UTM 32N: the sample's zone on another datum
RASTER_RESOLUTION = 20.0
_STREAM = 0x5EED_0001  # seeds the points apart from the scene's own draws
_JITTER = 0.4  # px: points are not on pixel centres, as GPS fixes are not
# GDAL stamps a GeoPackage with the time it was written; a fixed stamp keeps
# the sample byte-identical between runs.
_GPKG_DATE = "2024-01-01T00:00:00Z"


@dataclass(frozen=True)
class References:
    """Paths of the sample's reference labels."""

    stands: Path  # GeoPackage, EPSG:4326, polygons, attribute "species" = class name
    points: Path  # GeoJSON (RFC 7946, lon/lat), points, attribute "class_id" = class index
    raster: Path  # uint8 GeoTIFF in EPSG:32632 at 20 m, nodata 255, CLASS_NAMES tag


def write_references(region: SampleRegion, spec: SampleSpec, out: Path | None = None) -> References:
    """Write ``region``'s labels as stands, points and a coarser raster (beside labels.tif)."""
    root = Path(region.root if out is None else out)
    root.mkdir(parents=True, exist_ok=True)
    with rasterio.open(region.labels) as src:
        labels = src.read(1)
        if labels.shape != (spec.height, spec.width) or src.transform != spec.transform:
            raise ClusterError(
                f"{region.labels}: {labels.shape[1]}x{labels.shape[0]} px at {src.transform.c}, "
                f"{src.transform.f} is not the region of {spec}; pass the spec it was written with"
            )
    refs = References(
        stands=root / "stands.gpkg",
        points=root / "points.geojson",
        raster=root / f"labels_{RASTER_CRS.replace(':', '').lower()}_20m.tif",
    )
    write_stands(refs.stands, labels, spec)
    refs.points.write_text(json.dumps(_points(labels, spec), indent=1) + "\n")
    _write_raster(refs.raster, labels, spec)
    return refs


def write_stands(
    path: Path,
    labels: np.ndarray,
    spec: SampleSpec,
    class_names: tuple[str, ...] = CLASS_NAMES,
) -> None:
    """Stands traced on pixel edges, so rasterised back at 10 m they are labels.tif again.

    ``labels`` is on ``spec``'s grid; attribute "species" is ``class_names[class]``.
    """
    shapes = features.shapes(
        labels, mask=labels != NODATA_CLASS, connectivity=4, transform=spec.transform
    )
    geoms, species = [], []
    for geom, value in shapes:
        geoms.append(shapely.geometry.shape(transform_geom(spec.crs, "EPSG:4326", geom)))
        species.append(class_names[int(value)])
    path.unlink(missing_ok=True)
    before = pyogrio.get_gdal_config_option("OGR_CURRENT_DATE")
    pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": _GPKG_DATE})
    try:
        pyogrio.raw.write(
            path,
            shapely.to_wkb(np.array(geoms, dtype=object)),
            [np.array(species, dtype=object)],
            ["species"],
            layer="stands",
            driver="GPKG",
            geometry_type="Polygon",
            crs="EPSG:4326",
        )
    finally:
        pyogrio.set_gdal_config_options({"OGR_CURRENT_DATE": before})


def _points(labels: np.ndarray, spec: SampleSpec) -> dict[str, object]:
    """About ``POINT_COUNT`` points, as many per class as the class has room for."""
    size = 2 * POINT_MARGIN_PX + 1
    rng = np.random.default_rng([spec.seed, _STREAM])
    present = [c for c in range(len(CLASS_NAMES)) if (labels == c).any()]
    chosen = []
    for cls in present:
        inside = ndimage.binary_erosion(
            labels == cls, structure=np.ones((size, size), bool), border_value=0
        )
        candidates = np.flatnonzero(inside)
        take = min(candidates.size, POINT_COUNT // len(present))
        chosen.append(np.sort(rng.choice(candidates, size=take, replace=False)))
    flat = np.concatenate(chosen)
    rows, cols = np.divmod(flat, spec.width)
    jitter = rng.uniform(-_JITTER, _JITTER, size=(2, flat.size))
    x = spec.origin[0] + (cols + 0.5 + jitter[0]) * spec.resolution
    y = spec.origin[1] - (rows + 0.5 + jitter[1]) * spec.resolution
    lon, lat = transform(spec.crs, "EPSG:4326", x, y)
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"class_id": int(labels.flat[k])},
                "geometry": {"type": "Point", "coordinates": [round(a, 8), round(b, 8)]},
            }
            for k, a, b in zip(flat.tolist(), lon, lat, strict=True)
        ],
    }


def _write_raster(path: Path, labels: np.ndarray, spec: SampleSpec) -> None:
    """labels.tif nearest-resampled to 20 m in EPSG:32632, pixels snapped to whole 20 m."""
    res = RASTER_RESOLUTION
    minx, miny, maxx, maxy = transform_bounds(spec.crs, RASTER_CRS, *spec.bounds)
    x0, y0 = math.floor(minx / res) * res, math.ceil(maxy / res) * res
    width, height = math.ceil((maxx - x0) / res), math.ceil((y0 - miny) / res)
    dst_transform = Affine(res, 0.0, x0, 0.0, -res, y0)
    coarse = np.full((height, width), NODATA_CLASS, dtype=np.uint8)
    reproject(
        labels,
        coarse,
        src_transform=spec.transform,
        src_crs=spec.crs,
        src_nodata=NODATA_CLASS,
        dst_transform=dst_transform,
        dst_crs=RASTER_CRS,
        dst_nodata=NODATA_CLASS,
        resampling=Resampling.nearest,
    )
    write_labels(path, Raster(coarse[None], dst_transform, RASTER_CRS, NODATA_CLASS))
