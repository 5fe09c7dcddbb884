"""The phenology sample: a year of scenes where only texture and time together map
the forest, with clouds SCL marks and haze it misses, written as a STAC catalog."""

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pyogrio.raw
import pystac
import pytest
import rasterio
from rio_cogeo.cogeo import cog_validate

from cluster.imagery.catalog import Catalog
from cluster.imagery.stacvalidate import validate_catalog
from cluster.sample.catalog import S2_COLLECTION
from cluster.sample.phenocatalog import PhenologyRegion, write_phenology_region
from cluster.sample.phenology import (
    HAZE_PATH,
    HAZE_T_MIN,
    MIN_CLEAR,
    PHENO_BANDS,
    PHENO_CLASS_COLORS,
    PHENO_CLASS_NAMES,
    SCENES_PER_SEASON,
    SEASONS,
    acquire,
    leaf_on,
    plan_year,
    reflectance,
    synthesize_phenology,
)
from cluster.sample.scene import NODATA_CLASS, SampleSpec

SPEC = SampleSpec(width=256, height=256, stand_px=64)
SPRUCE, LARCH, BEECH, PINE = (
    PHENO_CLASS_NAMES.index(n) for n in ("spruce", "larch", "beech", "pine")
)
CLEAR_SCL = (4, 5)  # vegetation, not vegetated: what this sample marks clear


@pytest.fixture(scope="module")
def region(tmp_path_factory) -> PhenologyRegion:
    return write_phenology_region(tmp_path_factory.mktemp("pheno"), SPEC)


@pytest.fixture(scope="module")
def truth():
    return synthesize_phenology(SPEC)


@pytest.fixture(scope="module")
def visits(truth):
    return {v.id: v for v in plan_year(truth)}


@pytest.fixture(scope="module")
def scenes(region) -> list[dict]:
    """Each item of the catalog as read from disk: reflectance, clear mask (10 m), SCL."""
    catalog = pystac.Catalog.from_file(str(region.catalog))
    out = []
    for item in sorted(catalog.get_child(S2_COLLECTION).get_items(), key=lambda i: i.datetime):
        refl = []
        for key in PHENO_BANDS:
            band = item.assets[key].extra_fields["raster:bands"][0]
            with rasterio.open(item.assets[key].get_absolute_href()) as src:
                dn = src.read(1)
            refl.append(np.where(dn == 0, np.nan, dn * band["scale"] + band["offset"]))
        with rasterio.open(item.assets["scl"].get_absolute_href()) as src:
            scl = np.repeat(np.repeat(src.read(1), 2, axis=0), 2, axis=1)
        out.append(
            {"item": item, "refl": np.stack(refl), "scl": scl, "clear": np.isin(scl, CLEAR_SCL)}
        )
    return out


def season_of(item: pystac.Item) -> str:
    return next(s for s, (m0, m1) in SEASONS.items() if m0 <= item.datetime.month <= m1)


def tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_files_and_rasters(region, truth):
    for path in (region.labels, region.boundary, region.catalog, region.haze, region.stands):
        assert path.is_file() and path.parent == region.root
    assert region.year == 2023
    for tif in (region.labels, region.haze, *sorted(region.root.glob(f"{S2_COLLECTION}/*/*.tif"))):
        valid, errors, _ = cog_validate(str(tif), quiet=True)
        assert valid and not errors, (tif, errors)
    with rasterio.open(region.labels) as src:
        assert src.nodata == NODATA_CLASS and src.transform == SPEC.transform
        assert json.loads(src.tags()["CLASS_NAMES"]) == list(PHENO_CLASS_NAMES)
        assert src.colormap(1)[2][:3] == tuple(
            int(PHENO_CLASS_COLORS[2][i : i + 2], 16) for i in (1, 3, 5)
        )
        np.testing.assert_array_equal(src.read(1), truth.labels)
    assert set(np.unique(truth.labels)) == {*range(len(PHENO_CLASS_NAMES)), NODATA_CLASS}
    area = json.loads(region.boundary.read_text())["features"][0]["properties"]["area_m2"]
    assert area == np.count_nonzero(truth.labels != NODATA_CLASS) * SPEC.resolution**2


def test_stands_name_the_species(region, truth):
    _, _, _, (species,) = pyogrio.raw.read(region.stands, columns=["species"])
    assert set(species) == set(PHENO_CLASS_NAMES)


def test_catalog_is_valid_stac_and_opens_for_the_bands(region):
    assert validate_catalog(region.catalog) == 1 + 1 + 3 * SCENES_PER_SEASON
    for path in region.root.rglob("*.json"):
        assert str(region.root) not in path.read_text(), path
    catalog = Catalog.open(str(region.catalog), PHENO_BANDS, SPEC.crs)
    assert len(catalog) == 3 * SCENES_PER_SEASON
    assert all(ref.mask is not None for ref in catalog.items)
    summer = Catalog.open(
        str(region.catalog), PHENO_BANDS, SPEC.crs, start="2023-06-01", end="2023-08-31"
    )
    assert summer.items[0].id == region.hazy_scene  # what a "first" mosaic reads first
    with rasterio.open(region.haze) as src:
        assert src.tags()["SCENE"] == region.hazy_scene


def test_dated_scenes_per_season(scenes):
    items = [s["item"] for s in scenes]
    assert [season_of(i) for i in items] == [s for s in SEASONS for _ in range(SCENES_PER_SEASON)]
    assert all(
        i.datetime.year == 2023 and (i.datetime.hour, i.datetime.minute) == (10, 30) for i in items
    )
    platforms = [i.properties["platform"] for i in items]
    assert platforms == ["sentinel-2a", "sentinel-2b"] * (len(items) // 2)  # taking turns
    phase = {(i.datetime.timetuple().tm_yday + 5 * k) % 10 for k, i in enumerate(items)}
    assert len(phase) == 1  # each twin on its own 10-day repeat, five days apart
    covers = [i.properties["eo:cloud_cover"] for i in items]
    assert min(covers) == 0.0 and max(covers) > 10.0  # some clear, some cloudy
    for s in scenes:  # cloud cover counts the marked clouds only
        scl = s["scl"][::2, ::2]
        marked = np.isin(scl, (8, 9)).sum() / (scl != 0).sum()
        assert s["item"].properties["eo:cloud_cover"] == pytest.approx(100 * marked, abs=0.01)


def test_every_mapped_pixel_has_clear_views_in_every_season(scenes, truth):
    mapped = truth.labels != NODATA_CLASS
    for season in SEASONS:
        views = [s for s in scenes if season_of(s["item"]) == season]
        clear = sum((s["clear"] & np.isfinite(s["refl"][0])).astype(int) for s in views)
        assert clear[mapped].min() >= MIN_CLEAR[season] >= 2, season
        assert any(s["clear"][mapped].mean() < 0.9 for s in views), season  # yet clouds fall


def season_mean(scenes, season, visits=None):
    """Per pixel, the mean of the clear views of ``season``, haze-free if ``visits``
    are given (each view without its own haze): (4, H, W)."""
    total, count = 0.0, 0
    for s in scenes:
        if season_of(s["item"]) == season:
            keep = s["clear"]
            haze = None if visits is None else visits[s["item"].id].haze
            if haze is not None:
                keep = keep & (haze[: SPEC.height, : SPEC.width] == 0)
            total = total + np.where(keep, s["refl"], 0.0)
            count = count + keep
    assert count[np.isfinite(scenes[0]["refl"][0])].min() >= 1  # every mapped pixel has a view
    return total / np.maximum(count, 1)


def test_summer_separates_texture_only_and_other_seasons_time(scenes, truth, visits):
    summer = season_mean(scenes, "summer", visits)  # every pixel keeps a clear, haze-free view

    def mean(image, cls, where=True):
        return image[:, (truth.labels == cls) & where].mean(axis=1)

    for a, b in ((SPRUCE, LARCH), (BEECH, PINE)):  # same texture, different phenology
        diff = mean(summer, a) - mean(summer, b)
        assert np.abs(diff).max() < 0.005, (a, b, diff)
    for season in ("spring", "autumn"):
        image = season_mean(scenes, season)
        for ever, decid in ((SPRUCE, LARCH), (PINE, BEECH)):
            e, d = mean(image, ever, truth.crown), mean(image, decid, truth.crown)
            assert e[3] - d[3] > 0.05, (season, e, d)
    # Texture: fine crowns decorrelate within 2 px, coarse ones do not.
    for cls, fine in ((SPRUCE, True), (LARCH, True), (BEECH, False), (PINE, False)):
        inside = (truth.labels[:, :-2] == cls) & (truth.labels[:, 2:] == cls)
        r = np.corrcoef(summer[3][:, :-2][inside], summer[3][:, 2:][inside])[0, 1]
        assert (r < 0.3) if fine else (r > 0.6), (cls, r)


def test_leaf_on_follows_the_seasons():
    assert leaf_on(75) < 0.01 and leaf_on(320) < 0.01
    assert min(leaf_on(d) for d in range(152, 244)) > 0.98


def test_haze_is_missed_by_scl_but_changes_reflectance(region, scenes, truth, visits):
    with rasterio.open(region.haze) as src:
        mask = src.read(1)
    mapped = truth.labels != NODATA_CLASS
    np.testing.assert_array_equal(mask == NODATA_CLASS, ~mapped)
    assert 0.2 <= (mask == 1).sum() / mapped.sum() <= 0.4
    visit = visits[region.hazy_scene]
    scene = next(s for s in scenes if s["item"].id == region.hazy_scene)
    unmarked = ~np.repeat(np.repeat(visit.cloud | visit.shadow, 2, axis=0), 2, axis=1)
    hazy = (mask == 1) & unmarked
    assert np.isin(scene["scl"][hazy], (4, 5)).all()  # SCL says vegetation / not vegetated
    error = scene["refl"] - reflectance(truth, visit.doy)
    assert np.nanmean(error[0][hazy]) > 0.02  # path radiance brightens blue
    assert np.nanmean(error[3][hazy]) < -0.02  # lost contrast darkens the NIR of vegetation
    clear = (mask == 0) & unmarked
    assert np.abs(np.nanmean(error[:, clear], axis=1)).max() < 0.002
    # observed = truth * T + path * (1 - T): the thickest haze lets little more than half through
    transmission = 1 - error[0][hazy] / (HAZE_PATH[0] - reflectance(truth, visit.doy)[0][hazy])
    expected = 1 - (1 - HAZE_T_MIN) * visit.haze[: SPEC.height, : SPEC.width][hazy]
    assert expected.min() == pytest.approx(HAZE_T_MIN) and expected.max() > 0.99  # thick to thin
    assert np.median(np.abs(transmission - expected)) < 0.03


def test_summer_median_is_haze_free(region, scenes, truth):
    with rasterio.open(region.haze) as src:
        hazy = src.read(1) == 1
    views = [s for s in scenes if season_of(s["item"]) == "summer"]
    forest = hazy & (truth.labels != 0) & (truth.labels != NODATA_CLASS)
    stack = np.stack([np.where(s["clear"], s["refl"], np.nan)[:, forest] for s in views])
    error = np.nanmedian(stack, axis=0) - reflectance(truth, 200)[:, forest]  # stable all summer
    first = next(s for s in views if s["item"].id == region.hazy_scene)
    hazed = first["refl"][:, forest] - reflectance(truth, 200)[:, forest]
    assert hazed[0].mean() > 0.02
    # Only the thinnest haze, within the noise of the other views, moves the median.
    assert np.abs(error.mean(axis=1)).max() < min(0.003, 0.15 * hazed[0].mean())


def test_no_pixel_is_hazy_in_two_summer_scenes(visits, region):
    summer = [v.haze > 0 for v in visits.values() if v.season == "summer" and v.haze is not None]
    assert len(summer) == 2 and not np.any(summer[0] & summer[1])
    others = [v for v in visits.values() if v.season != "summer" and v.haze is not None]
    assert len(others) == 1


def test_odd_sized_region_pads_to_the_20m_grid():
    truth = synthesize_phenology(SampleSpec(width=65, height=49, stand_px=24))
    visit = plan_year(truth)[0]
    scene = acquire(truth, visit)
    assert scene.assets["blue"].data.shape == (1, 50, 66)
    assert scene.assets["scl"].data.shape == (1, 25, 33)
    assert scene.datetime == dt.datetime(
        2023, 3, scene.datetime.day, 10, 30, scene.datetime.second, tzinfo=dt.UTC
    )


def test_same_spec_writes_the_same_bytes(region, tmp_path):
    again = write_phenology_region(tmp_path / "again", SPEC)
    assert again.hazy_scene == region.hazy_scene
    assert tree(again.root) == tree(region.root)
