"""The sample's scenes rewritten in Planetary Computer's and the Copernicus Data
Space's layouts: valid STAC, the providers' keys and fields, the same pixels."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio

from cluster.imagery.stacvalidate import validate_catalog
from cluster.sample.catalog import write_region
from cluster.sample.layouts import LAYOUTS, rewrite_catalog
from cluster.sample.scene import SampleSpec

SPEC = SampleSpec(seed=7, width=128, height=128, stand_px=48)


@pytest.fixture(scope="module")
def region(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sample")
    write_region(root, SPEC, layouts=("s2",))
    return root


def _items(catalog: Path) -> list[tuple[Path, dict]]:
    paths = sorted(catalog.parent.glob("sentinel-2-l2a/*/*.json"))
    return [(p, json.loads(p.read_text())) for p in paths]


def _reflectance(path: Path, scale: float, offset: float) -> np.ndarray:
    with rasterio.open(path) as src:
        dn = src.read(1)
    return np.where(dn == 0, np.nan, dn * scale + offset)


@pytest.mark.parametrize("layout", LAYOUTS)
def test_layouts_are_valid_stac_with_the_same_pixels(region, tmp_path, layout):
    catalog = rewrite_catalog(region, tmp_path, layout)
    assert validate_catalog(catalog) == 1 + 1 + 4  # catalog, collection, four scenes
    originals = dict((d["id"], (p, d)) for p, d in _items(region / "catalog.json"))
    for path, doc in _items(catalog):
        src_path, src = originals[doc["id"]]
        text = json.dumps(doc)
        for key, band in (("blue", "B02"), ("nir", "B08")):
            meta = src["assets"][key]["raster:bands"][0]
            want = _reflectance(src_path.parent / src["assets"][key]["href"],
                                meta["scale"], meta["offset"])  # fmt: skip
            if layout == "planetary-computer":
                asset = doc["assets"][band]
                assert asset["eo:bands"][0]["name"] == band and "raster:" not in text
                assert doc["properties"]["s2:processing_baseline"] == "04.00"
                got = _reflectance(path.parent / asset["href"], 1e-4, -0.1)  # PC's rule
            else:
                asset = doc["assets"][f"{band}_10m"]
                assert asset["bands"][0]["eo:common_name"] == key and asset["type"] == "image/jp2"
                got = _reflectance(path.parent / asset["href"], asset["raster:scale"],
                                   asset["raster:offset"])  # fmt: skip
                coarse = doc["assets"][f"{band}_20m"]
                assert "sampling:downsampled" in coarse["roles"]
                halved = _reflectance(path.parent / coarse["href"], 1e-4, -0.1)
                h, w = halved.shape
                blocks = want[: 2 * h, : 2 * w].reshape(h, 2, w, 2).mean(axis=(1, 3))
                clear = np.isfinite(blocks)
                assert (np.isfinite(halved) == clear).all()
                np.testing.assert_allclose(halved[clear], blocks[clear], atol=1e-4)
            np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)
        scl = "SCL" if layout == "planetary-computer" else "SCL_20m"
        with (
            rasterio.open(path.parent / doc["assets"][scl]["href"]) as a,
            rasterio.open(src_path.parent / src["assets"]["scl"]["href"]) as b,
        ):
            np.testing.assert_array_equal(a.read(), b.read())
        if layout == "cdse":
            classes = doc["assets"]["SCL_20m"]["classification:classes"]
            assert classes[0] == {"value": 0, "name": "no_data", "description": "no data",
                                  "nodata": True}  # fmt: skip
