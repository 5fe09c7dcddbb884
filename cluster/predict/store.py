"""One Zarr v3 store per run: the class map, confidence and input quality, chunk = tile.

Conventions (DESIGN.md): one tile is exactly one chunk, so actors writing
different tiles never touch the same object and need no locks; the codec is
zstd at a fixed level, so a rewritten tile is byte-identical; 255 is nodata.
Empty chunks are written too (``write_empty_chunks``), so every finished tile
is exactly one object per array, whatever its content.

On disk or under an s3:// prefix alike (``cluster.storage.objstore``), the same keys::

    <store>/zarr.json            group; attributes["statemap"] = run metadata
    <store>/class/c/<i>/<j>      uint8 class map of tile (row0 + i, col0 + j)
    <store>/confidence/c/<i>/<j> uint8 winning-class probability scaled to 0..254
    <store>/quality/c/0/<i>/<j>  uint8 (2 bands): clear observations used, filled flag
                                 (``cluster.predict.quality``)
    <store>/x, <store>/y         cell-centre coordinates, for xarray
    <store>/spatial_ref          0-d array carrying the CF/GDAL georeferencing
    <store>/statemap/done.bin    the done record (a subgroup, so zarr lists no stray object)

``xarray.open_zarr(uri, consolidated=False)`` + rioxarray opens it with its
CRS and transform: rioxarray reads ``crs_wkt``/``spatial_ref`` and
``GeoTransform`` from the variable named by each array's ``grid_mapping``.

A store made before the quality layer opens read-only as it was (compile
writes its class and confidence); a run refuses to resume it, since its
tiles would then have quality and its earlier ones none.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import zarr
import zarr.errors
from rasterio.crs import CRS
from zarr.abc.store import Store
from zarr.codecs import ZstdCodec

from cluster.errors import ClusterError
from cluster.predict import donerecord as rec
from cluster.predict import quality as q
from cluster.predict.layout import StoreLayout
from cluster.storage import objstore
from cluster.tiles.grid import Tile

__all__ = ["NODATA", "RunAttrs", "StoreLayout", "TileStore"]

NODATA = 255
DATA_ARRAYS = ("class", "confidence")
_DONE_KEY = "statemap/done.bin"
_CODEC = ZstdCodec(level=3, checksum=False)  # fixed level: same tile, same bytes
_WRITE_EMPTY = {"write_empty_chunks": True}
_OURS = {*DATA_ARRAYS, q.QUALITY, "x", "y", "spatial_ref", "statemap"}
_SHA256 = re.compile(r"[0-9a-f]{64}")
_COLOR = re.compile(r"#[0-9a-fA-F]{6}")


@dataclass(frozen=True)
class RunAttrs:
    """What identifies a run's output: who made it (checkpoint, software) and what it means."""

    run_id: str
    checkpoint_sha256: str
    class_names: tuple[str, ...]
    class_colors: tuple[str, ...]
    software_version: str

    def __post_init__(self) -> None:
        for field in ("run_id", "software_version"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value.strip():
                raise ClusterError(f"RunAttrs.{field} must be a non-empty string, got {value!r}")
        if not isinstance(self.checkpoint_sha256, str) or not _SHA256.fullmatch(
            self.checkpoint_sha256
        ):
            raise ClusterError(
                f"RunAttrs.checkpoint_sha256 must be 64 lowercase hex digits (hashlib.sha256 "
                f"of the checkpoint file's bytes), got {self.checkpoint_sha256!r}"
            )
        names, colors = tuple(self.class_names), tuple(self.class_colors)
        object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "class_colors", colors)
        if not 1 <= len(names) < NODATA or not all(isinstance(n, str) and n for n in names):
            raise ClusterError(
                f"RunAttrs.class_names must be 1..{NODATA - 1} non-empty strings "
                f"({NODATA} is nodata), got {names!r}"
            )
        if len(colors) != len(names) or not all(
            isinstance(c, str) and _COLOR.fullmatch(c) for c in colors
        ):
            raise ClusterError(
                f"RunAttrs.class_colors must be one '#rrggbb' per class name "
                f"({len(names)} names), got {colors!r}"
            )

    def to_json(self) -> dict[str, Any]:
        pairs = enumerate(zip(self.class_names, self.class_colors, strict=True))
        keys = ("run_id", "checkpoint_sha256", "software_version")
        return {
            **{key: getattr(self, key) for key in keys},
            "classes": [{"value": i, "name": n, "color": c} for i, (n, c) in pairs],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunAttrs:
        classes = sorted(data["classes"], key=lambda c: c["value"])
        names, colors = (tuple(c[key] for c in classes) for key in ("name", "color"))
        return cls(
            data["run_id"], data["checkpoint_sha256"], names, colors, data["software_version"]
        )


def _zarr_store(uri: str, read_only: bool) -> Store:
    """The zarr Store for a URI: LocalStore, or ObjectStore over obstore for s3://."""
    return objstore.zarr_store(uri, read_only=read_only)


def _metadata(layout: StoreLayout, attrs: RunAttrs) -> dict[str, Any]:
    """The group's ``statemap`` attribute: everything a compile step or a reader needs."""
    crs = CRS.from_user_input(layout.grid.crs)
    t = layout.transform
    return {
        **attrs.to_json(),
        "nodata": NODATA,
        "crs": {"wkt": crs.to_wkt(), "epsg": crs.to_epsg()},
        "transform": {"affine": list(t)[:6], "gdal": list(t.to_gdal())},
        "layout": layout.to_json(),
        "done_record": _DONE_KEY,
    }


def _array_specs(layout: StoreLayout) -> list[tuple[str, dict[str, Any], np.ndarray | None]]:
    """(name, create_array arguments, values to write) of each array in a store: the two
    data arrays, and what xarray needs (dimension names, x/y cell centres) plus the CF
    grid mapping rioxarray reads (``spatial_ref`` with ``crs_wkt`` and ``GeoTransform``)."""
    t, res, (height, width) = layout.transform, layout.grid.resolution, layout.shape
    wkt = CRS.from_user_input(layout.grid.crs).to_wkt()
    tile = (layout.grid.tile_size,) * 2
    geo = {"grid_mapping": "spatial_ref", "coordinates": "spatial_ref", "nodata": NODATA}
    x = t.c + (np.arange(width) + 0.5) * res
    y = t.f - (np.arange(height) + 0.5) * res

    def spec(shape: tuple[int, ...], chunks: tuple[int, ...], dtype: str, fill: float,
             dims: list[str], **attributes: Any) -> dict[str, Any]:  # fmt: skip
        return {"shape": shape, "chunks": chunks, "dtype": dtype, "fill_value": fill,
                "dimension_names": dims, "attributes": attributes}  # fmt: skip

    return [
        ("class", spec(layout.shape, tile, "uint8", NODATA, ["y", "x"], **geo,
                       long_name="class"), None),
        ("confidence", spec(layout.shape, tile, "uint8", NODATA, ["y", "x"], **geo,
                            long_name="winning class probability, 0-254"), None),
        (q.QUALITY, q.spec(layout.shape, layout.grid.tile_size, geo), None),
        ("x", spec(x.shape, x.shape, "float64", 0.0, ["x"], axis="X",
                   standard_name="projection_x_coordinate"), x),
        ("y", spec(y.shape, y.shape, "float64", 0.0, ["y"], axis="Y",
                   standard_name="projection_y_coordinate"), y),
        ("spatial_ref", spec((), (), "int32", 0, [], crs_wkt=wkt, spatial_ref=wkt,
                             GeoTransform=" ".join(repr(v) for v in t.to_gdal())), None),
    ]  # fmt: skip


class TileStore:
    """A run's store. Actors call ``write_tile``; only the driver calls ``mark_done``."""

    def __init__(
        self, uri: str, group: zarr.Group, layout: StoreLayout, attrs: RunAttrs, writable: bool
    ) -> None:
        self.uri, self.layout, self.attrs, self.writable = uri, layout, attrs, writable
        try:
            self._arrays = {name: group[name].with_config(_WRITE_EMPTY) for name in DATA_ARRAYS}
        except KeyError as exc:
            raise ClusterError(f"store {uri} lacks array {exc}: give a new store path") from exc
        if q.QUALITY in group:
            self._arrays[q.QUALITY] = group[q.QUALITY].with_config(_WRITE_EMPTY)
        elif writable:  # an older version's store: its tiles have no quality to match
            raise ClusterError(
                f"store {uri} was made by a statemap without the quality layer: a run cannot "
                "resume it (its tiles would lack quality). Finish it with that version, or "
                "give a new store path; compile still reads it as it is"
            )

    @classmethod
    def create_or_open(cls, uri: str, layout: StoreLayout, attrs: RunAttrs) -> TileStore:
        """Create the store, or open it to resume the same run. Never deletes anything.

        An existing store must hold the same run id, layout and run attributes:
        mixing two runs' tiles in one store would make a map nobody asked for.
        """
        if not rec.exists(uri, "zarr.json"):
            if rec.exists(uri):
                raise ClusterError(f"{uri} exists but is not a Zarr store; give a new store path")
            return cls._create(uri, layout, attrs)
        group = cls._open_group(uri, read_only=False)
        meta = group.attrs.get("statemap")
        if meta is None:  # a creation interrupted before its last step, writing the attributes
            strangers = set(group.keys()) - _OURS
            if strangers:
                raise ClusterError(
                    f"{uri} is a Zarr store of something else (holds {sorted(strangers)}); "
                    "give a new store path"
                )
            return cls._create(uri, layout, attrs)
        old_layout, old_attrs = cls._decode(uri, meta)
        if old_attrs.run_id != attrs.run_id:
            raise ClusterError(
                f"store {uri} holds run {old_attrs.run_id!r}, not run {attrs.run_id!r}; "
                "use a new store path, or the same run config to resume that run"
            )
        changed = [
            f"{name}: {getattr(old, name)!r} in the store, {getattr(new, name)!r} now"
            for old, new in ((old_layout, layout), (old_attrs, attrs))
            for name in new.__dataclass_fields__
            if getattr(old, name) != getattr(new, name)
        ]
        if changed:
            raise ClusterError(
                f"store {uri} of run {attrs.run_id!r} cannot be resumed with other settings "
                f"({'; '.join(changed)}); use a new run id and store path"
            )
        return cls(uri, group, layout, attrs, writable=True)

    @classmethod
    def open(cls, uri: str, writable: bool = False) -> TileStore:
        """Open an existing store: read-only (compile, tests), or ``writable`` for an
        actor, which writes tiles into a store the driver has created."""
        if not rec.exists(uri, "zarr.json"):
            raise ClusterError(f"no statemap store at {uri}; check the path, or run predict")
        group = cls._open_group(uri, read_only=not writable)
        meta = group.attrs.get("statemap")
        if meta is None:
            raise ClusterError(
                f"{uri} is a Zarr store without statemap metadata (not a statemap store, or "
                "its creation was interrupted): rerun predict with it, or give another path"
            )
        layout, attrs = cls._decode(uri, meta)
        return cls(uri, group, layout, attrs, writable=writable)

    @staticmethod
    def _open_group(uri: str, read_only: bool) -> zarr.Group:
        try:
            return zarr.open_group(_zarr_store(uri, read_only), mode="r" if read_only else "r+")
        except (zarr.errors.ContainsArrayError, zarr.errors.NodeTypeValidationError) as exc:
            raise ClusterError(f"{uri} is a Zarr array, not a statemap store: {exc}") from exc

    @staticmethod
    def _decode(uri: str, meta: dict[str, Any]) -> tuple[StoreLayout, RunAttrs]:
        try:
            return StoreLayout.from_json(meta["layout"]), RunAttrs.from_json(meta)
        except (KeyError, TypeError) as exc:
            raise ClusterError(
                f"store {uri} has incomplete statemap metadata (missing {exc}); it was written "
                "by another version or edited: give a new store path"
            ) from exc

    @classmethod
    def _create(cls, uri: str, layout: StoreLayout, attrs: RunAttrs) -> TileStore:
        """Arrays first, the ``statemap`` attribute last: it marks the store complete.
        Arrays left by an interrupted creation are kept if they fit, so rerunning is safe."""
        group = zarr.open_group(_zarr_store(uri, read_only=False), mode="a")
        for name, spec, values in _array_specs(layout):
            if name in group:
                array = group[name]
                got = (array.shape, array.chunks, str(array.dtype))
                if got != (spec["shape"], spec["chunks"], spec["dtype"]):
                    raise ClusterError(
                        f"store {uri}: array {name!r}, left by an interrupted creation, has "
                        f"(shape, chunks, dtype) {got}, not this run's: delete the store"
                    )
            else:
                array = group.create_array(name, compressors=[_CODEC], **spec)
            if values is not None:
                array[...] = values
        if "statemap" not in group:
            group.create_group("statemap", attributes={"done.bin": "bitmap of finished tiles"})
        group.attrs.update({"statemap": _metadata(layout, attrs)})
        return cls(uri, group, layout, attrs, writable=True)

    def array(self, name: Literal["class", "confidence", "quality"]) -> zarr.Array:
        """The whole zarr array, for windowed reads that span tiles (compile)."""
        return self._arrays[name]

    @property
    def has_quality(self) -> bool:
        """False for a store made before the quality layer."""
        return q.QUALITY in self._arrays

    def write_tile(
        self,
        tile: Tile,
        classes: np.ndarray,
        confidence: np.ndarray,
        quality: np.ndarray | None = None,
    ) -> None:
        """Write one tile's chunk in each array. Safe beside other actors: no shared chunk.
        Without ``quality`` (maps made elsewhere) its chunk stays unwritten: nodata."""
        if not self.writable:
            raise ClusterError(f"store {self.uri} was opened read-only; open it writable")
        rows, cols = self.layout.check(tile, self.uri)
        size = self.layout.grid.tile_shape()
        for name, data in (("classes", classes), ("confidence", confidence)):
            if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape != size:
                got = (getattr(data, "dtype", type(data).__name__), getattr(data, "shape", None))
                raise ClusterError(
                    f"tile {tile.id}: {name} must be a uint8 array of shape {size}, got "
                    f"{got[0]} {got[1]}; crop the halo off and cast with .astype(np.uint8)"
                )
        n = len(self.attrs.class_names)
        bad = (classes >= n) & (classes != NODATA)
        if bad.any():
            raise ClusterError(
                f"tile {tile.id}: class value {int(classes[bad][0])} is not a class of run "
                f"{self.attrs.run_id!r} (0..{n - 1}, {NODATA} = nodata)"
            )
        if not np.array_equal(classes == NODATA, confidence == NODATA):
            raise ClusterError(
                f"tile {tile.id}: confidence must be {NODATA} exactly where the class is "
                f"{NODATA} (nodata) and 0..254 elsewhere"
            )
        if quality is not None:
            q.check_tile(tile.id, quality, classes)
        i, j = tile.row - self.layout.row0, tile.col - self.layout.col0
        for name, data in (("class", classes), ("confidence", confidence), (q.QUALITY, quality)):
            if data is not None:
                self._arrays[name][..., rows, cols] = data
                band = "0/" * (data.ndim - 2)  # the quality array's one chunk along bands
                rec.remove_partials(self.uri, f"{name}/c/{band}{i}/{j}")  # left by a killed writer

    def read_tile(self, tile: Tile) -> tuple[np.ndarray, np.ndarray]:
        """(classes, confidence) of one tile; a tile never written reads as all 255."""
        rows, cols = self.layout.check(tile, self.uri)
        return self._arrays["class"][rows, cols], self._arrays["confidence"][rows, cols]

    def done_tiles(self) -> rec.DoneTiles:
        """The finished tiles, from the one done-record object (empty if none yet)."""
        lay = self.layout
        data = rec.read_bytes(self.uri, _DONE_KEY)
        if data is None:
            return rec.DoneTiles.empty(lay.row0, lay.col0, lay.rows, lay.cols)
        return rec.DoneTiles.from_bytes(data, lay.row0, lay.col0, lay.rows, lay.cols,
                                    where=f"{self.uri}/{_DONE_KEY}")  # fmt: skip

    def mark_done(self, tiles: Iterable[Tile]) -> None:
        """Add tiles to the done record. Driver only (single writer), and only after the
        tiles' chunks are written: a crash then costs recomputation, never a hole."""
        if not self.writable:
            raise ClusterError(f"store {self.uri} was opened read-only; open it writable")
        tiles = list(tiles)
        inside = self.layout.contains
        bad = next((t for t in tiles if not (isinstance(t, Tile) and inside(t))), None)
        if bad is not None:
            self.layout.check(bad, self.uri)  # raises, naming the tile
        if tiles:
            done = self.done_tiles().union(tiles)
            rec.write_bytes_atomic(self.uri, _DONE_KEY, done.to_bytes())
