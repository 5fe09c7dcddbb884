"""The tile grid, and the lazy enumeration of the tiles that cover a region.

Conventions (DESIGN.md): a grid is CRS + origin + resolution + tile size +
halo; a tile is (row, col); one tile is one Zarr chunk. Rows grow southward
from the origin's y, columns eastward from its x (north-up rasters).

The origin must lie north-west of (or on) the region: row and col are Zarr
chunk indices, which cannot be negative. ``Grid.covering`` builds a grid whose
origin is snapped to whole tile spans, so grids of neighbouring regions at the
same resolution and tile size share tile edges.

Enumeration works one horizontal strip (tile row) at a time: the region is
clipped to the strip, and each connected piece of the clip covers one run of
columns (a connected set projects onto an interval). Memory is bounded by one
strip's pieces, never by the tile count: Germany at 1 m in 512-px tiles is
1.4 million tiles, and the driver only ever needs the next one.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from numbers import Integral, Real

import numpy as np
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.features import geometry_mask

from cluster.errors import ClusterError
from cluster.tiles.region import Region

__all__ = [
    "Grid",
    "Tile",
    "count_tiles",
    "iter_row_spans",
    "iter_tiles",
    "region_mask",
]

Bounds = tuple[float, float, float, float]
_ID_DIGITS = 6
_MAX_INDEX = 10**_ID_DIGITS
_ID_RE = re.compile(rf"r(\d{{{_ID_DIGITS}}})_c(\d{{{_ID_DIGITS}}})")
# Tile rows clipped together first, so a boundary with many vertices is cut
# into bands once instead of being scanned whole for every row.
_BAND_ROWS = 32


@dataclass(frozen=True, order=True)
class Tile:
    """One tile of a grid; ordering is row-major, the same as ``id`` ordering."""

    row: int
    col: int

    def __post_init__(self) -> None:
        row, col = self.row, self.col
        if (
            type(row) is int
            and type(col) is int
            and 0 <= row < _MAX_INDEX
            and 0 <= col < _MAX_INDEX
        ):
            return  # the common case, kept cheap: a run makes a million of these
        for field in ("row", "col"):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, Integral):
                raise ClusterError(f"Tile.{field} must be an integer, got {value!r}")
            if not 0 <= value < _MAX_INDEX:
                raise ClusterError(
                    f"Tile.{field}={value} is outside 0..{_MAX_INDEX - 1}; a negative index "
                    "means the region reaches north or west of the grid origin: move the origin"
                )
            object.__setattr__(self, field, int(value))

    @property
    def id(self) -> str:
        """Fixed-width so that sorting ids as strings sorts tiles row-major."""
        return f"r{self.row:0{_ID_DIGITS}d}_c{self.col:0{_ID_DIGITS}d}"

    @classmethod
    def parse(cls, tile_id: str) -> Tile:
        """The inverse of ``id``; refuses anything ``id`` would not have produced."""
        match = _ID_RE.fullmatch(tile_id) if isinstance(tile_id, str) else None
        if match is None:
            raise ClusterError(
                f"tile id {tile_id!r} is malformed; expected 'r<6 digits>_c<6 digits>', "
                "e.g. 'r000123_c000456'"
            )
        return cls(int(match[1]), int(match[2]))


@dataclass(frozen=True)
class Grid:
    """A north-up tile grid: ``origin`` is the upper-left corner of tile (0, 0)."""

    crs: str
    origin: tuple[float, float]
    resolution: float
    tile_size: int
    halo: int = 0

    def __post_init__(self) -> None:
        if not isinstance(self.crs, str):
            raise ClusterError(f"Grid.crs must be a string like 'EPSG:25832', got {self.crs!r}")
        try:
            CRS.from_user_input(self.crs)
        except CRSError as exc:
            raise ClusterError(
                f"Grid.crs {self.crs!r} is not a CRS rasterio knows ({exc}); give e.g. 'EPSG:25832'"
            ) from exc
        try:
            ox, oy = (float(v) for v in self.origin)
        except (TypeError, ValueError) as exc:
            raise ClusterError(f"Grid.origin must be (x, y) numbers, got {self.origin!r}") from exc
        if not (math.isfinite(ox) and math.isfinite(oy)):
            raise ClusterError(f"Grid.origin must be finite, got {self.origin!r}")
        object.__setattr__(self, "origin", (ox, oy))
        res = self.resolution
        if isinstance(res, bool) or not isinstance(res, Real) or not 0 < res < math.inf:
            raise ClusterError(f"Grid.resolution must be a positive number, got {res!r}")
        object.__setattr__(self, "resolution", float(res))
        for field, low in (("tile_size", 1), ("halo", 0)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
                raise ClusterError(f"Grid.{field} must be an integer >= {low}, got {value!r}")
            object.__setattr__(self, field, int(value))
        if self.halo >= self.tile_size:
            raise ClusterError(
                f"Grid.halo ({self.halo} px) must be smaller than Grid.tile_size "
                f"({self.tile_size} px); a halo is context around a tile, not a second tile"
            )

    @classmethod
    def covering(
        cls, crs: str, bounds: Bounds, resolution: float, tile_size: int, halo: int = 0
    ) -> Grid:
        """A grid whose origin is the nearest whole-tile-span corner north-west of ``bounds``.

        Snapping to multiples of the span (not to the region's corner) keeps
        tile edges identical between runs over different regions.
        """
        span = float(resolution) * int(tile_size)
        if not span > 0:
            raise ClusterError(f"Grid.resolution and Grid.tile_size must be positive, got {span}")
        # Float division can land one span off; the comparisons settle it.
        kx = _last(lambda k: k * span <= bounds[0], math.floor(bounds[0] / span))
        ky = _first(lambda k: k * span >= bounds[3], math.ceil(bounds[3] / span))
        return cls(crs, (kx * span, ky * span), resolution, tile_size, halo)

    @property
    def span(self) -> float:
        """Width (= height) of one tile without halo, in CRS units."""
        return self.resolution * self.tile_size

    # Edges are always origin + index * span (never "previous edge + span"),
    # so that neighbouring tiles share bit-identical edges.
    def _x(self, col: int) -> float:
        return self.origin[0] + col * self.span

    def _y(self, row: int) -> float:
        return self.origin[1] - row * self.span

    def tile_shape(self, halo: bool = False) -> tuple[int, int]:
        """(height, width) in pixels, with the halo on every side when ``halo``."""
        size = self.tile_size + (2 * self.halo if halo else 0)
        return (size, size)

    def tile_bounds(self, tile: Tile, halo: bool = False) -> Bounds:
        """(minx, miny, maxx, maxy) of the tile's footprint, grown by the halo if asked."""
        pad = self.halo * self.resolution if halo else 0.0
        return (
            self._x(tile.col) - pad,
            self._y(tile.row + 1) - pad,
            self._x(tile.col + 1) + pad,
            self._y(tile.row) + pad,
        )

    def tile_transform(self, tile: Tile, halo: bool = False) -> Affine:
        """The pixel-to-CRS transform of the tile's raster (upper-left corner anchored)."""
        pad = self.halo * self.resolution if halo else 0.0
        return Affine(
            self.resolution, 0.0, self._x(tile.col) - pad, 0.0, -self.resolution,
            self._y(tile.row) + pad,
        )  # fmt: skip

    def first_pixel(self, tile: Tile, halo: bool = False) -> tuple[int, int]:
        """(row, column) of the tile's upper-left pixel (of its halo, if asked) counted
        from the CRS origin, rows southward: where it lies on a lattice fixed in the CRS."""
        pad = self.halo if halo else 0
        return (
            round(-self.origin[1] / self.resolution) + tile.row * self.tile_size - pad,
            round(self.origin[0] / self.resolution) + tile.col * self.tile_size - pad,
        )

    def tile_of(self, x: float, y: float) -> Tile:
        """The tile containing (x, y); a point on a shared edge goes to the east/south tile."""
        if not (math.isfinite(x) and math.isfinite(y)):
            raise ClusterError(f"point ({x}, {y}) is not finite; no tile contains it")
        col = _last(lambda c: self._x(c) <= x, math.floor((x - self.origin[0]) / self.span))
        row = _last(lambda r: self._y(r) >= y, math.floor((self.origin[1] - y) / self.span))
        if row < 0 or col < 0:
            raise ClusterError(
                f"point ({x}, {y}) lies north or west of the grid origin {self.origin}; "
                "move the origin north-west of the region (see Grid.covering)"
            )
        return Tile(row, col)

    def tiles_in_bounds(self, bounds: Bounds) -> tuple[range, range]:
        """(rows, cols) of the tiles whose footprint overlaps ``bounds`` with positive area."""
        minx, miny, maxx, maxy = (float(v) for v in bounds)
        if not (minx < maxx and miny < maxy and math.isfinite(maxx - minx + maxy - miny)):
            raise ClusterError(f"bounds {bounds!r} must be finite with minx < maxx and miny < maxy")
        c0, c1 = self._col_span(minx, maxx)
        r0 = _first(
            lambda r: self._y(r + 1) < maxy, math.floor((self.origin[1] - maxy) / self.span)
        )
        r1 = _last(lambda r: self._y(r) > miny, math.ceil((self.origin[1] - miny) / self.span) - 1)
        if r0 < 0 or c0 < 0:
            raise ClusterError(
                f"bounds {tuple(bounds)} reach north or west of the grid origin {self.origin}; "
                "tiles would get negative indices: move the origin to x <= minx, y >= maxy "
                "(Grid.covering does this)"
            )
        if max(r1, c1) >= _MAX_INDEX:
            raise ClusterError(
                f"bounds {tuple(bounds)} need more than {_MAX_INDEX} tiles per axis at "
                f"tile span {self.span}; use larger tiles or a coarser resolution"
            )
        return range(r0, r1 + 1), range(c0, c1 + 1)

    def _col_span(self, minx: float, maxx: float) -> tuple[int, int]:
        """First and last column whose open x-interval meets the open (minx, maxx)."""
        ox, span = self.origin[0], self.span
        c0 = _first(lambda c: self._x(c + 1) > minx, math.floor((minx - ox) / span))
        c1 = _last(lambda c: self._x(c) < maxx, math.ceil((maxx - ox) / span) - 1)
        return c0, c1


def iter_tiles(grid: Grid, region: Region) -> Iterator[Tile]:
    """Every tile whose footprint shares area with the region, row-major, lazily.

    Edge tiles (partly outside) are included, since their inside pixels must
    be mapped; tiles only touching the boundary or lying wholly in a hole are
    not. Errors (CRS mismatch, origin south-east of the region) are raised
    here, at the call, not at the first ``next``.
    """
    spans = iter_row_spans(grid, region)
    return (Tile(row, col) for row, cols in spans for run in cols for col in run)


def count_tiles(grid: Grid, region: Region) -> int:
    """The number of tiles ``iter_tiles`` yields, without making them."""
    return sum(len(run) for _, cols in iter_row_spans(grid, region) for run in cols)


def iter_row_spans(grid: Grid, region: Region) -> Iterator[tuple[int, tuple[range, ...]]]:
    """For each tile row meeting the region: (row, column runs), runs sorted and disjoint.

    The compact form of the enumeration: a row of Germany is a handful of
    ranges, not a thousand tiles, which suits a done-record or a progress bar.
    """
    if CRS.from_user_input(region.crs) != CRS.from_user_input(grid.crs):
        raise ClusterError(
            f"{region.source}: region is in {region.crs} but the grid is in {grid.crs}; "
            "load it with load_region(path, grid.crs)"
        )
    rows, cols = grid.tiles_in_bounds(region.bounds)
    return _row_spans(grid, region.geometry, rows, cols)


def _row_spans(
    grid: Grid, geometry: shapely.Geometry, rows: range, cols: range
) -> Iterator[tuple[int, tuple[range, ...]]]:
    minx, maxx = grid._x(cols.start), grid._x(cols.stop)
    for band_start in range(rows.start, rows.stop, _BAND_ROWS):
        band_stop = min(band_start + _BAND_ROWS, rows.stop)
        band_rect = shapely.box(minx, grid._y(band_stop), maxx, grid._y(band_start))
        band = _polygonal(shapely.intersection(geometry, band_rect))
        if band is None:
            continue
        for row in range(band_start, band_stop):
            strip = shapely.box(minx, grid._y(row + 1), maxx, grid._y(row))
            piece = _polygonal(shapely.intersection(band, strip))
            if piece is None:
                continue
            runs = _merge(
                grid._col_span(pminx, pmaxx) for pminx, _, pmaxx, _ in shapely.bounds(piece)
            )
            if runs:
                yield row, runs


def _polygonal(geom: shapely.Geometry) -> np.ndarray | None:
    """The parts of an overlay result that have area; lines and points where it merely
    touches are dropped, because touching is not covering."""
    parts = shapely.get_parts(geom)
    keep = (shapely.get_type_id(parts) == 3) & (shapely.area(parts) > 0)
    return parts[keep] if keep.any() else None


def _merge(spans: Iterator[tuple[int, int]]) -> tuple[range, ...]:
    """Disjoint, sorted column runs from possibly overlapping inclusive (first, last) pairs."""
    runs: list[list[int]] = []
    for first, last in sorted(spans):
        if last < first:
            continue
        if runs and first <= runs[-1][1] + 1:
            runs[-1][1] = max(runs[-1][1], last)
        else:
            runs.append([first, last])
    return tuple(range(first, last + 1) for first, last in runs)


# A region's geometry is prepared (Region): GEOS builds and uses its indexes without
# locks, so a reader masking several tiles at once from threads segfaulted. Prepared
# predicates take microseconds; one at a time costs nothing.
_PREPARED = threading.Lock()


def region_mask(grid: Grid, tile: Tile, region: Region, halo: bool = False) -> np.ndarray:
    """Bool array of ``tile_shape``: True where a pixel's centre is inside the region.

    The predictor writes nodata (255) where this is False. The region is
    clipped to the tile first, so a 100,000-vertex boundary is not rasterised
    whole for each tile; tiles wholly inside or outside skip rasterising.
    """
    shape = grid.tile_shape(halo)
    bounds = grid.tile_bounds(tile, halo)
    footprint = shapely.box(*bounds)
    with _PREPARED:
        inside = shapely.contains_properly(region.geometry, footprint)
    if inside:
        return np.ones(shape, dtype=bool)
    pad = grid.resolution
    clip = shapely.clip_by_rect(
        region.geometry, bounds[0] - pad, bounds[1] - pad, bounds[2] + pad, bounds[3] + pad
    )
    parts = _polygonal(clip)
    if parts is None:
        return np.zeros(shape, dtype=bool)
    return geometry_mask(
        list(parts), out_shape=shape, transform=grid.tile_transform(tile, halo), invert=True
    )


def _first(pred: Callable[[int], bool], guess: int) -> int:
    """Smallest integer where a monotone False...True predicate holds, near ``guess``.

    Float division gives the index to within one; the predicate, evaluated
    with the same edge arithmetic as ``tile_bounds``, settles the rest exactly.
    """
    while not pred(guess):
        guess += 1
    while pred(guess - 1):
        guess -= 1
    return guess


def _last(pred: Callable[[int], bool], guess: int) -> int:
    """Largest integer where a monotone True...False predicate holds, near ``guess``."""
    while not pred(guess):
        guess -= 1
    while pred(guess + 1):
        guess += 1
    return guess
