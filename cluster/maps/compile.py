"""Compile a run's Zarr store into cloud-optimized GeoTIFFs (COGs).

For each of the store's arrays, ``class``, ``confidence`` and ``quality`` (two
bands: clear observations used, filled flag; see ``cluster.predict.quality``),
one COG per part: 512-px internal tiles, DEFLATE (or ZSTD) compression, nodata
255, internal overviews down to under 512 px (MODE for the class map, so an
overview pixel is a real class; AVERAGE for confidence and both quality bands:
an overview's mean count, and its flag where at least half its pixels were
filled), the grid's CRS and the store's transform exactly. The class COG embeds
a colour table (class colours, 255 transparent), the class names
(``CLASS_NAMES`` JSON and ``CLASS_<value>`` tags); every COG a description per
band. A store made before the quality layer compiles into class and confidence.

Memory stays bounded whatever the size: a part is streamed out of the store in
bands of whole 512-px block rows (about 32 MB each) into an uncompressed tiled
GeoTIFF in a temp folder beside the output, each band also halved into every
overview level (``cluster.maps.overviews``), each level an uncompressed GeoTIFF
there too (``src.tif.ovr``, ``src.tif.ovr.ovr``, ...: GDAL reads them as
``src.tif``'s overviews). GDAL's COG driver then writes the COG from them.

Why build the overviews ourselves: given a source without overviews, the COG
driver builds them into a compressed temp file of its own, and its MODE for
Byte data is slow (a 256-entry histogram per output pixel). Ours are the same
pixels (the COG is byte-identical to ``gdal_translate -of COG``'s from the
same pixels); on the benchmark's 10,240 x 10,240 map (2 CPUs) the compile went
from 0.75x to 1.3x the speed of the COG driver alone, and a mostly empty
20,480 x 20,480 store from 20 s to 7 s of CPU.

A store wider or taller than ``max_part_px`` is split into parts on tile-grid
boundaries (each part a whole number of tiles), each written as its own COG,
and a VRT mosaic per array (``<name>_class.vrt``, ``<name>_confidence.vrt``,
``<name>_quality.vrt``; ``cluster.maps.vrt``) indexes them. Parts that hold
only nodata are still written: a user expects the mosaic to cover the whole
region, and an all-nodata COG costs a few KB.
Parts are compiled as Ray tasks when Ray is initialised, else one after the
other in this process.

Files over 4 GB are BigTIFF (``BIGTIFF=IF_SAFER``).

Why GDAL's COG driver (``rasterio.shutil.copy(driver="COG")``) and not
rio-cogeo's ``cog_translate``: on a 10,240 x 10,240 confidence array (2 CPUs,
ZSTD, same overviews) the driver took 3.8 s, ``cog_translate`` 5.6 s.
``bench/compile.py`` compares the whole compile with the driver alone.

Why DEFLATE by default: on the benchmark's 10,240 x 10,240 map (2 CPUs) our
compile took 6.2 s for 49.0 MB with DEFLATE (level 6) against 7.3 s for
50.0 MB with ZSTD (level 9): faster and smaller, and readable by every GDAL.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Literal

import numpy as np
import rasterio
import rasterio.shutil
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp
from rasterio.windows import Window

from cluster.errors import ClusterError
from cluster.maps.overviews import halve
from cluster.maps.vrt import BLOCK, Part, write_vrt
from cluster.predict import quality
from cluster.predict.store import NODATA, RunAttrs, StoreLayout, TileStore
from cluster.storage import objstore

__all__ = [
    "ARRAYS",
    "BLOCK",
    "Part",
    "compile_part",
    "compile_store",
    "overview_count",
    "plan_parts",
]

ARRAYS: tuple[Literal["class", "confidence"], ...] = ("class", "confidence")
QUALITY = quality.QUALITY  # beside ARRAYS where the store has it
_RESAMPLING = {"class": "MODE", "confidence": "AVERAGE", QUALITY: "AVERAGE"}
_COMPRESSIONS = ("ZSTD", "DEFLATE", "LZW", "NONE")
# Directory listing on (a cloud setting may turn it off): GDAL finds src.tif's .ovr by it.
_GDAL_ENV = {
    "GDAL_CACHEMAX": 256,
    "GDAL_NUM_THREADS": "ALL_CPUS",
    "GDAL_DISABLE_READDIR_ON_OPEN": "FALSE",
}
_SAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def plan_parts(layout: StoreLayout, name: str, max_part_px: int) -> list[Part]:
    """Split the store into parts of at most ``max_part_px`` a side, in whole tiles.

    One part (named ``name``) when the store fits; else ``<name>_r<i>_c<j>``.
    """
    ts = layout.grid.tile_size
    if isinstance(max_part_px, bool) or not isinstance(max_part_px, int) or max_part_px < ts:
        raise ClusterError(
            f"max_part_px must be an integer >= the tile size ({ts} px), got {max_part_px!r}"
        )
    per = max_part_px // ts
    rows = [(r, min(per, layout.rows - r)) for r in range(0, layout.rows, per)]
    cols = [(c, min(per, layout.cols - c)) for c in range(0, layout.cols, per)]
    if len(rows) == 1 and len(cols) == 1:
        return [Part(name, 0, 0, layout.rows * ts, layout.cols * ts)]
    digits = len(str(max(len(rows), len(cols)) - 1))
    return [
        Part(f"{name}_r{i:0{digits}d}_c{j:0{digits}d}", r * ts, c * ts, nr * ts, nc * ts)
        for i, (r, nr) in enumerate(rows)
        for j, (c, nc) in enumerate(cols)
    ]


def _colormap(attrs: RunAttrs) -> dict[int, tuple[int, int, int, int]]:
    cmap = {v: (0, 0, 0, 0) for v in range(256)}
    for value, color in enumerate(attrs.class_colors):
        cmap[value] = (int(color[1:3], 16), int(color[3:5], 16), int(color[5:7], 16), 255)
    return cmap


def _tags(attrs: RunAttrs, array: str) -> dict[str, str]:
    tags = {
        "RUN_ID": attrs.run_id,
        "CHECKPOINT_SHA256": attrs.checkpoint_sha256,
        "SOFTWARE_VERSION": attrs.software_version,
        "NODATA": str(NODATA),
    }
    if array == "class":
        tags["CLASS_NAMES"] = json.dumps(list(attrs.class_names))
        tags["CLASS_COLORS"] = json.dumps(list(attrs.class_colors))
        tags.update({f"CLASS_{v}": n for v, n in enumerate(attrs.class_names)})
    elif array == QUALITY:
        tags["QUALITY_BANDS"] = json.dumps(list(quality.BANDS))
        tags["QUALITY"] = quality.DESCRIPTION
    else:
        tags["CONFIDENCE_SCALE"] = "winning-class probability scaled to 0..254"
    return tags


def class_tags(tags: dict[str, str], path: Path) -> tuple[list[str], list[str]]:
    """Class names and colours from the tags ``_tags`` writes on a class COG."""
    try:
        names, colors = json.loads(tags["CLASS_NAMES"]), json.loads(tags["CLASS_COLORS"])
    except (KeyError, ValueError):
        raise ClusterError(
            f"{path} lacks the CLASS_NAMES/CLASS_COLORS tags of a statemap class COG"
        ) from None
    if len(names) != len(colors):
        raise ClusterError(f"{path}: {len(names)} CLASS_NAMES but {len(colors)} CLASS_COLORS")
    return names, colors


def descriptions(attrs: RunAttrs, array: str) -> list[str]:
    """Each band's description, as GDAL shows it (``gdalinfo``, QGIS's band names)."""
    if array == "class":
        names = ", ".join(f"{v}={n}" for v, n in enumerate(attrs.class_names))
        return [f"class ({names}; {NODATA}=nodata)"]
    if array == QUALITY:
        return [
            f"clear observations used, summed over sub-periods (0..{quality.CLEAR_MAX}, "
            f"saturating; {NODATA}=nodata)",
            f"filled from a neighbouring sub-period (1) or not (0); {NODATA}=nodata",
        ]
    return [f"confidence (winning-class probability, 0..254; {NODATA}=nodata)"]


def _band_rows(width: int, ts: int, levels: int) -> int:
    """Rows per streamed read, about 32 MB: a multiple of 512 (whole GeoTIFF block rows)
    and of ``2**levels`` (a band halves into whole rows of every overview level), and of
    the tile size (whole zarr chunks, each decoded once) unless that unit alone exceeds
    32 MB (an odd tile size: lcm(512, 300) = 38,400 rows); never under one unit."""
    budget, unit = 32 << 20, math.lcm(BLOCK, 2**levels)
    if math.lcm(unit, ts) * width <= budget:
        unit = math.lcm(unit, ts)
    return unit * max(1, budget // max(1, width * unit))


def compile_part(
    store_uri: str, part: Part, array: str, out_path: str | Path, compression: str = "DEFLATE"
) -> Path:
    """Write one array of one part as a COG at ``out_path``; returns the path.

    The COG appears under its final name only when complete (written to a
    temp name in the same folder, then renamed).
    """
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(dir=out_path.parent, prefix=".compile-") as tmp,
        rasterio.Env(**_GDAL_ENV),
    ):
        src_path, cog_tmp = Path(tmp) / "src.tif", Path(tmp) / out_path.name
        _write_source(TileStore.open(store_uri), part, array, src_path)
        rasterio.shutil.copy(
            src_path,
            cog_tmp,
            driver="COG",
            COMPRESS=compression,
            LEVEL=_level(compression),
            BLOCKSIZE=BLOCK,
            RESAMPLING=_RESAMPLING[array],
            OVERVIEWS="AUTO",
            OVERVIEW_COUNT=overview_count(part.width, part.height),
            OVERVIEW_COMPRESS=compression,
            BIGTIFF="IF_SAFER",
            NUM_THREADS="ALL_CPUS",
            PREDICTOR="NO",
        )
        os.replace(cog_tmp, out_path)
    return out_path


def _write_source(store: TileStore, part: Part, array: str, path: Path) -> None:
    """The part as an uncompressed tiled GeoTIFF at ``path``, with its metadata, and
    its overview levels as ``path.ovr``, ``path.ovr.ovr``, ... (GDAL reads an .ovr's
    own .ovr as the next level), which the COG driver then copies as they are.

    Streamed in bands of whole block rows; the next band is read (zarr decodes
    with the GIL mostly released) while this one is written and halved into
    each level (``cluster.maps.overviews``, GDAL's MODE/AVERAGE pixel for pixel but
    several times faster than GDAL building them into a compressed temp file
    of its own).
    """
    layout, attrs, data = store.layout, store.attrs, store.array(array)
    t = layout.transform
    profile = {
        "driver": "GTiff",
        "width": part.width,
        "height": part.height,
        "count": data.shape[0] if data.ndim == 3 else 1,
        "dtype": "uint8",
        "nodata": NODATA,
        "crs": CRS.from_user_input(layout.grid.crs),
        "transform": t @ t.translation(part.col, part.row),
        "tiled": True,
        "blockxsize": BLOCK,
        "blockysize": BLOCK,
        "compress": "NONE",
        "bigtiff": "YES" if part.width * part.height > 3_500_000_000 else "IF_SAFER",
        "sparse_ok": True,
    }
    levels = overview_count(part.width, part.height)
    step = _band_rows(part.width, layout.grid.tile_size, levels)
    rows = range(0, part.height, step)

    def read(r: int) -> np.ndarray:  # (bands, rows, cols)
        rows = slice(part.row + r, part.row + min(r + step, part.height))
        block = np.asarray(data[..., rows, part.col : part.col + part.width])
        return block if block.ndim == 3 else block[None]

    def level_profile(k: int) -> dict[str, object]:  # gdaladdo's sizes: ceil(size / 2**k)
        f = 2**k
        size = {"width": -(-part.width // f), "height": -(-part.height // f)}
        return {**profile, **size, "transform": profile["transform"] @ Affine.scale(f)}

    with ExitStack() as stack:
        dst = stack.enter_context(rasterio.open(path, "w", **profile))
        ovrs = [
            stack.enter_context(rasterio.open(f"{path}{'.ovr' * k}", "w", **level_profile(k)))
            for k in range(1, levels + 1)
        ]
        reader = stack.enter_context(ThreadPoolExecutor(1))  # reads the next band meanwhile
        ahead = reader.submit(read, rows[0])
        for i, r in enumerate(rows):
            band = ahead.result()
            if i + 1 < len(rows):
                ahead = reader.submit(read, rows[i + 1])
            if not (band != NODATA).any():  # SPARSE_OK: all-nodata blocks stay unwritten
                continue
            for k, level in enumerate(band, start=1):
                row = r
                dst.write(level, k, window=Window(0, row, *level.shape[::-1]))
                for ovr in ovrs:  # each level from the one above, as GDAL does
                    level, row = halve(level, _RESAMPLING[array], NODATA), row // 2
                    ovr.write(level, k, window=Window(0, row, *level.shape[::-1]))
        dst.update_tags(**_tags(attrs, array))
        for k, text in enumerate(descriptions(attrs, array), start=1):
            dst.set_band_description(k, text)
        if array == "class":
            dst.write_colormap(1, _colormap(attrs))
            dst.colorinterp = [ColorInterp.palette]


def overview_count(width: int, height: int) -> int:
    """Overview levels (factors 2, 4, ...) until the smallest is under 512 px a side."""
    n, size = 0, max(width, height)
    while size >= BLOCK:
        n, size = n + 1, math.ceil(size / 2)
    return n


def _level(compression: str) -> int | None:
    return {"ZSTD": 9, "DEFLATE": 6}.get(compression)


def _run_ray(jobs: list[tuple[str, Part, str, Path, str]]) -> list[Path]:
    import ray

    remote = ray.remote(num_cpus=1)(compile_part)
    return [Path(p) for p in ray.get([remote.remote(*job) for job in jobs])]


def compile_store(
    store_uri: str,
    out_dir: str | Path,
    *,
    compression: str = "DEFLATE",
    max_part_px: int = 40_000,
    name: str | None = None,
    use_ray: bool | None = None,
) -> list[Path]:
    """Compile the store at ``store_uri`` (local or s3://) into COGs under ``out_dir``.

    Returns every file written: ``<name>_class.tif``, ``<name>_confidence.tif`` and
    ``<name>_quality.tif`` (not for a store made before the quality layer) for a
    store that fits in one part; else each part's COGs followed by a VRT per array
    (``<name>_class.vrt``, ...). ``name`` defaults to the
    run id. ``use_ray`` defaults to "if Ray is initialised and there are several
    parts".
    """
    compression = str(compression).upper()
    if compression not in _COMPRESSIONS:
        raise ClusterError(f"compression must be one of {_COMPRESSIONS}, got {compression!r}")
    if not objstore.is_s3(store_uri) and not Path(store_uri).exists():
        raise ClusterError(f"no statemap store at {store_uri}: the path does not exist")
    store = TileStore.open(store_uri)
    layout, attrs = store.layout, store.attrs
    name = _SAFE_NAME.sub("_", name or attrs.run_id).strip("_") or "statemap"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    parts = plan_parts(layout, name, max_part_px)
    arrays = (*ARRAYS, QUALITY) if store.has_quality else ARRAYS
    jobs = [(store_uri, p, a, out / p.filename(a), compression) for p in parts for a in arrays]
    if use_ray is None:
        use_ray = len(jobs) > 2 and _ray_ready()
    paths = _run_ray(jobs) if use_ray else [compile_part(*job) for job in jobs]
    if len(parts) > 1:
        paths += [
            write_vrt(out / f"{name}_{a}.vrt", layout, a, parts, _tags(attrs, a),
                      descriptions(attrs, a), _colormap(attrs) if a == "class" else None)
            for a in arrays
        ]  # fmt: skip
    return paths


def _ray_ready() -> bool:
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a dependency
        return False
    return ray.is_initialized()
