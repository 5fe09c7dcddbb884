"""Masks as remote-sensing practice has them: cloud and shadow widened by
``mask.dilate_m``, and applied to the source pixels before resampling mixes
them, so that no cloudy or hazy value reaches a pixel the map calls clear."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from rasterio.warp import Resampling, reproject, transform_bounds
from scipy import ndimage

from cluster.errors import ClusterError
from cluster.imagery.composite import composite_window
from cluster.imagery.reader import read_window
from cluster.imagery.stacitem import BandSource, ItemRef, MaskSource
from cluster.imagery.temporal import TimeRecipe
from cluster.predict.setup import mask_dilation
from tests.cluster.imagery.test_composite import make_items, reference, window

CRS = "EPSG:25832"
X0, Y0 = 400_000.0, 5_560_000.0
SIZE = 96  # target pixels of 10 m a side
CLEAR, HAZE, CLOUD = 500, 3000, 9000  # DN (x 1e-4: reflectance) of item A
OTHER = 700  # item B, clear everywhere: where A is masked, the map takes B
HAZE_M, DILATE_M = 30.0, 40.0
SCL_CLEAR, SCL_CLOUD = 4, 9


def _write(path: Path, data: np.ndarray, res: float, crs: str = CRS,
           x0: float = X0, y0: float = Y0) -> str:  # fmt: skip
    profile = {"driver": "GTiff", "width": data.shape[-1], "height": data.shape[-2], "count": 1,
               "dtype": data.dtype.name, "crs": crs, "transform": Affine(res, 0, x0, 0, -res, y0),
               "nodata": 0, "tiled": True, "blockxsize": 64, "blockysize": 64}  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data[None] if data.ndim == 2 else data)
    return str(path)


def _distance_m(cloud: np.ndarray, res: float) -> np.ndarray:
    """Metres from each pixel centre to the nearest cloudy pixel centre."""
    return ndimage.distance_transform_edt(~cloud) * res


def _item(name: str, b04: str, b11: str, scl: str, dilate_m: float) -> ItemRef:
    bands = (BandSource(b04, 1, 1e-4, 0.0, asset="B04"), BandSource(b11, 1, 1e-4, 0.0, asset="B11"))
    mask = MaskSource(scl, (0, 3, 8, 9), "SCL", (3, 8, 9), dilate_m)
    return ItemRef(
        name, "c", "2023-06-01T10:30:00Z", None, shapely.box(0, 0, 1, 1).wkb, bands, mask
    )


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> tuple[Path, np.ndarray]:
    """Item A: a cloud marked only in its 20 m SCL, bright in both bands, with a rim of
    haze 30 m wide that the SCL calls clear; item B clear everywhere."""
    root = tmp_path_factory.mktemp("masks")
    n20 = SIZE // 2
    i, j = np.ogrid[:n20, :n20]
    cloud20 = (i - n20 / 2) ** 2 + (j - n20 / 2) ** 2 <= 7**2
    haze20 = ~cloud20 & (_distance_m(cloud20, 20.0) <= HAZE_M)
    cloud10 = np.kron(cloud20, np.ones((2, 2), dtype=bool))
    haze10 = ~cloud10 & (_distance_m(cloud10, 10.0) <= HAZE_M)
    for name, cloud, haze, res in (("b04", cloud10, haze10, 10.0), ("b11", cloud20, haze20, 20.0)):
        dn = np.where(cloud, CLOUD, np.where(haze, HAZE, CLEAR)).astype(np.uint16)
        _write(root / f"a_{name}.tif", dn, res)
        _write(root / f"b_{name}.tif", np.full_like(dn, OTHER), res)
    _write(root / "a_scl.tif", np.where(cloud20, SCL_CLOUD, SCL_CLEAR).astype(np.uint8), 20.0)
    _write(root / "b_scl.tif", np.full((n20, n20), SCL_CLEAR, np.uint8), 20.0)
    return root, cloud20


def _mosaic(root: Path, dilate_m: float) -> np.ndarray:
    items = [_item(k, str(root / f"{k}_b04.tif"), str(root / f"{k}_b11.tif"),
                   str(root / f"{k}_scl.tif"), dilate_m) for k in ("a", "b")]  # fmt: skip
    bounds = (X0, Y0 - SIZE * 10, X0 + SIZE * 10, Y0)
    return read_window(items, bounds, (SIZE, SIZE), CRS, resampling="bilinear")


def test_no_pixel_within_the_dilation_takes_a_value_from_the_cloud(scene):
    root, cloud20 = scene
    out = _mosaic(root, DILATE_M)
    assert not np.isnan(out).any()
    near = np.kron(_distance_m(cloud20, 20.0), np.ones((2, 2)))  # 20 m cells' distance, on 10 m
    dist = _distance_m(np.kron(cloud20, np.ones((2, 2), dtype=bool)), 10.0)
    within = dist <= DILATE_M
    # Within the dilation every band is item B's; beyond it item A's clear ground,
    # untouched by cloud or haze in the 20 m band too (its bilinear kernel reaches
    # 20 m source pixels next to the haze: masked at the source, they add nothing).
    np.testing.assert_allclose(out[:, within], OTHER * 1e-4, rtol=1e-6)
    a = np.isclose(out[0], CLEAR * 1e-4, rtol=1e-6)
    assert (a | within).all() and a.sum() > 0.7 * SIZE * SIZE
    np.testing.assert_allclose(out[1][a], CLEAR * 1e-4, rtol=1e-5)
    assert near.max() > 0  # the cloud is really there


def test_without_dilation_the_haze_gets_in(scene):
    """The case the dilation is for: the SCL calls the rim clear."""
    root, _ = scene
    out = _mosaic(root, 0.0)
    assert (np.isclose(out[0], HAZE * 1e-4)).sum() > 100


def test_masked_source_pixels_never_reach_clear_ones(scene, tmp_path):
    """Without haze and without dilation: the 20 m band is bilinear onto 10 m, and a
    clear 10 m pixel next to the cloud would average in a cloudy 20 m neighbour were
    the mask applied after resampling (the values between CLEAR and CLOUD)."""
    root, _ = scene
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in root.iterdir():
        flat.joinpath(f.name).write_bytes(f.read_bytes())
    for name in ("b04", "b11"):
        with rasterio.open(flat / f"a_{name}.tif", "r+") as dst:
            dn = dst.read(1)
            dst.write(np.where(dn == HAZE, CLEAR, dn).astype(np.uint16), 1)
    out = _mosaic(flat, 0.0)
    a = np.isclose(out[0], CLEAR * 1e-4)
    assert a.sum() > 0.8 * SIZE * SIZE
    np.testing.assert_allclose(out[1][a], CLEAR * 1e-4, rtol=1e-5)  # not one mixed value
    assert np.isclose(out[1][~a], OTHER * 1e-4).all()


def test_composite_of_40_dates_equals_numpy(tmp_path):
    items, ref = make_items(tmp_path, n=40, bands=2, size=48, seed=4)
    bounds, shape = window(48)
    for recipe in (TimeRecipe("median"), TimeRecipe("percentile", percentile=80, min_clear=5)):
        out = composite_window(items, bounds, shape, "EPSG:25832", recipe)
        expected = reference(ref, recipe)
        np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
        np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6, equal_nan=True)


def test_composite_of_items_on_another_crs_equals_numpy(tmp_path):
    """Items in EPSG:3035 at 20 m with 20 m masks, composited onto the 10 m grid in
    EPSG:25832: the reference warps each item's band (its masked source pixels made
    nodata first) and mask with GDAL itself and takes numpy's median of the stack."""
    n, size = 9, 48
    rng = np.random.default_rng(9)
    bounds, shape = window(size)
    dst_transform = Affine(10.0, 0, bounds[0], 0, -10.0, bounds[3])
    box = transform_bounds(CRS, "EPSG:3035", *bounds)  # LAEA, around the window
    x0, y0 = 20.0 * (box[0] // 20 - 20) + 7.0, 20.0 * (box[3] // 20 + 20) + 3.0  # off lattice
    src_transform = Affine(20.0, 0, x0, 0, -20.0, y0)
    items, stack = [], np.full((n, *shape), np.nan, np.float32)
    for k in range(n):
        dn = rng.integers(500, 6000, (120, 120)).astype(np.uint16)
        scl = np.where(rng.random((120, 120)) < 0.3, SCL_CLOUD, SCL_CLEAR).astype(np.uint8)
        band = _write(tmp_path / f"i{k}.tif", dn, 20.0, "EPSG:3035", x0, y0)
        mask = _write(tmp_path / f"i{k}_scl.tif", scl, 20.0, "EPSG:3035", x0, y0)
        src = (BandSource(band, 1, 1e-4, 0.0, asset="B11"),)
        items.append(ItemRef(f"i{k}", "c", f"2023-06-{k + 1:02d}T10:30:00Z", None,
                             shapely.box(0, 0, 1, 1).wkb, src,
                             MaskSource(mask, (0, 3, 8, 9), "SCL", (3, 8, 9), 0.0)))  # fmt: skip
        values = np.where(scl == SCL_CLOUD, np.nan, dn * np.float32(1e-4)).astype(np.float32)
        warped = np.full(shape, np.nan, np.float32)
        reproject(values, warped, src_transform=src_transform, src_crs="EPSG:3035",
                  src_nodata=np.nan, dst_transform=dst_transform, dst_crs=CRS,
                  dst_nodata=np.nan, resampling=Resampling.bilinear)  # fmt: skip
        classes = np.full(shape, -1, np.int32)
        reproject(scl.astype(np.int32), classes, src_transform=src_transform,
                  src_crs="EPSG:3035", dst_transform=dst_transform, dst_crs=CRS,
                  dst_nodata=-1, resampling=Resampling.nearest)  # fmt: skip
        warped[classes != SCL_CLEAR] = np.nan
        stack[k] = warped
    out = composite_window(items, bounds, shape, CRS, TimeRecipe("median"))
    expected = reference(stack[:, None], TimeRecipe("median"))
    assert np.isfinite(expected).mean() > 0.95
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6, equal_nan=True)


def test_dilation_is_the_checkpoints():
    """A run reads as its checkpoint was trained: ``mask.dilate_m`` left out takes the
    checkpoint's, another value is refused naming both."""
    card = SimpleNamespace(extra={"recipe": {"overrides": {"collections": [], "dilate_m": 40.0}}})
    assert mask_dilation(card, None, "model.pt") == mask_dilation(card, 40, "model.pt") == 40.0
    with pytest.raises(ClusterError, match=r"mask.dilate_m 0 differs from the 40 m .*model.pt"):
        mask_dilation(card, 0.0, "model.pt")
    old = SimpleNamespace(extra={"recipe": {"overrides": {"collections": []}}})
    assert mask_dilation(old, None, "old.pt") == 0.0
    with pytest.raises(ClusterError, match="differs from the 0 m"):
        mask_dilation(old, 10.0, "old.pt")
