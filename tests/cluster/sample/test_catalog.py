"""The sample region on disk must look like, and agree with, what it was made from."""

import json
import shutil
import socket
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
from rasterio import features
from rasterio.warp import transform_geom
from rio_cogeo.cogeo import cog_validate

from cluster.imagery.stacvalidate import CatalogValidationError, vendored_schemas
from cluster.sample.catalog import (
    ORTHO_COLLECTION,
    S2_COLLECTION,
    SampleRegion,
    validate_catalog,
    write_region,
)
from cluster.sample.imagery import NOISE_SD, SCL_BY_CLASS, sibling_crs
from cluster.sample.scene import (
    BANDS,
    CLASS_COLORS,
    CLASS_NAMES,
    NODATA_CLASS,
    SampleSpec,
    synthesize,
)

SPEC = SampleSpec(width=256, height=256, stand_px=64)
S2_KEYS = ("blue", "green", "red", "nir", "nir08", "swir16", "scl")


@pytest.fixture(scope="module")
def region(tmp_path_factory) -> SampleRegion:
    return write_region(tmp_path_factory.mktemp("region"), SPEC)


@pytest.fixture(scope="module")
def scene():
    return synthesize(SPEC)


@pytest.fixture(scope="module")
def s2_items(region) -> list[pystac.Item]:
    catalog = pystac.Catalog.from_file(str(region.catalog))
    return list(catalog.get_child(S2_COLLECTION).get_items())


@pytest.fixture(scope="module")
def ortho_items(region) -> list[pystac.Item]:
    catalog = pystac.Catalog.from_file(str(region.catalog))
    return list(catalog.get_child(ORTHO_COLLECTION).get_items())


def read(item: pystac.Item, key: str) -> np.ndarray:
    with rasterio.open(item.assets[key].get_absolute_href()) as src:
        return src.read()


def window(asset: pystac.Asset, res: float = SPEC.resolution) -> tuple[slice, slice]:
    """Where an asset lies in the region's grid refined to ``res``, from proj:*."""
    a, _, x0, _, e, y0 = asset.extra_fields["proj:transform"]
    assert e == -a and a % res == 0
    h, w = (n * int(a // res) for n in asset.extra_fields["proj:shape"])
    col, row = (x0 - SPEC.origin[0]) / res, (SPEC.origin[1] - y0) / res
    assert col == int(col) and row == int(row), "asset grid must line up with the region's"
    return slice(int(row), int(row) + h), slice(int(col), int(col) + w)


def take(a: np.ndarray, rows: slice, cols: slice, fill: float) -> np.ndarray:
    """``a[..., rows, cols]``, filled where the window pokes past ``a``."""
    out = np.full((*a.shape[:-2], rows.stop - rows.start, cols.stop - cols.start), fill, a.dtype)
    part = a[..., rows, cols]
    out[..., : part.shape[-2], : part.shape[-1]] = part
    return out


def up(a: np.ndarray) -> np.ndarray:
    return np.repeat(np.repeat(a, 2, axis=-2), 2, axis=-1)


def s2_reflectance(item: pystac.Item, key: str) -> np.ndarray:
    band = item.assets[key].extra_fields["raster:bands"][0]
    dn = read(item, key)[0]
    return np.where(dn == band["nodata"], np.nan, dn * band["scale"] + band["offset"])


def truth_window(scene, item: pystac.Item) -> np.ndarray:
    """Truth under an item's 10 m grid, NaN where the scene pokes past the region."""
    return take(scene.reflectance, *window(item.assets["red"]), np.nan)


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_region_paths(region):
    for path in (region.labels, region.composite, region.catalog, region.boundary):
        assert path.is_file() and path.parent == region.root


def test_every_raster_is_a_valid_cog(region):
    tifs = sorted(region.root.rglob("*.tif"))
    assert len(tifs) == 2 + 4 * len(S2_KEYS) + 4
    for tif in tifs:
        valid, errors, _ = cog_validate(str(tif), quiet=True)
        assert valid and not errors, (tif, errors)
        with rasterio.open(tif) as src:
            assert src.compression.name == "deflate"
            assert src.block_shapes[0] == (256, 256) or src.width <= 256


def test_catalog_validates_offline(region, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("validation tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    assert validate_catalog(region.catalog) == 1 + 2 + 4 + 4
    assert validate_catalog(region.root) == 11


def test_catalog_is_self_contained(region):
    for path in region.root.rglob("*.json"):
        text = path.read_text()
        assert str(region.root) not in text and '"rel": "self"' not in text, path
    catalog = pystac.Catalog.from_file(str(region.catalog))
    assert [c.id for c in catalog.get_children()] == [S2_COLLECTION, ORTHO_COLLECTION]
    for item in catalog.get_items(recursive=True):
        for asset in item.assets.values():
            assert asset.href.startswith("./")
            assert Path(asset.get_absolute_href()).is_file()


def test_declared_schemas_are_vendored(region):
    declared = set()
    for path in region.root.rglob("*.json"):
        declared |= set(json.loads(path.read_text()).get("stac_extensions", []))
    assert declared <= set(vendored_schemas())  # the output catalog adds classification
    assert len(declared) == 3


def test_validation_error_names_object_and_problem(region, tmp_path):
    copy = shutil.copytree(region.root, tmp_path / "copy")
    path = next((copy / S2_COLLECTION).glob("*/*.json"))
    item = json.loads(path.read_text())
    item["assets"]["red"]["raster:bands"][0]["data_type"] = "uint17"
    path.write_text(json.dumps(item))
    with pytest.raises(CatalogValidationError, match=item["id"]) as err:
        validate_catalog(copy / "catalog.json")
    assert "raster/v1.1.0" in str(err.value)
    assert "$.assets.red['raster:bands'][0].data_type: 'uint17' is not one of" in str(err.value)

    item["assets"]["red"]["raster:bands"][0]["data_type"] = "uint16"
    item["stac_extensions"].append("https://stac-extensions.github.io/sat/v1.0.0/schema.json")
    path.write_text(json.dumps(item))
    with pytest.raises(CatalogValidationError, match="not available offline"):
        validate_catalog(copy / "catalog.json")


def test_labels_raster(region, scene):
    with rasterio.open(region.labels) as src:
        assert src.dtypes[0] == "uint8" and src.nodata == NODATA_CLASS
        assert src.crs == rasterio.crs.CRS.from_user_input(SPEC.crs)
        assert src.transform == SPEC.transform
        np.testing.assert_array_equal(src.read(1), scene.labels)
        colormap = src.colormap(1)
        for i, color in enumerate(CLASS_COLORS):
            assert "#{:02x}{:02x}{:02x}".format(*colormap[i][:3]) == color
        assert json.loads(src.tags()["CLASS_NAMES"]) == list(CLASS_NAMES)
        assert src.tags(1)["CLASS_3"] == CLASS_NAMES[3]


def test_composite_is_the_truth(region, scene):
    with rasterio.open(region.composite) as src:
        assert src.descriptions == BANDS and np.isnan(src.nodata)
        assert src.dtypes == ("float32",) * len(BANDS)
        np.testing.assert_array_equal(src.read(), scene.reflectance)


def test_boundary_is_the_mapped_area(region, scene):
    collection = json.loads(region.boundary.read_text())
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::25832"
    (feature,) = collection["features"]
    assert feature["properties"]["crs"] == SPEC.crs
    burnt = features.rasterize(
        [feature["geometry"]], out_shape=scene.labels.shape, transform=SPEC.transform
    )
    np.testing.assert_array_equal(burnt == 1, scene.labels != NODATA_CLASS)


def test_s2_scenes_overlap_cover_the_region_and_mix_crs(s2_items):
    assert 3 <= len(s2_items) <= 4
    days = {item.datetime.date() for item in s2_items}
    assert len(days) == len(s2_items) and {d.month for d in days} <= {6, 7, 8}
    count = np.zeros((SPEC.height + 1, SPEC.width + 1), int)
    for item in s2_items:
        rows, cols = window(item.assets["red"])
        count[rows, cols] += 1
    assert (count[: SPEC.height, : SPEC.width] >= 2).all()
    codes = {item.properties["proj:code"] for item in s2_items}
    assert codes == {"EPSG:25832", "EPSG:32632"}
    for item in s2_items:
        if item.properties["proj:code"] == "EPSG:32632":
            with rasterio.open(item.assets["red"].get_absolute_href()) as src:
                assert src.crs.to_epsg() == 32632


def test_s2_asset_metadata(s2_items):
    for item in s2_items:
        assert tuple(item.assets) == S2_KEYS
        assert 0 <= item.properties["eo:cloud_cover"] <= 100
        for key, asset in item.assets.items():
            res = 10.0 if key in ("blue", "green", "red", "nir") else 20.0
            band = asset.extra_fields["raster:bands"][0]
            assert band["spatial_resolution"] == res and band["nodata"] == 0
            if key != "scl":
                assert (band["scale"], band["offset"], band["data_type"]) == (1e-4, -0.1, "uint16")
                assert asset.extra_fields["eo:bands"][0]["common_name"] == key
            with rasterio.open(asset.get_absolute_href()) as src:
                assert list(src.shape) == asset.extra_fields["proj:shape"]
                assert list(src.transform)[:6] == asset.extra_fields["proj:transform"]
                assert list(src.bounds) == asset.extra_fields["proj:bbox"]
                assert src.transform.a == res and src.nodata == 0


def test_scl_marks_clouds_exactly_where_bands_are_bright(s2_items, scene):
    clouds = shadows = 0
    for item in s2_items:
        scl = read(item, "scl")[0]
        refl = np.stack([s2_reflectance(item, k) for k in ("blue", "green", "red", "nir")])
        bright = (refl > 0.3).all(axis=0)
        np.testing.assert_array_equal(bright, up(np.isin(scl, (8, 9))))
        if bright.any():
            assert refl[:, bright].min() >= 0.45
        clouds += np.isin(scl, (8, 9)).sum()
        shadow = up(scl == 3)
        shadows += shadow.sum()
        if shadow.any():
            truth = truth_window(scene, item)
            assert np.nanmean(refl[3][shadow]) < 0.6 * np.nanmean(truth[3][shadow])
    assert clouds > 0 and shadows > 0


def test_swath_edge_is_dn_zero_and_scl_zero(s2_items, scene):
    swaths = 0
    for item in s2_items:
        truth = truth_window(scene, item)
        dn = np.stack([read(item, k)[0] for k in ("blue", "green", "red", "nir")])
        cut = (dn == 0).all(axis=0) & ~np.isnan(truth[0])
        assert ((dn == 0).any(axis=0) == (dn == 0).all(axis=0)).all()
        if not cut.any():
            continue
        swaths += 1
        assert (up(read(item, "scl")[0])[cut] == 0).all()
        assert (up(read(item, "nir08")[0])[cut] == 0).all()
        # A diagonal edge: it reaches further west in the south of the scene.
        west = [np.flatnonzero(row).min() for row in cut if row.any()]
        assert west[0] > west[-1]
    assert swaths >= 1


def test_s2_footprints_bound_the_valid_data(s2_items, scene):
    for item in s2_items:
        mapped = ~np.isnan(truth_window(scene, item)[0])
        asset = item.assets["red"]
        geometry = transform_geom("EPSG:4326", item.properties["proj:code"], item.geometry)
        with rasterio.open(asset.get_absolute_href()) as src:
            valid = src.read(1) != 0
            inside = features.rasterize([geometry], out_shape=src.shape, transform=src.transform)
        # Only pixels cut by the swath edge may disagree (the mask is drawn at 20 m).
        assert np.count_nonzero(valid & (inside == 0)) <= 2 * src.height
        assert np.count_nonzero(~valid & (inside == 1) & mapped) <= 2 * src.height


@pytest.mark.parametrize(
    ("crs", "sibling"),
    [("EPSG:25832", "EPSG:32632"), ("EPSG:32633", "EPSG:25833"), ("EPSG:3035", "EPSG:3035")],
)
def test_sibling_crs(crs, sibling):
    assert sibling_crs(crs) == sibling


def test_s2_red_matches_truth_where_clear(s2_items, scene):
    for item in s2_items:
        clear = up(np.isin(read(item, "scl")[0], (4, 5, 6)))
        red = s2_reflectance(item, "red")
        truth = truth_window(scene, item)[BANDS.index("red")]
        assert clear.mean() > 0.5 and not np.isnan(red[clear]).any()
        diff = red[clear] - truth[clear]
        assert np.abs(diff).max() < 6 * NOISE_SD
        assert abs(diff.mean()) < 0.2 * NOISE_SD and diff.std() < 1.2 * NOISE_SD


def test_scl_classes_follow_labels(s2_items, scene):
    for item in s2_items:
        scl = read(item, "scl")[0]
        labels = take(scene.labels, *window(item.assets["scl"]), NODATA_CLASS)
        corner = labels[::2, ::2]
        land = np.isin(scl, (4, 5, 6)) & (corner != NODATA_CLASS)
        assert (scl[land] == SCL_BY_CLASS[corner[land]]).mean() > 0.9


def test_every_mapped_pixel_has_a_clear_s2_view(s2_items, scene):
    seen = np.zeros((SPEC.height + 1, SPEC.width + 1), bool)
    for item in s2_items:
        rows, cols = window(item.assets["red"])
        seen[rows, cols] |= up(np.isin(read(item, "scl")[0], (4, 5, 6)))
    mapped = scene.labels != NODATA_CLASS
    # 20 m SCL leaves out 10 m pixels whose 20 m block touches the unmapped corner.
    inner = mapped & np.roll(mapped, -1, 0) & np.roll(mapped, 1, 1)
    assert seen[: SPEC.height, : SPEC.width][inner].all()


def test_ortho_tiles_match_truth(ortho_items, scene):
    assert len(ortho_items) == 4
    fine = up(scene.reflectance)
    covered = np.zeros(fine.shape[1:], bool)
    for item in ortho_items:
        asset = item.assets["image"]
        order = [BANDS.index(b["common_name"]) for b in asset.extra_fields["eo:bands"]]
        assert order == [2, 1, 0, 3]
        bands = asset.extra_fields["raster:bands"]
        rows, cols = window(asset, res=SPEC.resolution / 2)
        covered[rows, cols] = True
        dn = read(item, "image")
        truth = fine[order][:, rows, cols]
        nodata = np.isnan(truth)
        assert (dn[nodata] == 0).all() and (dn[~nodata] >= 1).all()
        refl = dn * np.array([b["scale"] for b in bands])[:, None, None]
        diff = refl[~nodata] - truth[~nodata]
        assert np.abs(diff).max() < 6 * NOISE_SD + bands[0]["scale"]
    assert covered.all()


def test_same_spec_same_bytes(region, tmp_path):
    again = write_region(tmp_path / "again", SPEC)
    assert tree(again.root) == tree(region.root)


def test_other_seed_other_bytes(region, tmp_path):
    other = write_region(tmp_path / "other", SampleSpec(seed=1, width=64, height=64, stand_px=32))
    assert other.labels.read_bytes() != region.labels.read_bytes()


@pytest.mark.parametrize(
    ("layouts", "collection"), [(("s2",), S2_COLLECTION), (("ortho",), ORTHO_COLLECTION)]
)
def test_one_layout_only(tmp_path, layouts, collection):
    spec = SampleSpec(width=64, height=64, stand_px=32)
    region = write_region(tmp_path, spec, layouts=layouts)
    assert region.labels.is_file() and region.composite.is_file() and region.boundary.is_file()
    catalog = pystac.Catalog.from_file(str(region.catalog))
    assert [c.id for c in catalog.get_children()] == [collection]
    assert validate_catalog(region.catalog) == 1 + 1 + 4


@pytest.mark.parametrize("layouts", [("s2", "landsat"), "s2", ("S2",)])
def test_unknown_layout_is_refused(tmp_path, layouts):
    with pytest.raises(ValueError, match=r"unknown layout.*'s2', 'ortho'"):
        write_region(tmp_path, SPEC, layouts=layouts)
    assert not any(tmp_path.iterdir())
