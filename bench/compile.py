"""Benchmark: our Zarr -> COG compile against GDAL's own COG driver on the same pixels.

Builds a store of SIZE x SIZE px (default 10,240) with blocky class regions (a
coarse random field upsampled, with finer patches and a nodata margin outside a
round "state"), writes the same pixels as an uncompressed tiled GeoTIFF, then
times, in one run:

- ours: ``compile_store`` (store -> temp GeoTIFF plus overview levels built in
  numpy -> COG driver, which copies those overviews), sequential;
- GDAL: ``rasterio.shutil.copy(driver="COG")`` from the uncompressed GeoTIFF
  with the same compression, block size, overview resampling, overview count
  and threads (``gdal_translate -of COG`` semantics); it builds the overviews
  itself, as it must from a plain GeoTIFF. The outputs are compared (pixels,
  overviews, bytes) and the result printed.

Throughput counts the store's pixels (both arrays per pixel). Last line:
``compile_mpx_s=<a> gdal_mpx_s=<b> ratio=<a/b>``.

    python bench/compile.py [--size 10240] [--compression DEFLATE] [--also ZSTD]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio
import rasterio.shutil

from cluster.maps.compile import (
    _GDAL_ENV,
    _RESAMPLING,
    ARRAYS,
    BLOCK,
    _colormap,
    _description,
    _level,
    _tags,
    compile_store,
    overview_count,
)
from cluster.predict.store import RunAttrs, StoreLayout, TileStore
from cluster.tiles.grid import Grid, Tile

TS = 512
ATTRS = RunAttrs(
    run_id="bench",
    checkpoint_sha256="ef" * 32,
    class_names=("water", "open land", "broadleaf", "conifer", "built-up"),
    class_colors=("#2c7fb8", "#e9d66b", "#41ab5d", "#00441b", "#d7301f"),
    software_version="bench",
)


def make_pixels(size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = len(ATTRS.class_names)
    coarse = rng.integers(0, n, (size // 128 + 1, size // 128 + 1), dtype=np.uint8)
    classes = np.repeat(np.repeat(coarse, 128, 0), 128, 1)[:size, :size]
    fine = rng.integers(0, n, (size // 16 + 1, size // 16 + 1), dtype=np.uint8)
    fine = np.repeat(np.repeat(fine, 16, 0), 16, 1)[:size, :size]
    patch = np.repeat(np.repeat(rng.random((size // 16 + 1,) * 2) < 0.15, 16, 0), 16, 1)
    classes = np.where(patch[:size, :size], fine, classes).astype(np.uint8)
    yy, xx = np.ogrid[:size, :size]
    outside = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 > (0.48 * size) ** 2
    classes[outside] = 255
    conf = (150 + 100 * np.sin(xx / 300.0) * np.cos(yy / 410.0)).astype(np.uint8)
    conf = np.minimum(conf + rng.integers(0, 4, conf.shape, dtype=np.uint8), 254)
    conf[outside] = 255
    return classes, conf


def build_store(uri: str, classes: np.ndarray, conf: np.ndarray) -> StoreLayout:
    tiles = classes.shape[0] // TS
    grid = Grid("EPSG:25832", (280000.0, 6100000.0), 1.0, TS, 0)
    layout = StoreLayout(grid, 10, 20, tiles, tiles)
    store = TileStore.create_or_open(uri, layout, ATTRS)
    for r in range(tiles):
        for c in range(tiles):
            win = np.s_[r * TS : (r + 1) * TS, c * TS : (c + 1) * TS]
            store.write_tile(Tile(10 + r, 20 + c), classes[win], conf[win])
    return layout


def write_plain(path: Path, layout: StoreLayout, data: np.ndarray, array: str) -> None:
    """The uncompressed tiled GeoTIFF GDAL starts from, with the same metadata."""
    profile = {
        "driver": "GTiff", "width": data.shape[1], "height": data.shape[0], "count": 1,
        "dtype": "uint8", "nodata": 255, "crs": layout.grid.crs, "transform": layout.transform,
        "tiled": True, "blockxsize": BLOCK, "blockysize": BLOCK, "compress": "NONE",
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)
        dst.update_tags(**_tags(ATTRS, array))
        dst.set_band_description(1, _description(ATTRS, array))
        if array == "class":
            dst.write_colormap(1, _colormap(ATTRS))


def gdal_cog(src: Path, dst: Path, array: str, compression: str) -> None:
    with rasterio.open(src) as ds:
        count = overview_count(ds.width, ds.height)
    with rasterio.Env(**_GDAL_ENV):
        rasterio.shutil.copy(
            src, dst, driver="COG", COMPRESS=compression, LEVEL=_level(compression),
            BLOCKSIZE=BLOCK, RESAMPLING=_RESAMPLING[array], OVERVIEWS="AUTO",
            OVERVIEW_COUNT=count, OVERVIEW_COMPRESS=compression, BIGTIFF="IF_SAFER",
            NUM_THREADS="ALL_CPUS", PREDICTOR="NO",
        )  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=10240, help="side in px, multiple of 512")
    ap.add_argument("--compression", default="DEFLATE")
    ap.add_argument("--repeats", type=int, default=3, help="alternating runs; medians")
    ap.add_argument("--also", default="", help="also time our compile with this compression")
    args = ap.parse_args()
    size = max(TS, args.size // TS * TS)
    with tempfile.TemporaryDirectory(prefix="bench-compile-") as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        classes, conf = make_pixels(size)
        layout = build_store(str(root / "run.zarr"), classes, conf)
        plain = {a: root / f"plain_{a}.tif" for a in ARRAYS}
        for array, data in zip(ARRAYS, (classes, conf), strict=True):
            write_plain(plain[array], layout, data, array)
        del classes, conf
        print(
            f"setup: {size} x {size} px store + plain GeoTIFFs in {time.perf_counter() - t:.1f} s"
        )
        mpx = size * size / 1e6

        # Alternating repeats, medians: single timings on a shared 2-core machine
        # scatter by +-10% (disk cache, neighbours).
        ours_t, gdal_t = [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            ours = compile_store(str(root / "run.zarr"), root / "ours",
                                 compression=args.compression, use_ray=False)  # fmt: skip
            ours_t.append(time.perf_counter() - t)
            t = time.perf_counter()
            for array in ARRAYS:
                gdal_cog(plain[array], root / f"gdal_{array}.tif", array, args.compression)
            gdal_t.append(time.perf_counter() - t)
        ours_s, gdal_s = float(np.median(ours_t)), float(np.median(gdal_t))
        print("ours s: " + " ".join(f"{v:.2f}" for v in ours_t)
              + "; gdal s: " + " ".join(f"{v:.2f}" for v in gdal_t))  # fmt: skip

        for path in ours:
            array = "class" if path.name.endswith("_class.tif") else "confidence"
            other = root / f"gdal_{array}.tif"
            with rasterio.open(path) as a, rasterio.open(other) as b:
                same = np.array_equal(a.read(1), b.read(1))
                ov_same = all(
                    np.array_equal(a.read(1, out_shape=(h, h)), b.read(1, out_shape=(h, h)))
                    for h in (size // f for f in a.overviews(1))
                )
                print(f"{array}: ours {path.stat().st_size / 1e6:.1f} MB, gdal "
                      f"{other.stat().st_size / 1e6:.1f} MB, overviews {a.overviews(1)}, "
                      f"pixels equal {same}, overviews equal {ov_same}, "
                      f"same bytes {path.read_bytes() == other.read_bytes()}")  # fmt: skip
        print(f"ours: {ours_s:.2f} s ({mpx / ours_s:.1f} Mpx/s); "
              f"gdal COG driver: {gdal_s:.2f} s ({mpx / gdal_s:.1f} Mpx/s)")  # fmt: skip
        if args.also:
            t = time.perf_counter()
            out = compile_store(str(root / "run.zarr"), root / "also", compression=args.also,
                                use_ray=False)  # fmt: skip
            s = time.perf_counter() - t
            mb = sum(p.stat().st_size for p in out) / 1e6
            zmb = sum(p.stat().st_size for p in ours) / 1e6
            print(f"{args.also}: {s:.2f} s, {mb:.1f} MB; {args.compression}: {ours_s:.2f} s, "
                  f"{zmb:.1f} MB")  # fmt: skip
        a, b = mpx / ours_s, mpx / gdal_s
        print(f"compile_mpx_s={a:.2f} gdal_mpx_s={b:.2f} ratio={a / b:.3f}")


if __name__ == "__main__":
    main()
