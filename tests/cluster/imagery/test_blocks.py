"""Decoded blocks shared by all reads of a process: the file's own pixels, each block
fetched once however many threads and handles want it, failures handed to all."""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.windows import Window

from cluster.imagery import inflight
from cluster.imagery.blocks import BlockCache, CachedReads


def write(path: Path, shape: tuple[int, int, int], dtype: str, seed: int, **layout) -> np.ndarray:
    data = np.random.default_rng(seed).integers(0, 250, shape).astype(dtype)
    profile = dict(driver="GTiff", count=shape[0], height=shape[1], width=shape[2], dtype=dtype,
                   crs="EPSG:25832", transform=Affine(10, 0, 400_000, 0, -10, 5_500_000),
                   compress="deflate", **layout)  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return data


LAYOUTS = {
    "tiled": dict(tiled=True, blockxsize=128, blockysize=128),  # cells of 2 x 2 blocks
    "striped": dict(tiled=False, blockysize=8),  # cells of 32 strips
}


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("ahead", [True, False])
def test_reads_through_the_cache_are_the_files_pixels(tmp_path, layout, ahead):
    path = tmp_path / "a.tif"
    data = write(path, (3, 700, 611), "uint16", seed=1, **LAYOUTS[layout])
    cache = BlockCache(max_bytes=64 * 2**20)
    cache.ahead = ahead
    rng = np.random.default_rng(2)
    with rasterio.open(path) as one, rasterio.open(path) as two:
        for n in range(60):
            h, w = (int(v) for v in rng.integers(1, 300, 2))
            r, c = int(rng.integers(0, 700 - h + 1)), int(rng.integers(0, 611 - w + 1))
            indexes = [[1], [3, 1], [2]][n % 3]
            src = CachedReads(one if n % 2 else two, "a", cache)  # two handles, one cache
            got = src.read(indexes, window=Window(c, r, w, h))
            want = data[[i - 1 for i in indexes], r : r + h, c : c + w]
            assert got.dtype == want.dtype and got.shape == want.shape
            np.testing.assert_array_equal(got, want)
        # Outside the file: the dataset's own read, as without the cache.
        edge = CachedReads(one, "a", cache).read([1], window=Window(600, 690, 20, 20))
        np.testing.assert_array_equal(edge, one.read([1], window=Window(600, 690, 20, 20)))
    assert cache.hits > cache.misses  # the windows overlap: most cells were held


class SlowReads:
    """A dataset whose reads take a while and are counted (or fail)."""

    def __init__(self, src: rasterio.io.DatasetReader, fail: bool = False) -> None:
        self.src, self.fail, self.reads = src, fail, 0
        self.lock = threading.Lock()

    def __getattr__(self, name: str):
        return getattr(self.src, name)

    def read(self, indexes, window):
        with self.lock:
            self.reads += 1
        time.sleep(0.2)
        if self.fail:
            raise OSError("connection reset by peer")
        return self.src.read(indexes, window=window)


def test_a_block_wanted_by_many_threads_at_once_is_read_once(tmp_path):
    path = tmp_path / "a.tif"
    data = write(path, (1, 512, 512), "uint8", seed=3, **LAYOUTS["tiled"])
    cache = BlockCache()
    with rasterio.open(path) as src:
        slow = SlowReads(src)
        window = Window(100, 100, 200, 200)
        with ThreadPoolExecutor(8) as pool:
            got = list(pool.map(lambda _: cache.read(slow, "a", [1], window), range(8)))
    assert slow.reads == 1
    for each in got:
        np.testing.assert_array_equal(each[0], data[0, 100:300, 100:300])


def test_a_failed_read_fails_everyone_waiting_for_it_and_keeps_nothing(tmp_path):
    path = tmp_path / "a.tif"
    data = write(path, (1, 256, 256), "uint8", seed=4, **LAYOUTS["tiled"])
    cache = BlockCache()
    window = Window(0, 0, 100, 100)
    with rasterio.open(path) as src:
        broken = SlowReads(src, fail=True)
        with ThreadPoolExecutor(4) as pool:
            futures = [pool.submit(cache.read, broken, "a", [1], window) for _ in range(4)]
            for future in futures:
                with pytest.raises(OSError, match="connection reset"):
                    future.result()
        assert broken.reads == 1
        # Nothing half-read was kept: the next read reads the file again.
        np.testing.assert_array_equal(cache.read(src, "a", [1], window)[0], data[0, :100, :100])


def test_the_cache_holds_no_more_than_its_bound(tmp_path):
    path = tmp_path / "a.tif"
    write(path, (1, 1024, 1024), "uint16", seed=5, **LAYOUTS["tiled"])
    cache = BlockCache(max_bytes=3 * 256 * 256 * 2)  # three cells
    with rasterio.open(path) as src:
        for r in range(0, 1024, 256):
            for c in range(0, 1024, 256):
                cache.read(src, "a", [1], Window(c, r, 256, 256))
                assert cache._bytes <= cache.max_bytes
    assert len(cache._cells) == 3


def test_a_replaced_local_file_is_read_anew(tmp_path):
    """The cache knows a local file by its href and (inode, size, mtime), as the handles do."""
    path = tmp_path / "a.tif"
    old = write(path, (1, 256, 256), "uint8", seed=6, **LAYOUTS["tiled"])
    window = Window(0, 0, 64, 64)
    try:
        with inflight.dataset(str(path)) as src:
            np.testing.assert_array_equal(src.read([1], window=window)[0], old[0, :64, :64])
        new_path = tmp_path / "b.tif"
        new = write(new_path, (1, 256, 256), "uint8", seed=7, **LAYOUTS["tiled"])
        os.replace(new_path, path)
        with inflight.dataset(str(path)) as src:
            np.testing.assert_array_equal(src.read([1], window=window)[0], new[0, :64, :64])
    finally:
        inflight.close_datasets()
