"""Real providers' items (tests/data/real-stac/, as their STAC APIs publish them):
bands, units, nodata and mask as each provider documents them, and read from
small local files of the same keys, dtypes, nodata and layout."""

from __future__ import annotations

import copy
import json
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine

from cluster.errors import ClusterError
from cluster.imagery import providers
from cluster.imagery.providers import (
    SCL_INVALID,
    BandOverride,
    CollectionOverrides,
    MaskOverride,
    Overrides,
    resolve,
)
from cluster.imagery.reader import read_window
from cluster.imagery.stacitem import RawItem, footprints, item_ref

DATA = Path(__file__).resolve().parents[2] / "data" / "real-stac"
ES = "earthsearch-v1_sentinel-2-l2a_S2A_13TDE_20231008_0_L2A.json"
PC = "planetarycomputer_sentinel-2-l2a_S2B_MSIL2A_20220612T182919_R027_T24XWR_20220613T123251.json"
CDSE = "cdse_sentinel-2-l2a_S2C_MSIL2A_20250330T100051_N0511_R122_T33UWP_20250330T145914.json"
NAIP = "planetarycomputer_naip_fl_m_2608004_nw_17_060_20191215_20200113.json"
BANDS = ("blue", "green", "red", "nir")
# Per provider's documentation: (asset of each band, band index, scale, offset,
# nodata, mask asset, invalid mask values).
EXPECTED = {
    ES: (("blue", "green", "red", "nir"), (1, 1, 1, 1), 1e-4, -0.1, 0, "scl", SCL_INVALID),
    PC: (("B02", "B03", "B04", "B08"), (1, 1, 1, 1), 1e-4, -0.1, 0, "SCL", SCL_INVALID),
    CDSE: (
        ("B02_10m", "B03_10m", "B04_10m", "B08_10m"),
        (1, 1, 1, 1),
        1e-4,
        -0.1,
        0,
        "SCL_20m",
        (0, 1, 3, 8, 9, 10, 11),
    ),
    NAIP: (("image",) * 4, (3, 2, 1, 4), 1.0, 0.0, None, None, ()),
}


def doc_of(name: str) -> dict:
    return json.loads((DATA / name).read_text())


@pytest.mark.parametrize("name", list(EXPECTED), ids=["earthsearch", "pc-s2", "cdse", "naip"])
def test_each_provider_reads_as_documented(name):
    assets, indexes, scale, offset, nodata, mask_key, invalid = EXPECTED[name]
    sources, mask = resolve(RawItem(doc_of(name), str(DATA / name)), BANDS)
    assert [s.asset for s in sources] == list(assets)
    assert [s.band_index for s in sources] == list(indexes)
    for s in sources:
        assert math.isclose(s.scale, scale) and math.isclose(s.offset, offset, abs_tol=1e-12)
        assert s.nodata == nodata
    assert (mask.asset, mask.invalid) == (mask_key, invalid) if mask_key else mask is None
    if mask_key:  # cloud and shadow, named or not, are what mask.dilate_m widens
        assert mask.dilate == (3, 8, 9) and mask.dilate_m == 0.0
        dilated = resolve(RawItem(doc_of(name), str(DATA / name)), BANDS, Overrides(dilate_m=40))
        assert dilated[1].dilate_m == 40.0


def test_planetary_computer_offset_follows_the_processing_baseline():
    doc = doc_of(PC)
    doc["properties"]["s2:processing_baseline"] = "03.01"
    (blue,), _ = resolve(RawItem(doc), ["blue"])
    assert (blue.scale, blue.offset) == (1e-4, 0.0) and "03.01" in blue.origin
    del doc["properties"]["s2:processing_baseline"]
    uri = doc["properties"].pop("s2:product_uri")  # it names the baseline too (N0400)
    with pytest.raises(ClusterError, match=r"S2B_MSIL2A_.*processing baseline.*offset: -0.1"):
        resolve(RawItem(doc), ["blue"])
    doc["properties"]["s2:product_uri"] = uri
    (blue,), _ = resolve(RawItem(doc), ["blue"])
    assert blue.offset == -0.1  # the baseline read from the product name


def test_earth_search_v0_pixels_already_carry_the_offset():
    doc = doc_of(PC)
    doc["collection"] = "sentinel-s2-l2a-cogs"
    doc["properties"]["sentinel:boa_offset_applied"] = True
    (blue,), mask = resolve(RawItem(doc), ["blue"])
    assert (blue.scale, blue.offset, blue.nodata) == (1e-4, 0.0, 0.0) and mask.asset == "SCL"


def test_metadata_beats_the_convention_and_says_so_once(caplog):
    providers._logged.clear()
    doc = doc_of(ES)
    doc["collection"] = "odd-mirror"
    doc["assets"]["blue"]["raster:bands"][0]["offset"] = 0  # disagrees with baseline 05.09
    with caplog.at_level(logging.WARNING, logger="cluster.imagery.providers"):
        for _ in range(3):
            (blue,), _ = resolve(RawItem(doc), ["blue"])
    assert blue.offset == 0.0 and blue.origin == "item metadata"
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1 and "odd-mirror" in said[0] and "metadata wins" in said[0]


def test_finest_resolution_wins_whatever_the_order():
    doc = doc_of(CDSE)
    doc["assets"] = dict(reversed(doc["assets"].items()))  # 60 m and 20 m copies first
    sources, mask = resolve(RawItem(doc), BANDS)
    assert [s.asset for s in sources] == ["B02_10m", "B03_10m", "B04_10m", "B08_10m"]
    assert mask.asset == "SCL_20m"


def test_float_data_gets_no_dn_convention():
    doc = doc_of(PC)
    doc["assets"]["B02"]["data_type"] = "float32"
    (blue,), _ = resolve(RawItem(doc), ["blue"])
    assert (blue.scale, blue.offset, blue.origin) == (1.0, 0.0, "none stated")


def test_overrides_name_assets_units_and_mask():
    doc = doc_of(NAIP)
    doc["assets"]["qa"] = {"href": "qa.tif", "roles": ["data"]}
    rules = CollectionOverrides(
        bands=(("nir", BandOverride(asset="image", band=4, scale=1 / 255)),
               ("red", BandOverride(offset=-0.01))),
        mask=MaskOverride("qa", (2, 1)),
    )  # fmt: skip
    sources, mask = resolve(RawItem(doc), ["red", "nir"], Overrides((("naip", rules),)))
    red, nir = sources
    assert (red.asset, red.band_index, red.scale, red.offset) == ("image", 1, 1.0, -0.01)
    assert (nir.band_index, nir.scale) == (4, 1 / 255) and "assets.naip.bands.nir" in nir.origin
    assert (mask.asset, mask.invalid, mask.dilate) == ("qa", (1, 2), (1, 2))  # all, unless said
    said = CollectionOverrides(mask=MaskOverride("qa", (2, 1, 0), dilate=(2,)))
    assert resolve(RawItem(doc), ["red"], Overrides((("naip", said),)))[1].dilate == (2,)
    wrong = Overrides((("*", CollectionOverrides(bands=(("red", BandOverride(asset="B4")),))),))
    with pytest.raises(ClusterError, match=r"assets\.\*\.bands\.red\.asset: item fl_m_.* 'B4'"):
        resolve(RawItem(doc), ["red"], wrong)


def test_a_missing_band_names_the_item_and_the_override_to_set():
    with pytest.raises(ClusterError, match=r"no band 'swir16'.*assets\.naip\.bands\.swir16"):
        resolve(RawItem(doc_of(NAIP)), ["swir16"])


# -- the same items read from small local files ------------------------------------

PX = 32  # pixels of the 10 m (or finest) band files each way
DN = {"blue": 1500, "green": 1800, "red": 1300, "nir": 4100}  # Sentinel-2 uint16 DN


def _localize(name: str, folder: Path) -> tuple[RawItem, str, tuple[float, ...]]:
    """The item with the assets it is read from rewritten to small files in ``folder``,
    placed inside its footprint on each asset's own pixel grid; (item, CRS, bounds)."""
    doc = copy.deepcopy(doc_of(name))
    raw = RawItem(doc, str(folder / "item.json"))
    crs = _item_crs(doc)
    centre = footprints([raw], crs)[0].centroid
    sources, mask = resolve(raw, BANDS)
    finest = min(_pixel(doc, doc["assets"][s.asset]) for s in sources)
    x0 = math.floor(centre.x / 60) * 60  # on every S2 lattice (10, 20, 60 m)
    y0 = math.floor(centre.y / 60) * 60
    bounds = (x0, y0 - PX * finest, x0 + PX * finest, y0)
    for key in dict.fromkeys([s.asset for s in sources] + ([mask.asset] if mask else [])):
        asset = doc["assets"][key]
        res = _pixel(doc, asset)
        n = round(PX * finest / res)
        jp2 = "jp2" in str(asset.get("type"))
        path = folder / (key + (".jp2" if jp2 else ".tif"))
        data = _pixels(name, key, asset, n)
        profile = {"driver": "JP2OpenJPEG" if jp2 else "GTiff", "width": n, "height": n,
                   "count": data.shape[0], "dtype": data.dtype.name, "crs": crs,
                   "transform": Affine(res, 0, x0, 0, -res, y0)}  # fmt: skip
        if jp2:
            profile.update(QUALITY=100, REVERSIBLE="YES")
        if name != NAIP:
            profile["nodata"] = 0
        with rasterio.open(path, "w", **profile) as dst:
            dst.write(data)
        asset["href"] = path.name  # relative, as static catalogs have them
    return RawItem(doc, str(folder / "item.json")), crs, bounds


def _item_crs(doc: dict) -> str:
    props = doc["properties"]
    if "proj:epsg" in props:
        return f"EPSG:{props['proj:epsg']}"
    return next(a["proj:code"] for a in doc["assets"].values() if "proj:code" in a)


def _pixel(doc: dict, asset: dict) -> float:
    transform = asset.get("proj:transform") or doc["properties"]["proj:transform"]
    return float(transform[0])


def _pixels(name: str, key: str, asset: dict, n: int) -> np.ndarray:
    if name == NAIP:  # 8-bit RGBI in one file
        return np.stack([np.full((n, n), v, np.uint8) for v in (90, 100, 80, 160)])
    if "scl" in key.lower():
        scl = np.full((n, n), 4, np.uint8)
        scl[: n // 4, : n // 4] = 9  # a cloud in the north-west corner
        scl[-1, :] = 0  # a row of no data
        return scl[None]
    band = next(b for b, k in zip(BANDS, EXPECTED[name][0], strict=True) if k == key)
    data = np.full((1, n, n), DN[band], np.uint16)
    data[0, n // 2, n // 2] = 0  # one nodata pixel
    return data


@pytest.mark.parametrize("name", list(EXPECTED), ids=["earthsearch", "pc-s2", "cdse", "naip"])
def test_local_copies_read_as_the_provider_means(name, tmp_path):
    raw, crs, bounds = _localize(name, tmp_path)
    ref = item_ref(raw, resolve(raw, BANDS), footprints([raw], crs)[0])
    assert shapely.from_wkb(ref.footprint_wkb).contains(shapely.box(*bounds))
    out = read_window([ref], bounds, (PX, PX), crs)
    if name == NAIP:
        np.testing.assert_array_equal(out[:, 0, 0], [80, 100, 90, 160])  # blue, green, red, nir
        assert np.isfinite(out).all()
        return
    expected = np.array([DN[b] * 1e-4 - 0.1 for b in BANDS], np.float32)
    clear = np.isfinite(out).all(axis=0)
    np.testing.assert_allclose(out[:, clear].T, np.broadcast_to(expected, (clear.sum(), 4)),
                               rtol=1e-6)  # fmt: skip
    assert not clear[: PX // 4, : PX // 4].any()  # SCL cloud masked
    assert not clear[-2:, :].any()  # SCL no data (20 m: two 10 m rows)
    assert not clear[PX // 2, PX // 2]  # the band's own nodata
    assert clear.sum() == PX * PX - (PX // 4) ** 2 - 2 * PX - 1


def test_a_checkpoint_trained_on_dn_reads_values_as_stored():
    """units "dn": neither metadata nor convention scales, only the config may."""
    for name in (ES, PC, CDSE):
        sources, mask = resolve(RawItem(doc_of(name)), BANDS, units="dn")
        assert all((s.scale, s.offset) == (1.0, 0.0) for s in sources), name
        assert all(s.nodata == 0 and "as stored" in s.origin for s in sources), name
        assert mask is not None
    rule = CollectionOverrides((("blue", BandOverride(scale=2.0)),))
    overrides = Overrides((("sentinel-2-l2a", rule),))
    (blue, nir), _ = resolve(RawItem(doc_of(PC)), ["blue", "nir"], overrides, units="dn")
    assert (blue.scale, blue.offset, nir.scale) == (2.0, 0.0, 1.0)
