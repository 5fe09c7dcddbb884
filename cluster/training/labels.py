"""Reference labels from any common source, rasterised onto a run's grid.

Training chips must be the same pixels a run's tiles are (DESIGN.md: one data
path), so labels are brought to the grid, never the grid to the labels: a
vector file (``cluster.training.vector``) is burnt into each tile's pixels, a
label raster is warped onto them. Either way the result is the class-map
convention: uint8, class index 0..n-1, 255 where there is no label.

``open_labels`` reads and checks everything up front, because ``cells`` and
``rasterize`` run later in Ray tasks, where a refusal would come too late
and too often. A ``Labels`` object pickles small: vector labels carry their
polygons (as WKB in the pickle), raster labels only their path.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import rasterio
import shapely
from rasterio import features
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import CRSError, RasterioIOError
from rasterio.io import DatasetReader
from rasterio.warp import reproject, transform_bounds
from rasterio.windows import Window

from cluster.tiles.grid import Grid, Tile
from cluster.training import vector
from cluster.training.vector import LabelError

__all__ = [
    "NODATA",
    "LabelError",
    "LabelSpec",
    "Labels",
    "RasterLabels",
    "VectorLabels",
    "open_labels",
]

NODATA = 255
Bounds = tuple[float, float, float, float]
RASTER_SUFFIXES = (".tif", ".tiff", ".vrt", ".img", ".jp2")
_MAX_INDEX = 10**6  # Tile's limit per axis
_SCAN_PIXELS = 1 << 22  # pixels per read when checking a raster: bounded memory
_COARSER = 1.01  # grid pixels this much larger than the labels' count as downsampling


@dataclass(frozen=True)
class LabelSpec:
    """Where the reference labels are and how to turn features into pixels."""

    uri: str  # local path (a plain path or file://); vector or raster
    field: str | None = None  # vector: the attribute holding the class name or index
    layer: str | None = None  # vector: layer of a multi-layer file; None: the first
    point_size: float = 30.0  # metres: a point becomes a square of this side / disc diameter
    point_shape: str = "square"  # "square" or "disc"
    inner_buffer: float = 0.0  # metres: polygon pixels nearer the edge than this get no label

    def __post_init__(self) -> None:
        if not isinstance(self.uri, str) or not self.uri:
            raise LabelError(f"LabelSpec.uri must be a path, got {self.uri!r}")
        if self.point_shape not in ("square", "disc"):
            raise LabelError(
                f"LabelSpec.point_shape is {self.point_shape!r}; use 'square' or 'disc'"
            )
        for name, zero_ok in (("point_size", False), ("inner_buffer", True)):
            value = getattr(self, name)
            number = isinstance(value, int | float) and not isinstance(value, bool)
            if not (number and math.isfinite(value) and (value > 0 or (zero_ok and value == 0))):
                need = ">= 0" if zero_ok else "> 0"
                raise LabelError(f"LabelSpec.{name} must be metres {need}, got {value!r}")


class Labels(ABC):
    """Reference labels for one class list, ready to be cut into a grid's tiles."""

    source: str

    @abstractmethod
    def bounds(self, crs: str) -> Bounds:
        """Where the labels are, in ``crs``: what a chip planner clips its grid to."""

    @abstractmethod
    def cells(self, grid: Grid) -> list[Tile]:
        """The tiles (footprint without halo) that meet a label, row-major, each once."""

    @abstractmethod
    def rasterize(self, grid: Grid, tile: Tile, halo: bool = False) -> np.ndarray:
        """uint8 ``grid.tile_shape(halo)``: class index, or ``NODATA`` where unlabelled."""


def open_labels(spec: LabelSpec, class_names: Sequence[str], crs: str) -> Labels:
    """Read and check ``spec``'s labels for ``class_names``, for grids in ``crs``.

    The format follows the suffix; an unknown suffix is tried as vector data
    with GDAL, then as a raster.
    """
    names = _check_classes(class_names)
    try:
        CRS.from_user_input(crs)
    except CRSError as exc:
        raise LabelError(f"grid CRS {crs!r} is not one GDAL knows ({exc})") from exc
    path, source = _local_path(spec.uri), spec.uri
    suffix = path.suffix.lower()
    vector_suffixes = vector.OGR_SUFFIXES + vector.PARQUET_SUFFIXES
    if suffix in RASTER_SUFFIXES:
        return RasterLabels.open(path, source, names)
    if suffix not in vector_suffixes and not vector.is_ogr_vector(path):
        if _is_raster(path):
            return RasterLabels.open(path, source, names)
        raise LabelError(
            f"{source}: neither GDAL nor Parquet reads it; fix: give a vector file "
            f"({', '.join(vector_suffixes)}) or a raster of class indices "
            f"({', '.join(RASTER_SUFFIXES)})"
        )
    if spec.field is None:
        raise LabelError(
            f"{source}: a vector file needs label_field, the attribute that holds the class"
        )
    return VectorLabels.open(spec, spec.field, path, source, names, crs)


def _check_classes(class_names: Sequence[str]) -> tuple[str, ...]:
    names = (class_names,) if isinstance(class_names, str) else tuple(class_names)
    if not 0 < len(names) < NODATA or not all(isinstance(n, str) and n.strip() for n in names):
        raise LabelError(
            f"classes must be 1..{NODATA - 1} non-empty names (index {NODATA} is nodata), "
            f"got {list(names)!r}"
        )
    folded = [n.strip().casefold() for n in names]
    if len(set(folded)) != len(folded):
        twice = sorted({n for n in folded if folded.count(n) > 1})
        raise LabelError(f"classes name {twice} twice (case and spaces ignored): merge them")
    return names


def _local_path(uri: str) -> Path:
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        path = Path(unquote(parsed.path))
    elif "://" in uri:
        raise LabelError(f"labels {uri}: only local paths are read; fix: copy the file here")
    else:
        path = Path(uri)
    if not path.exists():
        raise LabelError(f"labels {uri}: no such file; fix: check the path")
    return path


def _is_raster(path: Path) -> bool:
    try:
        with rasterio.open(path):
            return True
    except RasterioIOError:
        return False


class VectorLabels(Labels):
    """Polygons (points already grown to squares or discs) in the grid CRS, with classes."""

    def __init__(
        self,
        source: str,
        crs: str,
        parts: np.ndarray,
        classes: np.ndarray,
        owners: np.ndarray | None = None,
    ) -> None:
        self.source = source
        self.crs = crs
        self._parts = parts
        self._classes = classes
        self._owners = np.arange(len(parts)) if owners is None else np.asarray(owners)
        self._tree: shapely.STRtree | None = None

    @classmethod
    def open(
        cls,
        spec: LabelSpec,
        field: str,
        path: Path,
        source: str,
        class_names: Sequence[str],
        crs: str,
    ) -> VectorLabels:
        geoms, values, src_crs = vector.read_vector(path, source, field, spec.layer)
        classes = vector.class_indices(values, class_names, source, field)
        geoms = vector.to_crs(geoms, src_crs, crs, source)
        parts, part_classes, owners = vector.footprints(
            geoms,
            classes,
            source,
            point_size=float(spec.point_size),
            point_shape=spec.point_shape,
            inner_buffer=float(spec.inner_buffer),
        )
        return cls(source, crs, parts, part_classes, owners)

    def __getstate__(self) -> dict[str, object]:
        state = self.__dict__.copy()
        state["_tree"] = None  # rebuilt on demand; an STRtree does not pickle
        return state

    def bounds(self, crs: str) -> Bounds:
        minx, miny, maxx, maxy = (float(v) for v in shapely.total_bounds(self._parts))
        if CRS.from_user_input(crs) == CRS.from_user_input(self.crs):
            return (minx, miny, maxx, maxy)
        return transform_bounds(self.crs, crs, minx, miny, maxx, maxy, densify_pts=21)

    def cells(self, grid: Grid) -> list[Tile]:
        """Tiles whose box of pixel centres a label polygon meets.

        A polygon burns a pixel when it holds the pixel's centre, so no tile
        with a labelled pixel is missed; for pixel-aligned polygons and
        axis-aligned squares the list is exact. A tile can still come back
        all ``NODATA`` when its only labels are ambiguous (classes overlap)
        or a polygon slips between centres: skip empty chips. Labels north or
        west of the grid's origin are in no tile and are left out.
        """
        self._check_crs(grid)
        box = shapely.bounds(self._parts)
        ox, oy = grid.origin
        span, half = grid.span, grid.resolution / 2
        c0 = np.maximum(np.floor((box[:, 0] - ox) / span), 0)
        c1 = np.minimum(np.floor((box[:, 2] - ox) / span), _MAX_INDEX - 1)
        r0 = np.maximum(np.floor((oy - box[:, 3]) / span), 0)
        r1 = np.minimum(np.floor((oy - box[:, 1]) / span), _MAX_INDEX - 1)
        ok = (c0 <= c1) & (r0 <= r1)
        part = np.flatnonzero(ok)
        ncols = (c1 - c0 + 1)[ok].astype(np.int64)
        count = ((r1 - r0 + 1)[ok]).astype(np.int64) * ncols
        pair = np.repeat(np.arange(part.size), count)
        k = np.arange(pair.size) - np.repeat(np.cumsum(count) - count, count)
        rows = r0[part][pair].astype(np.int64) + k // ncols[pair]
        cols = c0[part][pair].astype(np.int64) + k % ncols[pair]
        centres = shapely.box(
            ox + cols * span + half,
            oy - (rows + 1) * span + half,
            ox + (cols + 1) * span - half,
            oy - rows * span - half,
        )
        shapely.prepare(self._parts)
        hit = shapely.intersects(self._parts[part[pair]], centres)
        keys = np.unique(rows[hit] * _MAX_INDEX + cols[hit])
        return [Tile(int(key // _MAX_INDEX), int(key % _MAX_INDEX)) for key in keys]

    def rasterize(self, grid: Grid, tile: Tile, halo: bool = False) -> np.ndarray:
        """Pixels whose centre lies in a polygon take its class; where classes overlap, none.

        An overlap of two classes is a contradiction in the reference data;
        picking either would teach the model a guess as truth.
        """
        self._check_crs(grid)
        shape = grid.tile_shape(halo)
        out = np.full(shape, NODATA, dtype=np.uint8)
        hits = self.query(grid.tile_bounds(tile, halo))
        if hits.size == 0:
            return out
        transform = grid.tile_transform(tile, halo)
        seen = np.zeros(shape, dtype=bool)
        clash = np.zeros(shape, dtype=bool)
        for cls in np.unique(self._classes[hits]):
            mask = features.rasterize(
                self._parts[hits[self._classes[hits] == cls]],
                out_shape=shape,
                transform=transform,
                fill=0,
                default_value=1,
                dtype=np.uint8,
                all_touched=False,
            ).astype(bool)
            clash |= seen & mask
            seen |= mask
            out[mask] = cls
        out[clash] = NODATA
        return out

    @property
    def parts(self) -> np.ndarray:
        """Single polygons in the labels' CRS (``cluster.training.stands`` reads them)."""
        return self._parts

    @property
    def owners(self) -> np.ndarray:
        """The feature (stand, plot) each part came from: what a split keeps whole."""
        return self._owners

    def query(self, bounds: Bounds) -> np.ndarray:
        """Indexes (sorted) of the parts whose boxes meet ``bounds``."""
        if self._tree is None:
            self._tree = shapely.STRtree(self._parts)
        return np.sort(self._tree.query(shapely.box(*bounds)))

    def check_crs(self, grid: Grid) -> None:
        self._check_crs(grid)

    def _check_crs(self, grid: Grid) -> None:
        if grid.crs != self.crs and CRS.from_user_input(grid.crs) != CRS.from_user_input(self.crs):
            raise LabelError(
                f"{self.source}: labels were opened for {self.crs} but the grid is in "
                f"{grid.crs}; fix: open_labels(spec, classes, grid.crs)"
            )


class RasterLabels(Labels):
    """A raster of class indices, warped onto each tile when asked.

    Holds the path, not an open dataset: a dataset is neither picklable nor
    safe to share between threads, and opening a local file costs little
    next to warping a tile.
    """

    def __init__(
        self, source: str, path: Path, nodata: int, crs: str, bounds: Bounds, size: int
    ) -> None:
        self.source = source
        self.path = path
        self.nodata = nodata
        self.crs = crs
        self._bounds = bounds
        self._size = size  # width * height: the label pixel size, wherever the grid is

    @classmethod
    def open(cls, path: Path, source: str, class_names: Sequence[str]) -> RasterLabels:
        try:
            src = rasterio.open(path)
        except RasterioIOError as exc:
            raise LabelError(f"{source}: GDAL cannot read it as a raster ({exc})") from exc
        with src:
            dtype = np.dtype(src.dtypes[0])
            if src.count != 1 or dtype.kind not in "iu":
                raise LabelError(
                    f"{source}: a label raster is one band of integer class indices; this has "
                    f"{src.count} band(s) of {dtype}; fix: gdal_translate -b 1 -ot Byte"
                )
            if src.crs is None:
                raise LabelError(
                    f"{source}: has no CRS; fix: assign the one its pixels are in, e.g. "
                    f"gdal_edit.py -a_srs EPSG:25832 {path.name}"
                )
            _check_tag(src, source, class_names)
            nodata = NODATA if src.nodata is None else int(src.nodata)
            _check_values(src, source, class_names, nodata)
            return cls(
                source, path, nodata, src.crs.to_wkt(), tuple(src.bounds), src.width * src.height
            )

    def bounds(self, crs: str) -> Bounds:
        return transform_bounds(self.crs, crs, *self._bounds, densify_pts=21)

    def cells(self, grid: Grid) -> list[Tile]:
        """Tiles of the raster's footprint whose warped pixels hold a label.

        Exact, by warping every footprint tile: fine for a state at 10 m
        (hundreds of tiles), slow for one at 1 m; a coarse pre-scan would be
        the next step there.
        """
        minx, miny, maxx, maxy = self.bounds(grid.crs)
        minx, maxy = max(minx, grid.origin[0]), min(maxy, grid.origin[1])
        if not (minx < maxx and miny < maxy):
            return []
        rows, cols = grid.tiles_in_bounds((minx, miny, maxx, maxy))
        resampling = self._resampling(grid)
        with rasterio.open(self.path) as src:
            return [
                Tile(r, c)
                for r in rows
                for c in cols
                if (self._warp(src, grid, Tile(r, c), False, resampling) != NODATA).any()
            ]

    def rasterize(self, grid: Grid, tile: Tile, halo: bool = False) -> np.ndarray:
        """Nearest neighbour where labels are as coarse as the grid or coarser, else mode."""
        with rasterio.open(self.path) as src:
            return self._warp(src, grid, tile, halo, self._resampling(grid))

    def _warp(
        self, src: DatasetReader, grid: Grid, tile: Tile, halo: bool, resampling: Resampling
    ) -> np.ndarray:
        out = np.full(grid.tile_shape(halo), NODATA, dtype=np.uint8)
        reproject(
            rasterio.band(src, 1),
            out,
            src_nodata=self.nodata,
            dst_transform=grid.tile_transform(tile, halo),
            dst_crs=grid.crs,
            dst_nodata=NODATA,
            resampling=resampling,
        )
        return out

    def _resampling(self, grid: Grid) -> Resampling:
        """Mode when grid pixels are coarser than the label pixels (measured in the grid CRS)."""
        minx, miny, maxx, maxy = self.bounds(grid.crs)
        label_res = math.sqrt((maxx - minx) * (maxy - miny) / self._size)
        return Resampling.mode if grid.resolution > label_res * _COARSER else Resampling.nearest


def _check_tag(src: DatasetReader, source: str, class_names: Sequence[str]) -> None:
    tag = src.tags().get("CLASS_NAMES")
    if tag is None:
        return
    try:
        theirs = json.loads(tag)
    except json.JSONDecodeError as exc:
        raise LabelError(f"{source}: CLASS_NAMES tag is not a JSON list: {tag[:200]!r}") from exc
    fold = [str(n).strip().casefold() for n in theirs] if isinstance(theirs, list) else None
    if fold != [n.strip().casefold() for n in class_names]:
        raise LabelError(
            f"{source}: its CLASS_NAMES tag says {theirs} but the classes are "
            f"{list(class_names)}; fix: use its class list (same order), or a raster made "
            "for these classes"
        )


def _check_values(src: DatasetReader, source: str, class_names: Sequence[str], nodata: int) -> None:
    """Every pixel is a class index or nodata; read in strips so memory stays bounded."""
    n = len(class_names)
    counts: Counter[int] = Counter()
    step = max(1, _SCAN_PIXELS // src.width)
    for row in range(0, src.height, step):
        block = src.read(1, window=Window(0, row, src.width, min(step, src.height - row)))
        if block.dtype.kind == "u" and block.dtype.itemsize <= 2:
            freq = np.bincount(block.ravel())  # far faster than sorting, for bytes and words
            values = np.flatnonzero(freq)
            freq = freq[values]
        else:
            values, freq = np.unique(block, return_counts=True)
        counts.update(dict(zip(values.tolist(), freq.tolist(), strict=True)))
    bad = sorted((v, c) for v, c in counts.items() if v != nodata and not 0 <= v < n)
    if bad:
        listed = ", ".join(f"{v} ({c:,} px)" for v, c in bad[:5])
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        raise LabelError(
            f"{source}: values that are no class index: {listed}{more}; the classes are "
            f"{list(class_names)} (0..{n - 1}), nodata {nodata}; fix: add classes, recode "
            "the raster, or set its nodata to the value that means 'no label'"
        )
    if not any(c for v, c in counts.items() if v != nodata):
        raise LabelError(f"{source}: no labelled pixel, all are nodata ({nodata})")
