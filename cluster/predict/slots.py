"""Shared-memory slots in which readers hand tile inputs to their actor.

A tile's input returned through Ray's object store is copied into memory
the object store hands out fresh, so every tile costs its reader and its
actor a page fault per 4 KiB: on the 2-core machine about half the reader's
CPU time went to the kernel (1,600 faults per 512-px tile). The actor's
slots are mapped once by each reader and reused tile after tile, so after
the first pass nothing faults and the input is written once, where the actor
reads it.

The actor owns the segment; Python's resource tracker unlinks it if the
actor dies without closing it. Readers only attach, and tell their own
tracker to leave it alone (before Python 3.13 an attaching process would
otherwise unlink it when it exits).
"""

from __future__ import annotations

import mmap
import os
import threading
from dataclasses import dataclass
from multiprocessing import resource_tracker, shared_memory

import numpy as np

from cluster.predict.quality import BANDS

SHM_DIR = "/dev/shm"
QUALITY_BANDS = len(BANDS)


@dataclass(frozen=True)
class SlotSpec:
    """Where and in what shape: enough for a reader to attach and find slot ``i``."""

    name: str
    n: int
    x_shape: tuple[int, int, int]  # channels, haloed height, haloed width (float32)
    keep_shape: tuple[int, int]  # the tile's core (bool; and its quality, QUALITY_BANDS uint8)

    @property
    def nbytes(self) -> int:
        core = int(np.prod(self.keep_shape))
        return self.n * (4 * int(np.prod(self.x_shape)) + core * (1 + QUALITY_BANDS))


def _views(spec: SlotSpec, buf: memoryview) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each slot's input, mapped pixels and quality (``cluster.predict.quality``)."""
    x_bytes = spec.n * 4 * int(np.prod(spec.x_shape))
    keep_bytes = x_bytes + spec.n * int(np.prod(spec.keep_shape))
    x = np.ndarray((spec.n, *spec.x_shape), np.float32, buf[:x_bytes])
    keep = np.ndarray((spec.n, *spec.keep_shape), np.bool_, buf[x_bytes:keep_bytes])
    quality_shape = (spec.n, QUALITY_BANDS, *spec.keep_shape)
    quality = np.ndarray(quality_shape, np.uint8, buf[keep_bytes : spec.nbytes])
    return x, keep, quality


def shared_memory_fits(nbytes: int) -> bool:
    """Whether /dev/shm has room for ``nbytes`` and as much again: a tmpfs that fills
    up kills the process touching the page (SIGBUS), so the actor checks first and
    falls back to the object store where a container left /dev/shm small."""
    try:
        stat = os.statvfs(SHM_DIR)
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize >= 2 * nbytes


class Slots:
    """The actor's slots: taken for a batch's tiles, given back once the batch is copied."""

    def __init__(self, n: int, x_shape: tuple[int, int, int], keep_shape: tuple[int, int]) -> None:
        size = SlotSpec("", n, x_shape, keep_shape).nbytes
        self._shm = shared_memory.SharedMemory(create=True, size=size)
        self.spec = SlotSpec(self._shm.name, n, x_shape, keep_shape)
        self.x, self.keep, self.quality = _views(self.spec, self._shm.buf)
        _touch(self._shm.buf)
        self._free = list(range(n))
        self._lock = threading.Lock()

    def take(self, k: int) -> list[int]:
        """``k`` free slots; the actor holds at most its calls' batches, never more."""
        with self._lock:
            if k > len(self._free):
                raise RuntimeError(f"{k} slots wanted, {len(self._free)} free of {self.spec.n}")
            taken, self._free = self._free[:k], self._free[k:]
        return taken

    def give(self, slots: list[int]) -> None:
        with self._lock:
            self._free.extend(slots)

    def close(self) -> None:
        del self.x, self.keep, self.quality  # views first: a mapping with exports cannot close
        self._shm.close()
        self._shm.unlink()


class AttachedSlots:
    """A reader's view of its actor's slots, attached once and kept."""

    def __init__(self, spec: SlotSpec, touch: bool = False) -> None:
        self._shm = shared_memory.SharedMemory(name=spec.name)
        resource_tracker.unregister(self._shm._name, "shared_memory")  # the actor's to unlink
        self.spec = spec
        self.x, self.keep, self.quality = _views(spec, self._shm.buf)
        if touch:  # map every page now (a read maps it too): no fault while reading tiles
            _touch(self._shm.buf)


def _touch(buf: memoryview) -> None:
    """Fault in every page of a mapping, without writing (the actor may already be
    using it): summing a strided view reads one byte per page."""
    int(np.frombuffer(buf, np.uint8)[:: mmap.PAGESIZE].sum())
