"""The done-record of a tile store, and the byte I/O on store URIs beneath it.

DESIGN.md asks for "a compact record, not one object per tile listed on every
start": at Germany scale (1.4 million tiles) listing chunk objects on S3 to
find finished tiles costs minutes, while one bitmap of rows x cols bits is
175 KB before compression. The record is one object, written only by the
driver and replaced whole (temp file + ``os.replace`` locally; a single PUT is
atomic on S3), so a crash leaves either the old or the new record, never half.

Its format, little-endian: ``b"STMDONE1"``, uint32 rows, uint32 cols, then
``zlib`` of ``np.packbits`` of the row-major bool bitmap. Bits are indexed
relative to the store layout's first row and column. zlib's checksum catches
a truncated or damaged record.

The functions ``read_bytes`` / ``write_bytes_atomic`` / ``exists`` /
``remove_partials`` are the store's only byte I/O by URI; they take a store
URI and a key, and hand local paths and ``s3://`` URIs alike to
``cluster.storage.objstore``.
"""

from __future__ import annotations

import glob
import struct
import zlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from cluster.errors import ClusterError
from cluster.storage import objstore
from cluster.tiles.grid import Tile

__all__ = [
    "DoneTiles", "exists", "local_path", "read_bytes", "remove_partials", "write_bytes_atomic",
]  # fmt: skip

_MAGIC = b"STMDONE1"
_HEADER = struct.Struct("<8sII")


def local_path(uri: str) -> Path:
    """The filesystem path of a plain-path or ``file://`` URI; other schemes are refused."""
    return objstore.local_path(uri)


def exists(uri: str, key: str = "") -> bool:
    """Whether the object ``key`` under ``uri`` exists; with ``key=""``, whether anything
    at all is stored at ``uri`` (a file or object, or a directory or prefix not empty)."""
    if not key:
        return objstore.exists_under(uri)
    if objstore.is_s3(uri):
        return objstore.exists(objstore.join(uri, key))
    path = local_path(uri) / key
    return path.exists() and not path.is_dir()


def read_bytes(uri: str, key: str) -> bytes | None:
    """The object's bytes, or None when it does not exist."""
    return objstore.read_bytes(objstore.join(uri, key))


def write_bytes_atomic(uri: str, key: str, data: bytes) -> None:
    """Replace the object whole: readers see the old bytes or the new, never a mix
    (locally temp file + ``os.replace``; on S3 one PUT, which is atomic)."""
    objstore.write_bytes_atomic(objstore.join(uri, key), data)


def remove_partials(uri: str, key: str) -> None:
    """Delete what a writer killed mid-write left beside ``key`` (zarr's LocalStore writes
    ``<key>.<uuid>.partial`` then renames), so a resumed store ends byte-identical to an
    uninterrupted one. Only the key's own writer calls it: one tile, one writer. On S3
    there is nothing to remove: an interrupted PUT leaves no object."""
    if objstore.is_s3(uri):
        return
    path = local_path(uri) / key
    for stray in path.parent.glob(f"{glob.escape(path.name)}.*.partial"):
        stray.unlink(missing_ok=True)


class DoneTiles:
    """The set of finished tiles of one store layout, backed by a bool bitmap.

    ``tile in done`` takes a ``Tile`` or a tile id; tiles outside the layout
    are simply not in it. Iteration is row-major, like ``Tile`` ordering.
    """

    def __init__(self, row0: int, col0: int, bits: np.ndarray) -> None:
        self.row0, self.col0 = row0, col0
        self.bits = bits

    @classmethod
    def empty(cls, row0: int, col0: int, rows: int, cols: int) -> DoneTiles:
        return cls(row0, col0, np.zeros((rows, cols), dtype=bool))

    def __contains__(self, tile: object) -> bool:
        if isinstance(tile, str):
            tile = Tile.parse(tile)
        if not isinstance(tile, Tile):
            return False
        r, c = tile.row - self.row0, tile.col - self.col0
        return 0 <= r < self.bits.shape[0] and 0 <= c < self.bits.shape[1] and bool(self.bits[r, c])

    def __len__(self) -> int:
        return int(np.count_nonzero(self.bits))

    def __iter__(self) -> Iterator[Tile]:
        for r, c in np.argwhere(self.bits):
            yield Tile(int(r) + self.row0, int(c) + self.col0)

    def union(self, tiles: Iterable[Tile]) -> DoneTiles:
        """A new record with ``tiles`` added; the caller has checked they lie in the layout."""
        pairs = np.array([(t.row, t.col) for t in tiles], dtype=np.int64).reshape(-1, 2)
        bits = self.bits.copy()
        bits[pairs[:, 0] - self.row0, pairs[:, 1] - self.col0] = True
        return DoneTiles(self.row0, self.col0, bits)

    def to_bytes(self) -> bytes:
        rows, cols = self.bits.shape
        packed = np.packbits(self.bits.ravel()).tobytes()
        return _HEADER.pack(_MAGIC, rows, cols) + zlib.compress(packed, 9)

    @classmethod
    def from_bytes(
        cls, data: bytes, row0: int, col0: int, rows: int, cols: int, where: str
    ) -> DoneTiles:
        """Decode the record of a rows x cols layout; ``where`` names it in errors. A record
        of another shape, or a damaged one, is refused: trusting it could skip tiles."""
        fix = "delete it, and the next run recomputes every tile (nothing else is lost)"
        if len(data) < _HEADER.size:
            raise ClusterError(f"done record {where} is truncated ({len(data)} bytes); {fix}")
        magic, got_rows, got_cols = _HEADER.unpack_from(data)
        if magic != _MAGIC:
            raise ClusterError(f"done record {where} is not a statemap done record; {fix}")
        if (got_rows, got_cols) != (rows, cols):
            raise ClusterError(
                f"done record {where} is for {got_rows} x {got_cols} tiles, the store has "
                f"{rows} x {cols}; {fix}"
            )
        try:
            packed = np.frombuffer(zlib.decompress(data[_HEADER.size :]), dtype=np.uint8)
        except zlib.error as exc:
            raise ClusterError(f"done record {where} is damaged ({exc}); {fix}") from exc
        if packed.size != (rows * cols + 7) // 8:
            raise ClusterError(f"done record {where} holds the wrong number of bits; {fix}")
        bits = np.unpackbits(packed, count=rows * cols).astype(bool).reshape(rows, cols)
        return cls(row0, col0, bits)
