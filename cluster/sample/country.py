"""A country-sized region and a catalog of orthophoto footprints over it, for scale tests.

``statemap plan`` and tile enumeration must cope with Germany at 1 m (1.4
million 512-px tiles), and nothing of that size can be shipped or
downloaded. So the outline is a rough Germany (about 40 vertices, lon/lat,
densified to a realistic boundary's vertex count, with a lake-sized hole so
the hole path is exercised), and the catalog lists the items German state
survey offices deliver: digital orthophotos (DOP20: 20 cm, 4-band RGBI
uint8) cut into square tiles of 1 or 2 km in ETRS89 / UTM 32N. The items
carry the STAC fields a plan reads (footprint, datetime, eo/raster bands,
``proj:shape``, ``file:size``) but no raster exists behind their hrefs: a
plan never opens imagery, and 2 km tiles over Germany would be 7 TB.

Everything is seeded: the same spec writes byte-identical files. Items are
generated and written one tile row at a time, so memory does not grow with
the country.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from rasterio.warp import transform, transform_geom

from cluster.errors import ClusterError
from cluster.imagery.itemcollection import NDJSON_SUFFIXES

__all__ = [
    "GERMANY_LONLAT",
    "LAKE_LONLAT",
    "FootprintSpec",
    "footprint_items",
    "germany",
    "write_items",
]

# Clockwise from the Danish border; coarse on purpose, densified by ``germany``.
GERMANY_LONLAT = [
    (8.6, 54.9), (9.9, 54.8), (11.0, 54.4), (12.5, 54.5), (13.6, 54.6), (14.2, 53.9),
    (14.4, 53.3), (14.6, 52.6), (14.7, 51.9), (15.0, 51.1), (14.3, 50.9), (13.5, 50.7),
    (12.9, 50.4), (12.1, 50.3), (12.5, 49.7), (13.0, 49.3), (13.8, 48.8), (13.4, 48.4),
    (13.0, 47.5), (12.2, 47.7), (11.1, 47.4), (10.5, 47.5), (9.6, 47.5), (8.6, 47.6),
    (7.6, 47.6), (7.6, 48.1), (8.2, 49.0), (7.0, 49.1), (6.4, 49.2), (6.4, 49.8),
    (6.1, 50.1), (6.2, 50.5), (6.0, 50.8), (5.9, 51.1), (6.2, 51.5), (6.0, 51.9),
    (6.8, 52.0), (7.0, 52.2), (7.1, 52.9), (7.2, 53.3), (7.0, 53.6), (8.0, 53.7),
    (8.6, 53.9), (8.9, 54.4), (8.6, 54.9),
]  # fmt: skip
LAKE_LONLAT = [(12.3, 53.35), (12.75, 53.35), (12.75, 53.6), (12.3, 53.6), (12.3, 53.35)]
ORTHO_BANDS = ("red", "green", "blue", "nir")


def germany(vertices: int = 20_000) -> dict[str, Any]:
    """A GeoJSON Feature (WGS 84) of rough Germany with ``vertices`` boundary points."""
    shell = shapely.Polygon(GERMANY_LONLAT, [LAKE_LONLAT])
    step = shell.exterior.length / max(vertices, len(GERMANY_LONLAT))
    dense = shapely.segmentize(shell, step)
    return {"type": "Feature", "properties": {}, "geometry": shapely.geometry.mapping(dense)}


@dataclass(frozen=True)
class FootprintSpec:
    """An orthophoto delivery: tiles of ``tile_m`` metres on a ``crs`` grid at ``gsd`` metres.

    Flight years vary in blocks of ``block_km`` (states fly their area over
    several years); ``file:size`` is the raw size times a seeded ratio in
    ``ratio`` (lossless DEFLATE on 8-bit aerial imagery keeps 40-60 %).
    """

    tile_m: float = 2000.0
    gsd: float = 0.2
    crs: str = "EPSG:25832"
    collection: str = "dop20"
    href_root: str = "s3://orthophotos/dop20"
    years: tuple[int, ...] = (2021, 2022, 2023)
    block_km: float = 100.0
    ratio: tuple[float, float] = (0.4, 0.6)
    seed: int = 0

    @property
    def pixels(self) -> int:
        """Width (= height) of one tile's raster."""
        return round(self.tile_m / self.gsd)

    @property
    def raw_bytes(self) -> int:
        """Uncompressed size of one tile: 4 uint8 bands."""
        return self.pixels**2 * len(ORTHO_BANDS)


def footprint_items(
    outline: Mapping[str, Any] | shapely.Geometry, spec: FootprintSpec = FootprintSpec()
) -> Iterator[dict[str, Any]]:
    """STAC item dicts for every ``spec`` tile sharing area with ``outline``, row by row.

    ``outline``: a GeoJSON Feature or geometry, or a shapely geometry, in lon/lat.
    """
    if isinstance(outline, Mapping):
        outline = shapely.geometry.shape(outline.get("geometry", outline))
    area = shapely.geometry.shape(transform_geom("EPSG:4326", spec.crs, outline.__geo_interface__))
    if area.is_empty or area.area <= 0:
        raise ClusterError("footprint outline has no area; give a polygon in lon/lat")
    shapely.prepare(area)
    size = spec.tile_m
    minx, miny, maxx, maxy = area.bounds
    x0, y_top = np.floor(minx / size) * size, np.ceil(maxy / size) * size
    xs = x0 + size * np.arange(int(np.ceil((maxx - x0) / size)))
    for row in range(int(np.ceil((y_top - miny) / size))):
        y1 = y_top - row * size
        boxes = shapely.box(xs, y1 - size, xs + size, y1)
        hit = shapely.intersects(area, boxes)
        hit[hit] &= ~shapely.touches(area, boxes[hit])
        if hit.any():
            yield from _row_items(xs[hit], y1 - size, spec)


def write_items(path: str | os.PathLike[str], items: Iterator[Mapping[str, Any]]) -> int:
    """Write items as ndjson (``.ndjson``) or one FeatureCollection (``.json``); the count."""
    path = os.fspath(path)
    ndjson = path.lower().endswith(NDJSON_SUFFIXES)
    n = 0
    with open(path, "w", encoding="utf-8") as out:
        if not ndjson:
            out.write('{"type": "FeatureCollection", "features": [\n')
        for item in items:
            if n and not ndjson:
                out.write(",\n")
            out.write(json.dumps(item, separators=(",", ":")))
            if ndjson:
                out.write("\n")
            n += 1
        if not ndjson:
            out.write("\n]}\n")
    return n


def _row_items(xs: np.ndarray, y0: float, spec: FootprintSpec) -> Iterator[dict[str, Any]]:
    """One row of tiles (lower-left corners ``xs``, ``y0``); corners reprojected together."""
    size = spec.tile_m
    cx = np.stack([xs, xs + size, xs + size, xs, xs], axis=1)
    cy = np.tile([y0, y0, y0 + size, y0 + size, y0], (len(xs), 1))
    lon, lat = transform(spec.crs, "EPSG:4326", cx.ravel(), cy.ravel())
    lon = np.round(np.asarray(lon).reshape(-1, 5), 7)
    lat = np.round(np.asarray(lat).reshape(-1, 5), 7)
    km, n = size / 1000, spec.pixels
    epsg = spec.crs.split(":")[-1]
    for x, lons, lats in zip(xs, lon, lat, strict=True):
        east, north = int(x // 1000), int(y0 // 1000)
        item_id = f"{spec.collection}_{epsg}_{east}_{north}_{km:g}"
        seed = zlib.crc32(f"{spec.seed}/{item_id}".encode())
        rng = np.random.default_rng(seed)
        block = int(x // (spec.block_km * 1000)) + int(y0 // (spec.block_km * 1000))
        year = spec.years[block % len(spec.years)]
        flown = dt.date(year, 5, 1) + dt.timedelta(days=int(rng.integers(0, 120)))  # leaves on
        ring = [[float(a), float(b)] for a, b in zip(lons, lats, strict=True)]
        yield {
            "type": "Feature",
            "stac_version": "1.1.0",
            "stac_extensions": [
                "https://stac-extensions.github.io/eo/v1.1.0/schema.json",
                "https://stac-extensions.github.io/file/v2.1.0/schema.json",
                "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
                "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
            ],
            "id": item_id,
            "collection": spec.collection,
            "geometry": {"type": "Polygon", "coordinates": [ring]},
            "bbox": [float(lons.min()), float(lats.min()), float(lons.max()), float(lats.max())],
            "properties": {
                "datetime": f"{flown.isoformat()}T10:00:00Z",
                "gsd": spec.gsd,
                "proj:code": spec.crs,
            },
            "links": [],
            "assets": {
                "image": {
                    "href": f"{spec.href_root}/{item_id}.tif",
                    "type": "image/tiff; application=geotiff; profile=cloud-optimized",
                    "roles": ["data"],
                    "file:size": int(spec.raw_bytes * rng.uniform(*spec.ratio)),
                    "proj:shape": [n, n],
                    "proj:transform": [spec.gsd, 0.0, float(x), 0.0, -spec.gsd, y0 + size],
                    "eo:bands": [{"name": b, "common_name": b} for b in ORTHO_BANDS],
                    "raster:bands": [{"data_type": "uint8", "nodata": 0} for _ in ORTHO_BANDS],
                },
                "thumbnail": {
                    "href": f"{spec.href_root}/{item_id}.jpg",
                    "type": "image/jpeg",
                    "roles": ["thumbnail"],
                    "file:size": 20_000 + int(rng.integers(0, 10_000)),
                },
            },
        }
