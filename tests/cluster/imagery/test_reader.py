"""The reader: a tile's window warped, masked and mosaicked; and GDAL's options."""

import logging
import os
import pickle
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine
from rasterio.warp import Resampling, reproject, transform_bounds

from cluster.errors import ClusterError
from cluster.imagery.catalog import Catalog
from cluster.imagery.reader import AssetReadError, close_datasets, read_window
from cluster.sample.catalog import ORTHO_COLLECTION, S2_COLLECTION, write_region
from cluster.sample.imagery import NOISE_SD, ORTHO_SCALE
from cluster.sample.scene import BANDS, SampleSpec, synthesize
from cluster.storage import gdalenv
from cluster.tiles.grid import Grid, Tile

SPEC = SampleSpec(width=256, height=256, stand_px=64)
SHAPE = (SPEC.height, SPEC.width)


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    return write_region(tmp_path_factory.mktemp("reader"), SPEC)


@pytest.fixture(scope="module")
def truth() -> np.ndarray:
    return synthesize(SPEC).reflectance


@pytest.fixture(scope="module")
def s2(region) -> Catalog:
    return Catalog.open(str(region.catalog), BANDS, SPEC.crs, collections=[S2_COLLECTION])


@pytest.fixture(scope="module")
def ortho(region) -> Catalog:
    return Catalog.open(str(region.catalog), BANDS, SPEC.crs, collections=[ORTHO_COLLECTION])


@pytest.fixture(scope="module")
def mosaic(s2) -> np.ndarray:
    return read_window(s2.items_for(SPEC.bounds), SPEC.bounds, SHAPE, SPEC.crs)


def assert_close_to_truth(out, truth, *, max_sd=6.0, spread_sd=1.2):
    both = ~np.isnan(out) & ~np.isnan(truth)
    diff = out[both] - truth[both]
    assert np.abs(diff).max() < max_sd * NOISE_SD
    assert abs(diff.mean()) < 0.2 * NOISE_SD and diff.std() < spread_sd * NOISE_SD


def scl_on_region(item: pystac.Item) -> np.ndarray:
    """The item's SCL on the region's 10 m grid (255 outside it); the sibling-CRS item
    uses the same numbers, so proj:transform places it directly."""
    asset = item.assets["scl"]
    _, _, x0, _, _, y0 = asset.extra_fields["proj:transform"]
    with rasterio.open(asset.get_absolute_href()) as src:
        scl = np.repeat(np.repeat(src.read(1), 2, axis=0), 2, axis=1)
    out = np.full(SHAPE, 255, np.uint8)
    row, col = int((SPEC.origin[1] - y0) / 10), int((x0 - SPEC.origin[0]) / 10)
    part = scl[: SHAPE[0] - row, : SHAPE[1] - col]
    out[row : row + part.shape[0], col : col + part.shape[1]] = part
    return out


def test_s2_mosaic_is_the_truth(mosaic, truth):
    assert mosaic.shape == (4, *SHAPE) and mosaic.dtype == np.float32
    assert_close_to_truth(mosaic, truth)
    # All bands valid or none; NaN only where the truth is (the unmapped corner) or on
    # the 20 m SCL blocks straddling its edge.
    nan = np.isnan(mosaic)
    assert (nan == nan[0]).all()
    assert nan[0][np.isnan(truth[0])].all()
    assert np.count_nonzero(nan[0] & ~np.isnan(truth[0])) <= 2 * SPEC.width // 8


def test_tiles_with_halo_stitch_into_the_whole_read(s2, mosaic):
    """Mosaicking decides per pixel, so windows of any size agree bit for bit."""
    grid = Grid(SPEC.crs, SPEC.origin, SPEC.resolution, tile_size=64, halo=16)
    stitched = np.full_like(mosaic, -1.0)
    for row in range(4):
        for col in range(4):
            tile = Tile(row, col)
            bounds = grid.tile_bounds(tile, halo=True)
            out = read_window(s2.items_for(bounds), bounds, grid.tile_shape(True), SPEC.crs)
            stitched[:, row * 64 : row * 64 + 64, col * 64 : col * 64 + 64] = out[:, 16:-16, 16:-16]
    np.testing.assert_array_equal(stitched, mosaic)


def test_clouds_of_the_first_item_come_from_the_next(region, s2, truth):
    stac = {
        i.id: i for i in pystac.Catalog.from_file(str(region.catalog)).get_items(recursive=True)
    }
    cloudy = max(s2.items, key=lambda r: r.cloud_cover)
    others = [r for r in s2.items if r is not cloudy]
    scl = scl_on_region(stac[cloudy.id])
    masked = np.isin(scl, (3, 8, 9))  # shadows and clouds
    assert masked.sum() > 100
    alone = read_window([cloudy], SPEC.bounds, SHAPE, SPEC.crs)
    assert np.isnan(alone[:, masked]).all()  # the mask is applied
    assert not np.isnan(alone[:, np.isin(scl, (4, 5, 6))]).any()
    assert cloudy.bands[0].href.count("SAMPLE1")  # the scene labelled EPSG:32632 ...
    assert_close_to_truth(alone, truth)  # ... lands on the EPSG:25832 grid unshifted
    out = read_window([cloudy, *others], SPEC.bounds, SHAPE, SPEC.crs)
    filled = masked & ~np.isnan(truth[0])
    assert not np.isnan(out[:, filled]).any()
    assert np.abs(out[:, filled] - truth[:, filled]).max() < 6 * NOISE_SD  # not cloud-bright
    clear = np.isin(scl, (4, 5, 6))
    np.testing.assert_array_equal(out[:, clear], alone[:, clear])  # first item wins


def test_pixels_no_item_covers_are_nan_and_halo_is_boundless(s2, mosaic):
    x0, y0 = SPEC.origin
    pad = 40  # pixels beyond the region on the west and north
    bounds = (x0 - pad * 10, y0 - 128 * 10, x0 + 128 * 10, y0 + pad * 10)
    out = read_window(s2.items_for(bounds), bounds, (128 + pad, 128 + pad), SPEC.crs)
    assert np.isnan(out[:, :pad]).all() and np.isnan(out[:, :, :pad]).all()
    np.testing.assert_array_equal(out[:, pad:, pad:], mosaic[:, :128, :128])
    far = (0.0, 0.0, 1280.0, 1280.0)
    assert np.isnan(read_window(s2.items, far, (128, 128), SPEC.crs)).all()
    empty = read_window([], far, (8, 8), SPEC.crs, n_bands=4)
    assert empty.shape == (4, 8, 8) and np.isnan(empty).all()


def test_orthophotos_read_at_10m_average_to_the_truth(ortho, truth):
    out = read_window(ortho.items_for(SPEC.bounds), SPEC.bounds, SHAPE, SPEC.crs)
    # Four 5 m pixels averaged: a quarter of the noise variance, plus DN rounding.
    assert_close_to_truth(out, truth, max_sd=4.0, spread_sd=0.7)
    np.testing.assert_array_equal(np.isnan(out[0]), np.isnan(truth[0]))


def test_orthophotos_at_native_and_coarser_resolution(region, ortho, truth):
    first = next(r for r in ortho.items if r.id == "ortho_00")
    with rasterio.open(first.bands[0].href) as src:
        dn, bounds = src.read(), src.bounds
    native = read_window([first], bounds, dn.shape[1:], SPEC.crs)
    expected = np.where(dn == 0, np.nan, dn * np.float32(ORTHO_SCALE)).astype(np.float32)
    np.testing.assert_array_equal(native, expected[[2, 1, 0, 3]])  # file order: r, g, b, nir
    coarse = read_window(ortho.items, SPEC.bounds, (128, 128), SPEC.crs)  # 20 m: 4x4 blocks
    blocks = truth.reshape(4, 128, 2, 128, 2).mean(axis=(2, 4))
    diff = np.abs(coarse - blocks)[~np.isnan(coarse) & ~np.isnan(blocks)]
    # Pixels cut by an orthophoto's edge average the part it covers (as GDAL's
    # "average" does), which differs a little from the whole block's mean.
    assert np.quantile(diff, 0.99) < 2 * NOISE_SD and np.median(diff) < 0.5 * NOISE_SD


def test_other_crs_goes_through_the_warper(region, truth):
    laea = Catalog.open(str(region.catalog), BANDS, "EPSG:3035", collections=[S2_COLLECTION])
    west, south, *_ = transform_bounds(SPEC.crs, "EPSG:3035", *SPEC.bounds)
    x, y = round(west, -1) + 300, round(south, -1) + 300
    bounds = (x, y, x + 2000, y + 2000)
    out = read_window(laea.items_for(bounds), bounds, (200, 200), "EPSG:3035")
    ref = np.full_like(out, np.nan)
    reproject(
        truth, ref, src_transform=SPEC.transform, src_crs=SPEC.crs, src_nodata=np.nan,
        dst_transform=Affine(10, 0, x, 0, -10, y + 2000), dst_crs="EPSG:3035", dst_nodata=np.nan,
        resampling=Resampling.bilinear,
    )  # fmt: skip
    assert np.isnan(out).mean() < 0.01
    diff = np.abs(out - ref)[~np.isnan(out) & ~np.isnan(ref)]
    # Bilinear near cloud edges may borrow a bright neighbour; nearly all pixels agree.
    assert np.median(diff) < NOISE_SD and np.quantile(diff, 0.99) < 6 * NOISE_SD


def test_20m_bands_are_upsampled(region):
    cat = Catalog.open(
        str(region.catalog), ["nir", "nir08", "swir16"], SPEC.crs, collections=[S2_COLLECTION]
    )
    out = read_window(cat.items_for(SPEC.bounds), SPEC.bounds, SHAPE, SPEC.crs)
    valid = ~np.isnan(out).any(axis=0)
    assert valid.mean() > 0.95
    ratio = np.median(out[1][valid] / out[0][valid])
    assert 0.85 < ratio < 1.05  # B8A simulated as 0.97 x B08, then averaged to 20 m


@pytest.mark.parametrize("damage", ["delete", "truncate", "garbage"])
def test_broken_assets_raise_naming_item_asset_and_href(region, tmp_path, damage):
    root = Path(shutil.copytree(region.root, tmp_path / "copy"))
    cat = Catalog.open(str(root / "catalog.json"), BANDS, SPEC.crs, collections=[S2_COLLECTION])
    item = cat.items[0]
    href = Path(item.bands[2].href)
    read_window([item], SPEC.bounds, SHAPE, SPEC.crs)  # opened and cached: must not mask damage
    original = href.read_bytes()
    if damage == "delete":
        href.unlink()
    elif damage == "truncate":
        href.write_bytes(original[: len(original) // 2])
    else:
        href.write_bytes(b"not a tiff" * 100)
    with pytest.raises(AssetReadError) as err:
        read_window([item], SPEC.bounds, SHAPE, SPEC.crs)
    assert isinstance(err.value, ClusterError) and isinstance(err.value, ValueError)
    assert (err.value.item_id, err.value.asset, err.value.href) == (item.id, "red", str(href))
    for part in (item.id, "'red'", str(href), "rerun"):
        assert part in str(err.value)
    again = pickle.loads(pickle.dumps(err.value))  # Ray ships it between processes
    assert str(again) == str(err.value) and again.href == str(href)
    href.write_bytes(original)  # repaired: the next read succeeds
    assert not np.isnan(read_window([item], SPEC.bounds, SHAPE, SPEC.crs)).all()


def test_bad_arguments(s2):
    items = s2.items_for(SPEC.bounds)
    with pytest.raises(ClusterError, match="n_bands is required"):
        read_window([], SPEC.bounds, SHAPE, SPEC.crs)
    with pytest.raises(ClusterError, match="resampling 'cubic_spline_x'"):
        read_window(items, SPEC.bounds, SHAPE, SPEC.crs, resampling="cubic_spline_x")
    with pytest.raises(ClusterError, match="is empty"):
        read_window(items, SPEC.bounds, (0, 10), SPEC.crs)
    with pytest.raises(ClusterError, match="carry"):
        read_window(items, SPEC.bounds, SHAPE, SPEC.crs, n_bands=3)


def test_threads_read_alike(s2):
    grid = Grid(SPEC.crs, SPEC.origin, SPEC.resolution, tile_size=64, halo=16)
    tiles = [Tile(r, c) for r in range(4) for c in range(4)]

    def read(tile):
        bounds = grid.tile_bounds(tile, halo=True)
        return read_window(s2.items_for(bounds), bounds, grid.tile_shape(True), SPEC.crs)

    serial = [read(t) for t in tiles]
    with ThreadPoolExecutor(4) as pool:
        parallel = list(pool.map(read, tiles))
        pool.submit(close_datasets).result()
    for a, b in zip(serial, parallel, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("collection", [S2_COLLECTION, ORTHO_COLLECTION])
def test_read_time_of_a_haloed_tile(region, collection):
    cat = Catalog.open(str(region.catalog), BANDS, SPEC.crs, collections=[collection])
    x0, y0 = SPEC.origin
    bounds = (x0 - 320, y0 - 2880, x0 + 2880, y0 + 320)  # 320 px, reaching past the region
    items = cat.items_for(bounds)
    read_window(items, bounds, (320, 320), SPEC.crs)  # warm: datasets opened
    start = time.perf_counter()
    for _ in range(5):
        read_window(items, bounds, (320, 320), SPEC.crs)
    ms = (time.perf_counter() - start) / 5 * 1000
    print(f"\nread 320x320x4 from {len(items)} {collection} items: {ms:.1f} ms")


# --- GDAL options -------------------------------------------------------------------


@pytest.fixture
def clean_env(monkeypatch):
    """Every variable configure_gdal may touch, unset here and restored afterwards."""
    names = [*gdalenv.DEFAULTS, "AWS_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]
    for name in [*names, "AWS_HTTPS", "AWS_VIRTUAL_HOSTING", "AWS_SECRET_ACCESS_KEY"]:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_gdal_defaults_fill_only_what_is_unset(clean_env):
    clean_env.setenv("GDAL_CACHEMAX", "64")
    gdalenv.configure_gdal()
    gdalenv.configure_gdal()  # idempotent
    assert os.environ["GDAL_CACHEMAX"] == "64"
    assert os.environ["GDAL_DISABLE_READDIR_ON_OPEN"] == "EMPTY_DIR"
    assert ".tif" in os.environ["CPL_VSIL_CURL_ALLOWED_EXTENSIONS"]
    assert "GDAL_NUM_THREADS" not in os.environ
    assert "AWS_HTTPS" not in os.environ and "AWS_VIRTUAL_HOSTING" not in os.environ
    assert rasterio.env.GDALVersion.runtime().major >= 3


@pytest.mark.parametrize(
    ("var", "value", "endpoint", "https"),
    [
        ("AWS_S3_ENDPOINT", "http://127.0.0.1:8333", "127.0.0.1:8333", "NO"),
        ("AWS_S3_ENDPOINT", "https://s3.example.org/", "s3.example.org", "YES"),
        ("AWS_ENDPOINT_URL", "http://localhost:9000", "localhost:9000", "NO"),
        ("AWS_S3_ENDPOINT", "minio:9000", "minio:9000", None),
    ],
)
def test_s3_endpoint_for_gdal(clean_env, caplog, var, value, endpoint, https):
    clean_env.setenv(var, value)
    clean_env.setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-value")
    with caplog.at_level(logging.DEBUG, logger="cluster.storage.gdalenv"):
        gdalenv.configure_gdal()
    assert os.environ["AWS_S3_ENDPOINT"] == endpoint
    assert os.environ.get("AWS_HTTPS") == https
    assert os.environ["AWS_VIRTUAL_HOSTING"] == "FALSE"
    assert "s3cr3t-value" not in caplog.text
    gdalenv.configure_gdal()
    assert os.environ["AWS_S3_ENDPOINT"] == endpoint


def test_user_s3_settings_win(clean_env):
    clean_env.setenv("AWS_S3_ENDPOINT", "http://127.0.0.1:8333")
    clean_env.setenv("AWS_HTTPS", "YES")
    clean_env.setenv("AWS_VIRTUAL_HOSTING", "TRUE")
    gdalenv.configure_gdal()
    assert (os.environ["AWS_HTTPS"], os.environ["AWS_VIRTUAL_HOSTING"]) == ("YES", "TRUE")
