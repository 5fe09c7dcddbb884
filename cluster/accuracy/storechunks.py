"""A run's store as the accuracy tools read it: chunk-aligned blocks, never the whole map.

A state's class map is billions of pixels; the sample design needs two passes
over it (stratum sizes, then the draw) and an assessment needs the map class
at a few thousand points and, sometimes, the class pixel counts. ``StoreMap``
gives exactly that over ``cluster.predict.store.TileStore``:

- ``class_chunks`` / ``strata_chunks``: a ``cluster.accuracy.design`` chunk
  source of blocks of whole tiles (one tile is one Zarr chunk), about
  ``block_px`` square, in row-major block order; memory is one block.
- ``values_at``: the stored values at given pixels, read chunk by chunk (Zarr
  coordinate selection decodes only the chunks that hold a point).
- ``pixels_of`` / ``centres``: pixel <-> map CRS coordinates (the cell centre),
  from the store's own transform; ``lonlat``: map CRS -> EPSG:4326.

The class array holds codes 0 .. n-1 and 255 (nodata); confidence holds the
winning-class probability scaled to 0 .. 254 (255 where the class is nodata),
so a probability is value / 254.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform as warp_transform

from cluster.accuracy.design import Chunk, Chunks
from cluster.accuracy.errors import AccuracyError
from cluster.accuracy.strata import ClassConfidenceStrata
from cluster.predict.store import NODATA, TileStore
from cluster.storage.redact import redact

__all__ = [
    "CONFIDENCE_SCALE",
    "DEFAULT_BLOCK_PX",
    "StoreMap",
    "StrataScheme",
    "Window",
    "probability",
]

DEFAULT_BLOCK_PX = 1024  # 1 Mpx per block: some 50 MB of working arrays at the peak
CONFIDENCE_SCALE = 254.0  # stored confidence = round(probability * 254); 255 = nodata
Window = tuple[int, int, int, int]  # row_off, col_off, height, width (pixels)
_LONLAT = "EPSG:4326"


@dataclass(frozen=True)
class StoreMap:
    """A store opened read-only, with the geometry the sample files need."""

    store: TileStore
    block_px: int = DEFAULT_BLOCK_PX

    @classmethod
    def open(cls, uri: str, *, block_px: int = DEFAULT_BLOCK_PX) -> StoreMap:
        if not (isinstance(block_px, int) and block_px > 0):
            raise AccuracyError(f"block_px must be a positive whole number, not {block_px!r}")
        return cls(TileStore.open(uri), block_px)

    @property
    def uri(self) -> str:
        return self.store.uri

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.store.attrs.class_names

    @property
    def shape(self) -> tuple[int, int]:
        return self.store.layout.shape

    @property
    def transform(self) -> Affine:
        return self.store.layout.transform

    @property
    def crs(self) -> CRS:
        return CRS.from_user_input(self.store.layout.grid.crs)

    @property
    def pixel_area_m2(self) -> float | None:
        """Square metres per pixel, or None where the CRS is not in linear units."""
        crs = self.crs
        if crs.is_geographic:
            return None
        res = abs(self.transform.a) * crs.linear_units_factor[1]
        return res * abs(self.transform.e) * crs.linear_units_factor[1]

    def same_map(self, run_id: str, shape: Iterable[int], transform: Iterable[float]) -> bool:
        """Whether a design drawn on (run_id, shape, transform) was drawn on this very map.

        The URI is not compared: a store copied to another bucket is the same map."""
        return (
            run_id == self.store.attrs.run_id
            and tuple(shape) == self.shape
            and np.allclose(tuple(transform), tuple(self.transform)[:6])
        )

    def windows(self) -> Iterator[Window]:
        """Blocks of whole tiles, about ``block_px`` square, row-major; each pixel once."""
        tile = self.store.layout.grid.tile_size
        step = max(1, self.block_px // tile) * tile
        height, width = self.shape
        for row in range(0, height, step):
            for col in range(0, width, step):
                yield row, col, min(step, height - row), min(step, width - col)

    def read(self, name: Literal["class", "confidence"], window: Window) -> np.ndarray:
        row, col, height, width = window
        return np.asarray(self.store.array(name)[row : row + height, col : col + width])

    def class_chunks(self) -> Chunks:
        """The class map as a chunk source (codes, 255 = nodata)."""

        def chunks() -> Iterator[Chunk]:
            for window in self.windows():
                yield window[0], window[1], self.read("class", window)

        return chunks

    def count_classes(self) -> dict[str, int]:
        """Pixels per class name, nodata left out, chunk by chunk (0 for an absent class)."""
        counts = np.zeros(NODATA + 1, dtype=np.int64)
        for _, _, block in self.class_chunks()():
            counts += np.bincount(block.ravel(), minlength=NODATA + 1)
        return {name: int(counts[i]) for i, name in enumerate(self.class_names)}

    def values_at(
        self, name: Literal["class", "confidence"], rows: np.ndarray, cols: np.ndarray
    ) -> np.ndarray:
        """The stored values at the pixels (rows, cols), which must lie on the map."""
        rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
        if rows.size == 0:
            return np.empty(0, np.uint8)
        return np.asarray(self.store.array(name).get_coordinate_selection((rows, cols)))

    def pixels_of(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) of the pixels holding map-CRS points; off the map is outside 0..shape."""
        cols, rows = _apply(~self.transform, xs, ys)
        return np.floor(rows).astype(np.int64), np.floor(cols).astype(np.int64)

    def on_map(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        height, width = self.shape
        return (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)

    def centres(self, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map-CRS coordinates of the pixels' centres."""
        return _apply(self.transform, np.asarray(cols) + 0.5, np.asarray(rows) + 0.5)

    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) of the map in its CRS (north-up)."""
        height, width = self.shape
        (left, right), (top, bottom) = _apply(self.transform, [0, width], [0, height])
        return float(left), float(bottom), float(right), float(top)

    def lonlat(self, xs: np.ndarray, ys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.to_crs(xs, ys, _LONLAT)

    def to_crs(self, xs: np.ndarray, ys: np.ndarray, crs: str) -> tuple[np.ndarray, np.ndarray]:
        if len(xs) == 0:
            return np.empty(0), np.empty(0)
        out_x, out_y = warp_transform(self.crs, crs, list(map(float, xs)), list(map(float, ys)))
        return np.asarray(out_x, dtype=float), np.asarray(out_y, dtype=float)

    def from_crs(self, xs: np.ndarray, ys: np.ndarray, crs: str) -> tuple[np.ndarray, np.ndarray]:
        """Points in ``crs`` as map-CRS coordinates."""
        if len(xs) == 0 or CRS.from_user_input(crs) == self.crs:
            return np.asarray(xs, dtype=float), np.asarray(ys, dtype=float)
        out_x, out_y = warp_transform(crs, self.crs, list(map(float, xs)), list(map(float, ys)))
        return np.asarray(out_x, dtype=float), np.asarray(out_y, dtype=float)

    def facts(self) -> dict[str, Any]:
        """What identifies the map, cheaply (store attributes and the done record), for JSON."""
        attrs, layout, crs = self.store.attrs, self.store.layout, self.crs
        return {
            "store": redact(self.uri),
            **attrs.to_json(),
            "crs": {"wkt": crs.to_wkt(), "epsg": crs.to_epsg()},
            "transform": list(self.transform)[:6],
            "shape": list(self.shape),
            "resolution": layout.grid.resolution,
            "tile_size": layout.grid.tile_size,
            "tiles": layout.rows * layout.cols,
            "tiles_done": len(self.store.done_tiles()),
            "pixel_area_m2": self.pixel_area_m2,
            "nodata": NODATA,
        }


@dataclass(frozen=True)
class StrataScheme:
    """Strata of a map: its classes (no ``edges``), or class x confidence band.

    Codes: the class value when the strata are the classes (nodata 255);
    ``ClassConfidenceStrata``'s codes otherwise (nodata -1). Names are what
    the sample file and design.json carry; ``map_class`` the class a stratum
    belongs to (what Neyman allocation's expected user's accuracy is of).
    """

    class_names: tuple[str, ...]
    edges: tuple[float, ...] = ()

    @property
    def by_class(self) -> bool:
        return not self.edges

    @property
    def _bands(self) -> ClassConfidenceStrata:
        return ClassConfidenceStrata(dict(enumerate(self.class_names)), self.edges)

    @property
    def nodata(self) -> int:
        return NODATA if self.by_class else self._bands.nodata

    @property
    def names(self) -> dict[int, str]:
        return dict(enumerate(self.class_names)) if self.by_class else self._bands.names

    def map_class(self, code: int) -> str:
        return self.class_names[code if self.by_class else self._bands.map_class(code)]

    def chunks(self, source: StoreMap) -> Chunks:
        """The stratum codes of ``source`` as a chunk source, block by block."""
        if self.by_class:
            return source.class_chunks()
        table = self.table()

        def chunks() -> Iterator[Chunk]:
            for window in source.windows():
                classes = source.read("class", window)
                yield window[0], window[1], table[classes, source.read("confidence", window)]

        return chunks

    def at(self, source: StoreMap, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Stratum codes at the pixels (rows, cols), read chunk by chunk."""
        classes = source.values_at("class", rows, cols)
        if self.by_class:
            return classes.astype(np.int64)
        confidence = source.values_at("confidence", rows, cols)
        return self.table()[classes, confidence].astype(np.int64)

    def table(self) -> np.ndarray:
        """The stratum code of every (stored class, stored confidence) pair, 256 x 256.

        ``ClassConfidenceStrata.encode`` applied once to all pairs, so that a
        block's codes are one table look-up: the same codes as encoding the
        block, some 30 times faster (a state is billions of pixels, read
        twice). Class values that are no class (the store allows none) are nodata.
        """
        bands = self._bands
        table = np.full((NODATA + 1, NODATA + 1), bands.nodata, np.int32)
        known = np.arange(len(self.class_names))
        classes, stored = np.meshgrid(known, np.arange(NODATA + 1), indexing="ij")
        table[known] = bands.encode(classes, probability(stored), class_nodata=NODATA)
        return table


def _apply(t: Affine, u: Iterable[float], v: Iterable[float]) -> tuple[np.ndarray, np.ndarray]:
    """The affine ``t`` applied to arrays (Affine's own ``*`` on arrays is deprecated)."""
    u, v = np.asarray(u, dtype=float), np.asarray(v, dtype=float)
    return t.a * u + t.b * v + t.c, t.d * u + t.e * v + t.f


def probability(confidence: np.ndarray) -> np.ndarray:
    """Stored confidence (0 .. 254, 255 nodata) as probabilities, NaN where nodata."""
    values = np.asarray(confidence)
    return np.where(values == NODATA, np.nan, values / CONFIDENCE_SCALE)
