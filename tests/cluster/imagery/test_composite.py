"""Composites against numpy on the whole stack in memory, and stacks over sub-periods."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine

from cluster.errors import ClusterError
from cluster.imagery.blocks import DEFAULT_BYTES
from cluster.imagery.composite import composite_window, read_stack
from cluster.imagery.stacitem import BandSource, ItemRef, MaskSource
from cluster.imagery.temporal import SubPeriod, TimeRecipe

CRS = "EPSG:25832"
ORIGIN = (400_000.0, 5_560_000.0)
RES = 10.0
SCALE, OFFSET = 0.0001, -0.1
INVALID = (0, 3, 8, 9)  # SCL: no data, shadow, clouds


def _write(path: Path, data: np.ndarray, col0: int = 0, row0: int = 0) -> None:
    transform = Affine(RES, 0, ORIGIN[0] + col0 * RES, 0, -RES, ORIGIN[1] - row0 * RES)
    profile = {"driver": "GTiff", "width": data.shape[2], "height": data.shape[1],
               "count": data.shape[0], "dtype": data.dtype.name, "crs": CRS,
               "transform": transform, "nodata": 0, "tiled": True, "blockxsize": 256,
               "blockysize": 256, "compress": "deflate", "interleave": "band"}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def make_items(
    root: Path,
    n: int,
    bands: int,
    size: int,
    seed: int = 0,
    *,
    months: list[int] | None = None,
    reference: bool = True,
) -> tuple[list[ItemRef], np.ndarray]:
    """``n`` dated items of ``bands`` bands (one multiband file each, per-band nodata holes)
    with SCL masks, some covering only part of the window; and the reference stack
    (n, bands, size, size) of reflectance with NaN where a value is unusable (if asked:
    40 dates of 10 bands would be 530 MB)."""
    rng = np.random.default_rng(seed)
    ref = np.full((n, bands, size, size) if reference else (0,), np.nan, dtype=np.float32)
    for k in range(n):
        r0, c0 = (int(v) for v in rng.integers(0, size // 3, 2)) if k % 3 == 2 else (0, 0)
        h, w = size - r0, size - c0
        dn = rng.integers(500, 6000, (bands, h, w)).astype(np.uint16)
        holes = rng.random((bands, h, w)) < 0.03  # a band's own nodata
        dn[holes] = 0
        scl = np.where(rng.random((1, h, w)) < 0.45, rng.choice(INVALID), 4).astype(np.uint8)
        _write(root / f"i{k}.tif", dn, c0, r0)
        _write(root / f"i{k}_scl.tif", scl, c0, r0)
        values = dn.astype(np.float32) * np.float32(SCALE) + np.float32(OFFSET)
        values[(dn == 0) | np.isin(scl, INVALID)] = np.nan
        if reference:
            ref[k, :, r0:, c0:] = values
    return item_refs(root, n, bands, months), ref


def item_refs(root: Path, n: int, bands: int, months: list[int] | None = None) -> list[ItemRef]:
    """The records of the items ``make_items`` wrote."""
    items = []
    for k in range(n):
        month = months[k] if months else 1 + k % 12
        src = [BandSource(str(root / f"i{k}.tif"), b + 1, SCALE, OFFSET, asset=f"b{b}")
               for b in range(bands)]  # fmt: skip
        items.append(ItemRef(
            id=f"item{k}", collection="c", datetime=f"2023-{month:02d}-{10 + k % 15}T10:30:00Z",
            cloud_cover=None, footprint_wkb=shapely.box(0, 0, 1, 1).wkb, bands=tuple(src),
            mask=MaskSource(str(root / f"i{k}_scl.tif"), INVALID, "scl"),
        ))  # fmt: skip
    return items


def window(size: int) -> tuple[tuple[float, float, float, float], tuple[int, int]]:
    x0, y0 = ORIGIN
    return (x0, y0 - size * RES, x0 + size * RES, y0), (size, size)


def reference(ref: np.ndarray, recipe: TimeRecipe) -> np.ndarray:
    count = np.isfinite(ref).sum(axis=0)
    with np.errstate(invalid="ignore"), pytest.warns(RuntimeWarning) if (count == 0).any() else \
            _nothing():  # fmt: skip
        if recipe.compositing == "mean":
            out = np.nanmean(ref, axis=0)
        else:
            q = 50.0 if recipe.compositing == "median" else recipe.percentile
            out = np.nanpercentile(ref, q, axis=0)
    out[count < recipe.min_clear] = np.nan
    return out


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *args: object) -> None:
        return None


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    return make_items(tmp_path_factory.mktemp("composite"), n=7, bands=3, size=96)


@pytest.mark.parametrize(
    "recipe",
    [
        TimeRecipe("median"),
        TimeRecipe("mean"),
        TimeRecipe("percentile", percentile=25),
        TimeRecipe("percentile", percentile=90, min_clear=3),
        TimeRecipe("median", min_clear=4),
    ],
    ids=["median", "mean", "p25", "p90-min3", "median-min4"],
)
def test_composites_equal_numpy_on_the_whole_stack(stack, recipe):
    items, ref = stack
    bounds, shape = window(96)
    out = composite_window(items, bounds, shape, CRS, recipe)
    expected = reference(ref, recipe)
    assert out.shape == expected.shape == (3, 96, 96)
    # masked, nodata and too-few-observation pixels: NaN in both, pixel for pixel
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    assert np.isnan(out).sum() > 20  # the cases are really exercised
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6, equal_nan=True)


def clear_count(ref: np.ndarray, min_clear: int = 1) -> np.ndarray:
    """numpy's count of the clear observations behind every band of a pixel of the
    reference stack: the least over bands, 0 where some band has too few."""
    per_band = np.isfinite(ref).sum(axis=0)
    return np.where((per_band >= min_clear).all(axis=0), per_band.min(axis=0), 0)


@pytest.mark.parametrize(
    "recipe",
    [TimeRecipe("median"), TimeRecipe("mean"), TimeRecipe("percentile", percentile=90, min_clear=3),
     TimeRecipe()],
    ids=["median", "mean", "p90-min3", "first"],
)  # fmt: skip
def test_clear_observations_counted_as_numpy_counts_them(stack, recipe):
    items, ref = stack
    bounds, shape = window(96)
    count = np.full(shape, -7, dtype=np.int32)
    out = composite_window(items, bounds, shape, CRS, recipe, count=count)
    if recipe.compositing == "first":  # the mosaic: one item per filled pixel
        expected = np.isfinite(ref).all(axis=1).any(axis=0).astype(np.int32)
    else:
        expected = clear_count(ref, recipe.min_clear)
    np.testing.assert_array_equal(count, expected)
    np.testing.assert_array_equal(count == 0, np.isnan(out).any(axis=0))
    assert len(np.unique(count)) > 3 or recipe.compositing == "first"  # really varies


def test_first_is_the_mosaic_and_sources_name_items(stack):
    items, ref = stack
    bounds, shape = window(96)
    sources = np.empty(shape, dtype=np.int16)
    out = composite_window(items, bounds, shape, CRS, TimeRecipe(), sources=sources)
    # per pixel the first item whose mask is clear and all of whose bands have values
    usable = np.isfinite(ref).all(axis=1)
    first = np.where(usable.any(axis=0), usable.argmax(axis=0), -1)
    np.testing.assert_array_equal(sources, first)
    rows, cols = np.nonzero(first >= 0)
    np.testing.assert_array_equal(out[:, rows, cols], ref[first[rows, cols], :, rows, cols].T)


def test_stack_layers_by_subperiod_and_fill(tmp_path):
    months = [3, 4, 7, 7, 8, 10, 11]  # spring 2, summer 3, autumn 2
    items, ref = make_items(tmp_path, n=7, bands=2, size=64, seed=1, months=months)
    bounds, shape = window(64)
    periods = (SubPeriod("spring", "03-01", "05-31"), SubPeriod("summer", "06-01", "08-31"),
               SubPeriod("autumn", "09-01", "11-30"))  # fmt: skip
    recipe = TimeRecipe("median", periods=periods)
    got = read_stack(items, bounds, shape, CRS, recipe, 2023, n_bands=2)
    assert got.data.shape == (6, 64, 64)
    assert [len(x) for x in got.layer_items] == [2, 3, 2]
    parts = [ref[:2], ref[2:5], ref[5:]]
    for p, part in enumerate(parts):
        np.testing.assert_allclose(got.data[2 * p : 2 * p + 2], reference(part, recipe),
                                   atol=1e-6, equal_nan=True)  # fmt: skip
    missing = np.stack([np.isnan(got.data[2 * p : 2 * p + 2]).any(axis=0) for p in range(3)])
    assert got.gaps.sum() > 100
    np.testing.assert_array_equal(got.gaps, missing.any(axis=0) & ~missing.all(axis=0))
    assert not got.filled.any()
    own = [clear_count(part) for part in parts]  # each sub-period's observations, by numpy
    np.testing.assert_array_equal(got.clear, sum(own))

    filled = read_stack(items, bounds, shape, CRS, TimeRecipe("median", periods=periods,
                        fill="neighbour"), 2023, n_bands=2)  # fmt: skip
    np.testing.assert_array_equal(filled.filled, got.gaps)
    assert not np.isnan(filled.data[:, got.gaps]).any()
    # autumn gaps come from summer (nearest), spring ones from summer too
    autumn_gap = missing[2] & ~missing[1]
    np.testing.assert_array_equal(filled.data[4:6, autumn_gap], got.data[2:4, autumn_gap])
    # where nothing was missing the layers are untouched
    keep = ~got.gaps
    np.testing.assert_array_equal(filled.data[:, keep], got.data[:, keep])
    # a filled layer adds no observations of its own: the count is the same as unfilled
    np.testing.assert_array_equal(filled.clear, got.clear)

    # the same stack two years on, placed by the run's year: no item falls in it
    later = read_stack(items, bounds, shape, CRS, recipe, 2025, n_bands=2)
    assert np.isnan(later.data).all() and not later.gaps.any()


def test_recipe_checks_and_round_trip():
    periods = (SubPeriod("winter", "12-01", "02-28"), SubPeriod("y", "2023-06-01", "2023-08-31"))
    recipe = TimeRecipe("percentile", percentile=75, min_clear=2, periods=periods)
    assert TimeRecipe.from_dict(json.loads(json.dumps(recipe.to_dict()))) == recipe
    assert TimeRecipe.from_dict(None) == TimeRecipe()
    start, end = periods[0].window(2023)
    assert (start.year, start.month, end.year, end.month, end.day) == (2023, 12, 2024, 2, 29)
    assert recipe.channels(["red", "nir"])[:3] == ["winter:red", "winter:nir", "y:red"]
    with pytest.raises(ClusterError, match="compositing 'max'"):
        TimeRecipe("max")
    with pytest.raises(ClusterError, match="not a date"):
        TimeRecipe("median", periods=(SubPeriod("a", "13-01", "02-01"),))
    with pytest.raises(ClusterError, match="distinct"):
        TimeRecipe("median", periods=(SubPeriod("a", "01-01", "02-01"),) * 2)
    with pytest.raises(ClusterError, match="no period start"):
        TimeRecipe("median", periods=periods).windows(None)
    with pytest.raises(ClusterError, match="outside the period"):
        recipe.check_within(2023, "2023-03-01", "2023-10-31")
    recipe.check_within(2023, "2023-01-01", "2024-02-28")


def test_peak_memory_of_40_dates_of_a_512px_tile_of_10_bands(tmp_path):
    """Measured in a fresh process: its peak resident memory, imports included."""
    size = 512 + 2 * 32
    make_items(tmp_path, n=40, bands=10, size=size, seed=2, reference=False)
    code = textwrap.dedent(f"""
        import json, resource, sys, time, tracemalloc
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_composite import item_refs, window, CRS
        from cluster.imagery.composite import composite_window
        from cluster.imagery.temporal import TimeRecipe
        import pathlib
        items = item_refs(pathlib.Path({str(tmp_path)!r}), 40, 10)
        bounds, shape = window({size})
        tracemalloc.start()
        t = time.perf_counter()
        out = composite_window(items, bounds, shape, CRS, TimeRecipe("median"))
        seconds = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1]
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        print(json.dumps({{"numpy_peak_mb": peak / 1e6, "max_rss_mb": rss / 1e6,
                          "seconds": seconds, "nan": int((out != out).sum())}}))
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).parents[3])  # fmt: skip
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"40 dates x 10 bands, {size} px: {figures}")
    assert figures["max_rss_mb"] < 1000
    # One band of all dates, sorted, and the output; and the decoded blocks the process
    # keeps for the next tiles (cluster.imagery.blocks, bounded).
    assert figures["numpy_peak_mb"] < 300 + DEFAULT_BYTES / 1e6
