"""The chip store: training chips written once, read many times, in one Zarr v3 group.

A chip is one tile of the chip grid (``tile_size`` = chip size, ``halo`` =
context), read exactly as a run reads a tile. Per chip the store holds the
haloed imagery (float32, NaN where no item has a valid pixel), the labels on
the same window (uint8, 255 = no label, also wherever the imagery is NaN),
its chip-grid row and column, and its labelled core pixels per class: as made
(``counts``, where the imagery is valid) and from the labels alone
(``label_counts``, for every chip when the store is made, so the split does not
depend on which chips were made). Each
chip is its own chunk in ``image`` and ``label``: workers write disjoint
chunks, no locks, and a rewritten chip is byte-identical.

Like a run's store it is resumable: the driver alone keeps a done record
(one bitmap object, ``cluster.predict.donerecord``) and the ``counts`` of
finished chips. A store answers only the recipe it was made for; another
recipe (catalog selection, units, grid, labels, bands) is refused.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BloscCodec

from cluster.errors import ClusterError
from cluster.predict import donerecord as rec
from cluster.storage import objstore
from cluster.tiles.grid import Grid, Tile

__all__ = ["FORMAT", "ChipStore"]

FORMAT = "statemap.chips/1"
_DONE_KEY = "statemap/done.bin"
_ROW = 1024  # chips per row of the done bitmap (DoneTiles is rows x cols)
_CODEC = BloscCodec(cname="zstd", clevel=3, shuffle="shuffle")


class ChipStore:
    """Open with ``create_or_open`` (the driver) or ``open`` (workers, training)."""

    def __init__(self, uri: str, group: zarr.Group, meta: dict[str, Any]) -> None:
        self.uri, self.meta = uri, meta
        self.grid = Grid(**{**meta["grid"], "origin": tuple(meta["grid"]["origin"])})
        self.class_names: tuple[str, ...] = tuple(meta["class_names"])
        self.bands: tuple[str, ...] = tuple(meta["bands"])
        self._group = group
        self.image, self.label = group["image"], group["label"]
        self.rows: np.ndarray = group["row"][:]
        self.cols: np.ndarray = group["col"][:]

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def recipe(self) -> dict[str, Any]:
        return self.meta["recipe"]

    @classmethod
    def create_or_open(
        cls,
        uri: str,
        recipe: dict[str, Any],
        grid: Grid,
        bands: tuple[str, ...],
        class_names: tuple[str, ...],
        chips: list[Tile],
        label_counts: Callable[[], np.ndarray],
    ) -> ChipStore:
        """Create the store for ``chips``, or open it to resume the same recipe.
        ``label_counts``: the chips' labelled core pixels per class from the labels,
        asked for where the store has none yet."""
        meta = {
            "format": FORMAT, "recipe": recipe, "recipe_sha256": _sha(recipe),
            "grid": {"crs": grid.crs, "origin": list(grid.origin), "resolution": grid.resolution,
                     "tile_size": grid.tile_size, "halo": grid.halo},
            "bands": list(bands), "class_names": list(class_names), "chips": len(chips),
            "nodata": 255, "done_record": _DONE_KEY,
        }  # fmt: skip
        if rec.exists(uri, "zarr.json"):
            store = cls.open(uri, writable=True)
            old = store.meta
            if old.get("recipe_sha256") != meta["recipe_sha256"] or old["chips"] != len(chips):
                changed = sorted(
                    k for k in set(old["recipe"]) | set(recipe)
                    if old["recipe"].get(k) != recipe.get(k)
                )  # fmt: skip
                raise ClusterError(
                    f"chip store {uri} was made from another recipe (differs in "
                    f"{', '.join(changed) or 'its chips'}); give a new chip store path, or "
                    "delete it to make the chips again"
                )
            if "label_counts" not in store._group:  # a store from before they were kept
                store._write_label_counts(label_counts())
            return store
        if rec.exists(uri):
            raise ClusterError(f"{uri} exists but is not a chip store; give a new path")
        group = zarr.open_group(objstore.zarr_store(uri, read_only=False), mode="w")
        n, size, k = len(chips), grid.tile_size + 2 * grid.halo, len(bands)
        group.create_array("image", shape=(n, k, size, size), chunks=(1, k, size, size),
                           dtype="float32", fill_value=np.nan, compressors=[_CODEC],
                           dimension_names=["chip", "band", "y", "x"])  # fmt: skip
        group.create_array("label", shape=(n, size, size), chunks=(1, size, size),
                           dtype="uint8", fill_value=255, compressors=[_CODEC],
                           dimension_names=["chip", "y", "x"])  # fmt: skip
        c = len(class_names)
        group.create_array("counts", shape=(n, c), chunks=(max(n, 1), c), dtype="int64",
                           fill_value=0, dimension_names=["chip", "class"])  # fmt: skip
        for name, values in (("row", [t.row for t in chips]), ("col", [t.col for t in chips])):
            array = group.create_array(name, shape=(n,), chunks=(max(n, 1),), dtype="int32",
                                       fill_value=0, dimension_names=["chip"])  # fmt: skip
            array[:] = np.asarray(values, dtype=np.int32)
        store = cls(uri, group, meta)
        store._write_label_counts(label_counts())
        group.attrs.update({"statemap_chips": meta})  # last: marks the store complete
        return store

    def _write_label_counts(self, counts: np.ndarray) -> None:
        n, c = len(self), len(self.class_names)
        array = self._group.create_array(
            "label_counts", shape=(n, c), chunks=(max(n, 1), c), dtype="int64", fill_value=0,
            dimension_names=["chip", "class"], overwrite=True,
        )  # fmt: skip
        array[:] = np.asarray(counts, dtype=np.int64).reshape(n, c)

    @classmethod
    def open(cls, uri: str, writable: bool = False) -> ChipStore:
        if not rec.exists(uri, "zarr.json"):
            raise ClusterError(
                f"no chip store at {uri}; `statemap train` with a catalog config makes it"
            )
        group = zarr.open_group(
            objstore.zarr_store(uri, read_only=not writable), mode="r+" if writable else "r"
        )
        meta = group.attrs.get("statemap_chips")
        if meta is None or meta.get("format") != FORMAT:
            raise ClusterError(
                f"{uri} is not a statemap chip store (or its creation was interrupted): "
                "give a new path, or delete it"
            )
        return cls(uri, group, meta)

    def tile(self, index: int) -> Tile:
        return Tile(int(self.rows[index]), int(self.cols[index]))

    def write(self, index: int, image: np.ndarray, label: np.ndarray) -> None:
        """One chip's chunks (a worker's write; no other writer touches them)."""
        self.image[index] = image
        self.label[index] = label
        for name in ("image", "label"):
            key = f"{name}/c/{index}/0/0/0" if name == "image" else f"{name}/c/{index}/0/0"
            rec.remove_partials(self.uri, key)

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        return self.image[index], self.label[index]

    def counts(self) -> np.ndarray:
        """Labelled core pixels per chip and class (zeros for chips not yet done)."""
        return self._group["counts"][:]

    def label_counts(self) -> np.ndarray:
        """Labelled core pixels per chip and class by the labels alone, every chip."""
        return self._group["label_counts"][:]

    def done(self) -> np.ndarray:
        """bool per chip: made and recorded."""
        rows = -(-len(self) // _ROW)
        data = rec.read_bytes(self.uri, _DONE_KEY)
        if data is None:
            return np.zeros(len(self), dtype=bool)
        bits = rec.DoneTiles.from_bytes(data, 0, 0, rows, _ROW, where=f"{self.uri}/{_DONE_KEY}")
        return bits.bits.ravel()[: len(self)].copy()

    def mark_done(self, results: Iterable[tuple[int, np.ndarray]]) -> None:
        """Record chips as made, with their class counts. Driver only, after the
        chips' chunks are written: a crash costs remaking chips, never a hole."""
        results = list(results)
        if not results:
            return
        done = self.done()
        counts = self.counts()
        for index, chip_counts in results:
            counts[index] = chip_counts
            done[index] = True
        self._group["counts"][:] = counts
        bits = np.zeros(-(-len(self) // _ROW) * _ROW, dtype=bool)
        bits[: len(self)] = done
        record = rec.DoneTiles(0, 0, bits.reshape(-1, _ROW))
        rec.write_bytes_atomic(self.uri, _DONE_KEY, record.to_bytes())


def _sha(doc: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()
