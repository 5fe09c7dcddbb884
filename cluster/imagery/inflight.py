"""Many reads in flight at once: a process's request threads and its open datasets.

Imagery in object storage answers 20-100 ms after each request. A reader that
asks for a tile's quality mask, then each band, item after item, waits that
long for every file in turn and leaves its CPU idle (one tile every few
hundred ms at 50 ms). So the reader hands each file read of a tile to a pool
of request threads (:func:`submit`) and issues together all it will need
before waiting for the first; readers in turn read several tiles at once
(``cluster.predict.readers``). GDAL releases the GIL while it waits and
decodes, so the threads overlap their round trips and their decoding, and
within one read GDAL fetches a window's COG blocks in parallel (one merged
multi-range read).

The remote pool's size bounds requests in flight per process
(:func:`set_requests`, a run's ``run.requests_in_flight``), and a throttled
store narrows that further (``cluster.imagery.throttle``). Files on a local
disk go to a pool of their own, of ``LOCAL_REQUESTS`` threads: there a read
waits for no one, and more threads only fight over the GIL (a 40-date
composite took 3.1 s with 1 or 2, 4.1 s with 32). The bytes held are bounded
by the callers, who issue a bounded share of a tile ahead per tile in flight.

Datasets are opened once and kept: a COG's header and tile index cost a
request to read, so a handle goes back to a shared pool after each read and
the next read of that file, from any thread, takes it (:func:`dataset`). A
handle serves one thread at a time (GDAL datasets are not thread-safe); two
threads reading one file at once each get one. GDAL's caches of fetched
bytes and decoded blocks are per handle, so windowed reads go through
``cluster.imagery.blocks`` instead: decoded blocks shared by every handle and
thread of the process, each fetched once.
"""

from __future__ import annotations

import atexit
import os
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

import rasterio
from rasterio.io import DatasetReader
from rasterio.session import DummySession

from cluster.errors import ClusterError
from cluster.imagery import signing, throttle
from cluster.imagery.blocks import CachedReads, blocks
from cluster.imagery.providers import BUCKET_ENDPOINTS
from cluster.storage import objstore

__all__ = [
    "DEFAULT_HANDLES", "DEFAULT_REQUESTS", "LOCAL_REQUESTS", "close_datasets", "dataset",
    "discard", "enter_env", "set_requests", "submit",
]  # fmt: skip

P = ParamSpec("P")
T = TypeVar("T")

# Requests in flight per process. At 50 ms a request, 32 keep ~640 reads/s going;
# a local disk needs only a few, and more threads cost nothing while they wait.
DEFAULT_REQUESTS = 32
LOCAL_REQUESTS = 2
_MAX_IDLE = 256  # idle handles kept: the items of the tiles in flight and their neighbours
# Handles per file: one would queue the tiles in flight on the file they all need.
# Their decoded blocks are shared (cluster.imagery.blocks), so a second handle no
# longer fetches and decodes again what the first did (before: 32 request threads
# fetched 4.5 MB a 512-px tile, 2 handles a file 2.8 MB; now 2.2 MB).
DEFAULT_HANDLES = 2

# What a handle was opened on: a local file's (inode, size, mtime), a signed href's
# token expiry, or None.
Stamp = tuple[int, int, int] | float | None
_lock = threading.Lock()
_pools: dict[bool, ThreadPoolExecutor] = {}  # remote or not -> its request threads
_size = DEFAULT_REQUESTS
_handles = DEFAULT_HANDLES
_idle: OrderedDict[str, list[tuple[DatasetReader, Stamp]]] = OrderedDict()
_live: Counter[str] = Counter()  # handles of each file, idle or in use
_returned = threading.Condition(_lock)  # a handle came back (or was closed)
throttle.window.resize(DEFAULT_REQUESTS)


def set_requests(n: int, handles_per_file: int = DEFAULT_HANDLES) -> None:
    """Requests to object storage in flight at most in this process, and open handles
    per file, from the next read on."""
    global _size, _handles
    if n < 1 or handles_per_file < 1:
        raise ClusterError(
            f"requests in flight ({n}) and handles per file ({handles_per_file}) must be >= 1"
        )
    with _lock:
        _handles = handles_per_file
        if n != _size and (pool := _pools.pop(True, None)) is not None:
            pool.shutdown(wait=False)  # reads already issued finish on the old threads
        _size = n
    throttle.window.resize(n)


def enter_env() -> None:
    """Give this thread a GDAL environment for its whole life (a pool's initializer).
    Without one, rasterio makes one per call (reads, warps, rasterising), and with
    AWS keys in the environment that means a boto3 session each time: 5% of a
    remote reader's time. It carries no credentials (GDAL reads the run's from the
    environment, as without it), so a bucket on its own service still gets its own
    (``gdalenv.bucket_env``, entered around the open)."""
    rasterio.Env(session=DummySession()).__enter__()


def submit(href: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> Future[T]:
    """Run a read of ``href`` on a request thread (of the remote pool for a URL, there
    within the throttle window). A request thread never submits itself, so a full pool
    cannot wait on itself."""
    remote = "://" in href and not href.startswith("file://")
    with _lock:
        if (pool := _pools.get(remote)) is None:
            size, name = (_size, "statemap-get") if remote else (LOCAL_REQUESTS, "statemap-read")
            pool = _pools[remote] = ThreadPoolExecutor(size, name, initializer=enter_env)
            throttle.watch()
    if remote:
        return pool.submit(_windowed, fn, *args, **kwargs)
    return pool.submit(fn, *args, **kwargs)


def _windowed(fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    throttle.window.acquire()
    try:
        return fn(*args, **kwargs)
    finally:
        throttle.window.release()


def discard(futures: list[Future[T]]) -> None:
    """Reads issued ahead that turned out not to be needed: those not started are
    dropped, the rest finish and are ignored, failures included (a file nobody
    needed may be broken without failing the tile)."""
    for future in futures:
        future.cancel()


@contextmanager
def dataset(href: str) -> Iterator[CachedReads]:
    """An open dataset of ``href`` for this thread's exclusive use until the block
    ends; at most ``handles_per_file`` (:func:`set_requests`) exist per file, and a
    thread wanting one more waits for one to come back. A local file is reopened
    when it changed on disk (or vanished: FileNotFoundError), so a replaced file is
    never read stale. A read that fails closes the handle and every idle one of the
    file, so a repaired file is reopened next time. A provider's href that must be
    signed is opened signed (``cluster.imagery.signing``), and a handle opened with
    a token is not used past the token's renewal."""
    stamp: Stamp
    if "://" in href:
        path, stamp = signing.sign(href)
    else:
        stat = os.stat(href)
        path, stamp = href, (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    src = _take(href, stamp)
    if src is None:
        try:
            src = objstore.open_raster(path, BUCKET_ENDPOINTS)
        except BaseException:
            _forget(href, 1)
            raise
    try:
        # Windowed reads share decoded blocks with every other handle of the file.
        yield CachedReads(src, (href, None if "://" in href else stamp), blocks)
    except BaseException:
        _close([src])
        _forget(href, 1)
        _evict(href)
        raise
    _give_back(href, src, stamp)


def close_datasets() -> None:
    """Close every idle dataset (e.g. before an actor exits, or a test removes files)
    and drop the decoded blocks of all files."""
    blocks.clear()
    with _lock:
        handles = [src for kept in _idle.values() for src, _ in kept]
        for href, kept in _idle.items():
            _live[href] -= len(kept)
        _idle.clear()
    _close(handles)


# Handles left open at exit would close as the interpreter tears down, outside
# any GDAL environment (see _close).
atexit.register(close_datasets)


def _close(handles: Iterable[DatasetReader]) -> None:
    """Close ``handles`` within a GDAL environment: outside one, GDAL prints its
    debug messages (``CPL_DEBUG``), which name the signed URL a handle was opened
    on, straight to stderr, past rasterio's loggers and their redaction
    (``cluster.storage.redact``)."""
    handles = list(handles)
    if handles:
        with rasterio.Env(session=DummySession()):
            for src in handles:
                src.close()


def _take(href: str, stamp: Stamp) -> DatasetReader | None:
    """An idle handle of the file, or None when the caller is to open one (and may:
    it is counted); waits while the file has all its handles out."""
    stale = []
    found = None
    with _returned:
        while True:
            kept = _idle.get(href, [])
            while kept and found is None:
                src, was = kept.pop()
                if was == stamp:
                    found = src
                else:
                    stale.append(src)
                    _live[href] -= 1
            if found is not None or _live[href] < _handles:
                break
            _returned.wait()
        if found is None:
            _live[href] += 1
        if href in _idle:
            _idle.move_to_end(href)
    _close(stale)
    return found


def _give_back(href: str, src: DatasetReader, stamp: Stamp) -> None:
    closing = []
    with _returned:
        _idle.setdefault(href, []).append((src, stamp))
        _idle.move_to_end(href)
        count = sum(len(kept) for kept in _idle.values())
        while count > _MAX_IDLE:
            oldest, kept = _idle.popitem(last=False)
            closing.extend(src for src, _ in kept)
            _live[oldest] -= len(kept)
            count -= len(kept)
        _returned.notify_all()
    _close(closing)


def _forget(href: str, n: int) -> None:
    with _returned:
        _live[href] -= n
        _returned.notify_all()


def _evict(href: str) -> None:
    with _lock:
        kept = _idle.pop(href, [])
    _forget(href, len(kept))
    _close(src for src, _ in kept)
