"""What a run would do, before it does it: the core of ``statemap plan``.

A state-wide run at 1 m is hundreds of GPU-hours and terabytes of reads, so
its size is worth knowing before a cluster is booked: how many tiles, which
catalog items and how many bytes of them, how large the outputs, how many
GPU-hours at a throughput the user measured (``bench/pipeline.py``).

It costs seconds, and memory does not grow with the tile count: tiles are
counted row by row (``cluster.tiles.grid.count_tiles``), never listed; items stream
through the same selection a run makes (``cluster.imagery.catalog.Selection``: same
filters, same first-of-each-id, same refusal of an item that lacks a band)
in chunks whose footprints are reprojected in bulk. No raster is opened.

Output size: both COGs (class and confidence, uint8 each) over every pixel
of every tile, at the bytes per pixel measured on a real U-Net map, plus
overviews. The measurement (``python bench/plan.py --measure STORE``): the
map of ``statemap demo`` at its defaults (seed 0, a 1024 x 1024 px region at
10 m, the U-Net trained 150 s, 99 % of the pixels inside the region),
compiled by ``cluster.maps.compile.compile_store`` with its default DEFLATE. Its
full-resolution blocks take 0.0115 bytes per pixel for the class COG (87:1)
and 0.682 for the confidence COG (1.5:1: a probability is noisy where a
class is not), 0.694 together. Overviews add a third (each level a quarter
of the one above): 0.925, and the whole files, headers included, measured
0.929. Cross-checks: ``statemap demo --size 512 --seconds 40`` gave 0.594
at full resolution (0.796 whole), ``bench/compile.py``'s generated 10,240 px
map 0.503 (0.645 whole). So the estimate errs high, as a budget should; a
better-trained model is more confident, and its confidence compresses
better. Pixels outside the region are nodata and compress to nearly
nothing but are counted, which matters only for small regions.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from rasterio.crs import CRS

from cluster.errors import ClusterError
from cluster.imagery.catalog import CHUNK, Selection
from cluster.imagery.providers import band_assets
from cluster.imagery.stacitem import RawItem, collection_paused, geometry_json, project
from cluster.predict.setup import PredictorSetup, check_card, read_card
from cluster.tiles.grid import count_tiles
from cluster.tiles.region import Region, load_region

__all__ = ["OUTPUT_BYTES_PER_PIXEL", "Plan", "plan_run"]

# Measured bytes per tile pixel of the compiled COGs (see the module docstring).
CLASS_BYTES_PER_PIXEL = 0.0115
CONFIDENCE_BYTES_PER_PIXEL = 0.682
OVERVIEWS = 4 / 3  # each level a quarter of the one above: 1/4 + 1/16 + ... = 1/3
OUTPUT_BYTES_PER_PIXEL = (CLASS_BYTES_PER_PIXEL + CONFIDENCE_BYTES_PER_PIXEL) * OVERVIEWS
# raster:bands data_type values numpy does not spell.
_COMPLEX_BYTES = {"cint16": 4, "cint32": 8, "cfloat32": 8, "cfloat64": 16}


@dataclass(frozen=True)
class Plan:
    """The size of a run. ``output_bytes`` is an estimate (``OUTPUT_BYTES_PER_PIXEL``
    per tile pixel); ``input_bytes`` is an upper bound on what would be read
    (whole assets, though a run reads only the windows it needs), and leaves
    out the ``unsized`` items whose size no field told."""

    tiles: int  # tiles of the grid that intersect the region (what the run would compute)
    items: int  # catalog items the run would read: meeting the region, after its filters
    input_bytes: int  # bytes of the assets those items hold for the checkpoint's bands
    output_bytes: int  # estimated bytes of the compiled class + confidence COGs
    gpu_hours: float  # tiles / tiles_per_gpu_second / 3600
    tiles_per_gpu_second: float = 0.0
    tile_size: int = 0
    resolution: float = 0.0
    region_km2: float = 0.0
    region: str = ""
    catalog: str = ""
    filters: str = ""
    bands: tuple[str, ...] = ()
    estimated: int = 0  # items whose input size came from proj:shape, not a file size
    unsized: int = 0  # items with an asset of unknown size (not in input_bytes)

    def line(self) -> str:
        """The machine-readable summary, always the last line."""
        return (
            f"tiles={self.tiles} items={self.items} input_gb={self.input_bytes / 1e9:.3f} "
            f"output_gb={self.output_bytes / 1e9:.3f} gpu_hours={self.gpu_hours:.2f}"
        )

    def lines(self) -> list[str]:
        """What a person reads before booking the cluster, ending with ``line()``."""
        tile_km2 = self.tiles * (self.tile_size * self.resolution) ** 2 / 1e6
        per_1000 = self.gpu_hours / self.region_km2 * 1000 if self.region_km2 else 0.0
        sizes = []
        if self.estimated:
            sizes.append(f"{self.estimated:,} items sized from proj:shape x bands x data type")
        if self.unsized:
            sizes.append(
                f"input size unknown for {self.unsized:,} items (no file:size, no local file, "
                "no proj:shape with raster:bands data_type): not counted"
            )
        return [
            f"region {self.region}: {self.region_km2:,.0f} km²",
            f"tiles: {self.tiles:,} of {self.tile_size} x {self.tile_size} px at "
            f"{self.resolution:g} m ({tile_km2:,.0f} km² of tiles)",
            f"items: {self.items:,} of catalog {self.catalog} ({self.filters}) meet the region",
            f"input: {self.input_bytes / 1e9:,.3f} GB at most, the assets holding bands "
            f"{', '.join(self.bands)}" + (f" ({'; '.join(sizes)})" if sizes else ""),
            f"output: about {self.output_bytes / 1e9:,.3f} GB of class + confidence COGs "
            f"({OUTPUT_BYTES_PER_PIXEL:.2f} bytes per tile pixel with overviews, measured "
            "on compiled U-Net maps)",
            f"compute: {self.gpu_hours:,.2f} GPU-hours at {self.tiles_per_gpu_second:g} tiles/s "
            f"per GPU ({per_1000:.2f} per 1,000 km² of region)",
            self.line(),
        ]


def plan_run(
    setup: PredictorSetup, tiles_per_gpu_second: float, bands: Sequence[str] | None = None
) -> Plan:
    """Size the run ``setup`` describes; refuse what the run would refuse.

    ``bands``: the model's input bands; None reads them from the checkpoint's
    header (and then checks the grid against it, as a run does). Refused: a
    throughput that is not a positive number, a catalog whose selected items
    lack a band, filters leaving no item, a region no item meets.
    """
    tps = tiles_per_gpu_second
    if isinstance(tps, bool) or not isinstance(tps, int | float) or not 0 < tps < math.inf:
        raise ClusterError(
            f"tiles_per_gpu_second={tps!r} must be a positive number; measure it with "
            "`python bench/pipeline.py` on the GPU the run will use"
        )
    grid = setup.grid
    if bands is None:
        card = read_card(setup.checkpoint)
        check_card(card, grid, setup.checkpoint)
        bands = card.bands
    region = load_region(setup.region, grid.crs)
    tiles = count_tiles(grid, region)
    selection = Selection(
        setup.catalog, bands, grid.crs, collections=setup.collections, start=setup.start,
        end=setup.end, max_cloud_cover=setup.max_cloud_cover, region=region,
    )  # fmt: skip
    totals = _Totals()
    with collection_paused():
        for raw in selection:
            # Every selected item, meeting the region or not, must carry the bands: a
            # run refuses the catalog otherwise, so the plan does too.
            keys = band_assets(raw, selection.bands, setup.overrides)
            totals.add(raw, [_asset_bytes(raw, raw.assets[key]) for key in keys])
            if len(totals.pending) >= CHUNK:
                totals.flush(region, selection.crs)
        totals.flush(region, selection.crs)
    passed, items = selection.kept, totals.items
    if not passed:
        raise selection.nothing_passes()
    if not items:
        box = ", ".join(f"{v:.0f}" for v in region.bounds)
        raise ClusterError(
            f"catalog {setup.catalog}: none of its {passed} items ({selection.filters}) meets "
            f"region {region.source} (bounds {box} in {region.crs}); point the run at a "
            "catalog of that area, or widen the filters"
        )
    return Plan(
        tiles=tiles,
        items=items,
        input_bytes=totals.size,
        output_bytes=round(tiles * grid.tile_size**2 * OUTPUT_BYTES_PER_PIXEL),
        gpu_hours=tiles / tps / 3600,
        tiles_per_gpu_second=float(tps),
        tile_size=grid.tile_size,
        resolution=grid.resolution,
        region_km2=region.geometry.area / 1e6 if _metres(region) else 0.0,
        region=region.source,
        catalog=setup.catalog,
        filters=selection.filters,
        bands=tuple(bands),
        estimated=totals.estimated,
        unsized=totals.unsized,
    )


class _Totals:
    """Running sums over the items meeting the region. An item waits in ``pending``
    as its id, footprint text and sizes only (its dict is dropped), until a chunk
    of footprints is reprojected at once."""

    def __init__(self) -> None:
        self.items = self.size = self.estimated = self.unsized = 0
        self.pending: list[tuple[str, str, list[tuple[int | None, str]]]] = []

    def add(self, raw: RawItem, sized: list[tuple[int | None, str]]) -> None:
        self.pending.append((raw.id, geometry_json(raw), sized))

    def flush(self, region: Region, crs: CRS) -> None:
        ids, texts, sizes = zip(*self.pending, strict=True) if self.pending else ((), (), ())
        for hit, sized in zip(_meets(region, project(texts, ids, crs)), sizes, strict=True):
            if hit:
                self.items += 1
                self.size += sum(n for n, _ in sized if n is not None)
                self.estimated += any(how == "shape" for _, how in sized)
                self.unsized += any(n is None for n, _ in sized)
        self.pending.clear()


def _meets(region: Region, shapes: np.ndarray) -> np.ndarray:
    """Which footprints share area with the region: touching is not enough, as in
    ``Catalog.items_for`` (such an item would give no pixel)."""
    hit = shapely.intersects(region.geometry, shapes)
    hit[hit] &= ~shapely.touches(region.geometry, shapes[hit])
    return hit


def _asset_bytes(raw: RawItem, asset: Mapping[str, Any]) -> tuple[int | None, str]:
    """(bytes, how): the catalog's file:size, else a local file's size, else
    proj:shape x bands x data type (an uncompressed upper bound), else unknown."""
    size = asset.get("file:size")
    if isinstance(size, int | float) and not isinstance(size, bool) and size >= 0:
        return int(size), "file"
    href = raw.href(asset)
    if "://" not in href:
        try:
            return os.stat(href).st_size, "stat"
        except OSError:
            pass
    shape = asset.get("proj:shape") or raw.properties.get("proj:shape")
    bands = asset.get("raster:bands") or asset.get("bands")
    if isinstance(shape, list) and len(shape) >= 2 and isinstance(bands, list) and bands:
        widths = [_dtype_bytes(b.get("data_type") if isinstance(b, dict) else None) for b in bands]
        if all(w is not None for w in widths):
            try:
                pixels = int(shape[-2]) * int(shape[-1])
            except (TypeError, ValueError):
                return None, ""
            return pixels * sum(w for w in widths if w is not None), "shape"
    return None, ""


def _dtype_bytes(name: Any) -> int | None:
    if not isinstance(name, str):
        return None
    if name in _COMPLEX_BYTES:
        return _COMPLEX_BYTES[name]
    try:
        return np.dtype(name).itemsize
    except TypeError:
        return None


def _metres(region: Region) -> bool:
    """Whether the region's CRS counts in metres (so its area is in m²)."""
    units = CRS.from_user_input(region.crs).linear_units or ""
    return units.lower() in ("metre", "meter", "m")
