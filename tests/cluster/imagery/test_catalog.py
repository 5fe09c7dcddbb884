"""The catalog: which items meet a tile, in which order, with which bands."""

import itertools
import json
import pickle
import shutil
from pathlib import Path

import pystac
import pytest
import shapely
from rasterio.warp import transform_geom

from cluster.errors import ClusterError
from cluster.imagery.catalog import Catalog
from cluster.imagery.providers import SCL_INVALID
from cluster.sample.catalog import ORTHO_COLLECTION, S2_COLLECTION, write_region
from cluster.sample.scene import BANDS, SampleSpec
from cluster.tiles.grid import Grid, iter_tiles
from cluster.tiles.region import Region, load_region

SPEC = SampleSpec(width=256, height=256, stand_px=64)
S2 = [S2_COLLECTION]


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    return write_region(tmp_path_factory.mktemp("catalog"), SPEC)


@pytest.fixture(scope="module")
def uri(region) -> str:
    return str(region.catalog)


@pytest.fixture(scope="module")
def stac_items(uri) -> dict[str, pystac.Item]:
    return {i.id: i for i in pystac.Catalog.from_file(uri).get_items(recursive=True)}


@pytest.fixture
def copy(region, tmp_path) -> Path:
    """A private copy of the sample tree, for tests that edit JSON."""
    return Path(shutil.copytree(region.root, tmp_path / "copy"))


def item_files(root: Path, collection: str) -> list[Path]:
    return sorted((root / collection).glob("*/*.json"))


def edit(path: Path, **properties) -> None:
    doc = json.loads(path.read_text())
    doc["properties"].update(properties)
    path.write_text(json.dumps(doc))


def ids(refs) -> list[str]:
    return [r.id for r in refs]


def test_items_for_is_exactly_the_intersecting_footprints(uri, region, stac_items):
    catalog = Catalog.open(uri, BANDS, SPEC.crs)
    assert len(catalog) == len(stac_items) == 8
    grid = Grid.covering(SPEC.crs, SPEC.bounds, SPEC.resolution, 48, halo=8)
    # Brute force, straight from the STAC JSON: footprint and box share area.
    footprints = {
        i.id: shapely.geometry.shape(transform_geom("EPSG:4326", SPEC.crs, i.geometry))
        for i in stac_items.values()
    }
    seen = set()
    for tile in iter_tiles(grid, load_region(region.boundary, SPEC.crs)):
        box = shapely.box(*grid.tile_bounds(tile, halo=True))
        expected = {k for k, f in footprints.items() if f.intersection(box).area > 1.0}
        got = ids(catalog.items_for(grid.tile_bounds(tile, halo=True)))
        assert set(got) == expected, tile.id
        assert got == [r.id for r in catalog.items if r.id in expected], "not in mosaic order"
        seen.add(tuple(got))
    assert len(seen) > 4  # the tiles really see different item sets
    assert catalog.items_for((0.0, 0.0, 10.0, 10.0)) == []


def test_touching_is_not_meeting(uri):
    catalog = Catalog.open(uri, BANDS, SPEC.crs, collections=[ORTHO_COLLECTION])
    x0, _, _, y0 = SPEC.bounds
    assert catalog.items_for((x0 - 100, y0, x0, y0 + 100)) == []  # shares a corner only
    assert ids(catalog.items_for((x0 - 100, y0 - 100, x0 + 1, y0))) == ["ortho_00"]


def test_mosaic_order_least_cloud_then_newest_then_id(uri, stac_items):
    refs = Catalog.open(uri, BANDS, SPEC.crs).items
    keys = [(r.cloud_cover or 0.0, r.datetime) for r in refs]
    for (c1, d1), (c2, d2) in itertools.pairwise(keys):
        assert c1 < c2 or (c1 == c2 and d1 >= d2)
    s2 = [r for r in refs if r.collection == S2_COLLECTION]
    assert [r.cloud_cover for r in s2] == sorted(
        stac_items[r.id].properties["eo:cloud_cover"] for r in s2
    )
    # Orthophotos have no cloud cover: counted as clear, after the newer clear scenes.
    assert ids(refs) == [
        "S2B_SAMPLE2_20230708_0_L2A",
        "S2B_SAMPLE0_20230608_0_L2A",
        "ortho_11",
        "ortho_10",
        "ortho_01",
        "ortho_00",
        "S2B_SAMPLE3_20230827_0_L2A",
        "S2B_SAMPLE1_20230627_0_L2A",
    ]
    assert refs[2].datetime == "2023-05-17T09:58:00Z" and refs[2].cloud_cover is None


def test_mosaic_order_ties_break_on_id(copy):
    for path in item_files(copy, S2_COLLECTION):
        edit(path, **{"eo:cloud_cover": 1.0, "datetime": "2023-07-01T10:00:00Z"})
    refs = Catalog.open(str(copy / "catalog.json"), BANDS, SPEC.crs, collections=S2).items
    assert ids(refs) == sorted(ids(refs))
    again = Catalog.open(str(copy / "catalog.json"), BANDS, SPEC.crs, collections=S2).items
    assert again == refs


def test_date_range_is_inclusive(uri):
    def opened(start, end):
        return sorted(ids(Catalog.open(uri, BANDS, SPEC.crs, start=start, end=end).items))

    assert opened("2023-06-27", "2023-07-08") == [
        "S2B_SAMPLE1_20230627_0_L2A",
        "S2B_SAMPLE2_20230708_0_L2A",
    ]
    # A bare end date takes in its whole day; a datetime end is exact.
    assert len(opened("2023-07-08", "2023-07-08")) == 1
    with pytest.raises(ClusterError, match="none of its 8 items pass"):
        opened("2023-07-08T00:00:00Z", "2023-07-08T10:30:05Z")
    assert opened("2023-07-08T10:30:06Z", "2023-07-08T10:30:06Z") == ["S2B_SAMPLE2_20230708_0_L2A"]
    assert len(opened(None, "2023-05-31")) == 4  # the orthophotos
    assert len(opened("2023-06-01", None)) == 4  # the scenes


def test_cloud_filter_keeps_items_without_cloud_cover(uri):
    refs = Catalog.open(uri, BANDS, SPEC.crs, max_cloud_cover=3).items
    assert all(r.cloud_cover is None or r.cloud_cover <= 3 for r in refs)
    assert "S2B_SAMPLE1_20230627_0_L2A" not in ids(refs) and len(refs) == 7
    assert len(Catalog.open(uri, BANDS, SPEC.crs, max_cloud_cover=0, collections=S2)) == 2


def test_filters_leaving_nothing_are_refused(uri):
    with pytest.raises(ClusterError, match=r"none of its 8 items pass") as err:
        Catalog.open(uri, BANDS, SPEC.crs, start="2024-01-01", max_cloud_cover=10)
    assert uri in str(err.value) and "2024-01-01" in str(err.value) and "<= 10" in str(err.value)
    with pytest.raises(ClusterError, match=r"collections=\['landsat'\]"):
        Catalog.open(uri, BANDS, SPEC.crs, collections=["landsat"])


def test_duplicates_are_dropped(copy):
    # One item linked twice from its collection, and again from a mirror collection.
    s2 = copy / S2_COLLECTION / "collection.json"
    doc = json.loads(s2.read_text())
    first = next(link for link in doc["links"] if link["rel"] == "item")
    doc["links"].append(dict(first))
    s2.write_text(json.dumps(doc))
    item_dir = (s2.parent / first["href"]).parent
    shutil.copytree(item_dir, copy / "mirror" / item_dir.name)
    links = [link for link in doc["links"] if link["rel"] in ("root", "parent")]
    links.append(dict(first))
    mirror = doc | {"id": "mirror", "links": links}
    (copy / "mirror" / "collection.json").write_text(json.dumps(mirror))
    root = json.loads((copy / "catalog.json").read_text())
    root["links"].append({"rel": "child", "href": "./mirror/collection.json"})
    (copy / "catalog.json").write_text(json.dumps(root))
    assert (
        sum(
            1
            for _ in pystac.Catalog.from_file(str(copy / "catalog.json")).get_items(recursive=True)
        )
        == 10
    )
    refs = Catalog.open(str(copy / "catalog.json"), BANDS, SPEC.crs).items
    assert len(refs) == 8 and len(set(ids(refs))) == 8
    refs = Catalog.open(str(copy / "catalog.json"), BANDS, SPEC.crs, collections=S2).items
    assert len(refs) == 4


def test_band_sources_for_both_layouts(uri):
    refs = Catalog.open(uri, ["red", "nir", "blue"], SPEC.crs).items
    ortho = next(r for r in refs if r.collection == ORTHO_COLLECTION)
    assert [(b.asset, b.band_index) for b in ortho.bands] == [
        ("image", 1),
        ("image", 4),
        ("image", 3),
    ]
    assert all(b.scale == 1 / 400 and b.offset == 0 and b.nodata == 0 for b in ortho.bands)
    assert ortho.mask is None
    s2 = next(r for r in refs if r.collection == S2_COLLECTION)
    assert [(b.asset, b.band_index) for b in s2.bands] == [("red", 1), ("nir", 1), ("blue", 1)]
    assert all((b.scale, b.offset, b.nodata) == (1e-4, -0.1, 0) for b in s2.bands)
    assert s2.mask.asset == "scl" and s2.mask.invalid == SCL_INVALID
    for ref in refs:
        for href in [b.href for b in ref.bands] + ([ref.mask.href] if ref.mask else []):
            assert Path(href).is_absolute() and Path(href).is_file()
    # By eo:bands name too, and case-insensitively.
    s2 = Catalog.open(uri, ["B04", "SWIR16"], SPEC.crs, collections=S2).items[0]
    assert [b.asset for b in s2.bands] == ["red", "swir16"]


def test_a_band_the_items_lack_is_refused_naming_item_and_band(uri):
    with pytest.raises(ClusterError) as err:
        Catalog.open(uri, ["red", "swir16"], SPEC.crs)
    message = str(err.value)
    assert "'swir16'" in message and "ortho_" in message and "collection orthophotos" in message
    assert "image (blue, green, nir, red)" in message  # what the item does have
    assert "collections=" in message  # the way out
    refs = Catalog.open(uri, ["red", "swir16"], SPEC.crs, collections=S2).items
    assert all(r.bands[1].asset == "swir16" for r in refs)


def test_sibling_crs_item_is_found_in_the_grid_crs(uri, stac_items):
    catalog = Catalog.open(uri, BANDS, "EPSG:25832", collections=S2)
    (sibling,) = [i for i in stac_items.values() if i.properties["proj:code"] == "EPSG:32632"]
    ref = next(r for r in catalog.items if r.id == sibling.id)
    # Its footprint lands where its pixels are (the two CRSs differ by < 1 m).
    footprint = shapely.from_wkb(ref.footprint_wkb)
    bbox = shapely.box(*sibling.assets["red"].extra_fields["proj:bbox"])
    assert footprint.symmetric_difference(bbox).area < 1e-3 * bbox.area
    _, y0, x1, _ = bbox.bounds
    inside = (x1 - 200, y0 + 100, x1 - 100, y0 + 200)
    assert sibling.id in ids(catalog.items_for(inside))
    # In another CRS entirely, the same item is found at its projected place.
    laea = Catalog.open(uri, BANDS, "EPSG:3035", collections=S2)
    box = shapely.geometry.shape(transform_geom(SPEC.crs, "EPSG:3035", shapely.box(*inside)))
    assert sibling.id in ids(laea.items_for(box.bounds))


def test_check_covers(uri, region):
    catalog = Catalog.open(uri, BANDS, SPEC.crs)
    catalog.check_covers(load_region(region.boundary, SPEC.crs))
    far = Region(shapely.box(600_000, 5_300_000, 610_000, 5_310_000), SPEC.crs, "far.geojson")
    with pytest.raises(ClusterError, match=r"none of its 8 items .* meets region far\.geojson"):
        catalog.check_covers(far)
    with pytest.raises(ClusterError, match="EPSG:3035"):
        catalog.check_covers(Region(shapely.box(0, 0, 1, 1), "EPSG:3035"))


def test_catalog_pickles_with_its_index(uri):
    catalog = Catalog.open(uri, BANDS, SPEC.crs)
    again = pickle.loads(pickle.dumps(catalog))
    assert again.items == catalog.items
    assert again.items_for(SPEC.bounds) == catalog.items_for(SPEC.bounds)


def test_open_accepts_a_folder_and_a_collection(region):
    assert len(Catalog.open(str(region.root), BANDS, SPEC.crs)) == 8
    collection = region.root / S2_COLLECTION / "collection.json"
    assert len(Catalog.open(f"file://{collection}", BANDS, SPEC.crs)) == 4


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bands": []}, "distinct band names"),
        ({"bands": ["red", "RED"]}, "distinct band names"),
        ({"bands": "red"}, "distinct band names"),
        ({"grid_crs": "EPSG:0"}, "grid CRS 'EPSG:0'"),
        ({"start": "2023-08-01", "end": "2023-07-01"}, "after end"),
        ({"start": "last tuesday"}, "not ISO 8601"),
        ({"max_cloud_cover": 120}, "percentage"),
        ({"uri": "/nonexistent/catalog.json"}, "no such file"),
    ],
)
def test_bad_arguments_are_named(uri, kwargs, match):
    args = {"uri": uri, "bands": BANDS, "grid_crs": SPEC.crs} | kwargs
    with pytest.raises(ClusterError, match=match):
        Catalog.open(args.pop("uri"), args.pop("bands"), args.pop("grid_crs"), **args)


def test_not_stac_is_refused(tmp_path):
    (tmp_path / "catalog.json").write_text("{not json")
    with pytest.raises(ClusterError, match="cannot be read as STAC"):
        Catalog.open(str(tmp_path / "catalog.json"), BANDS, SPEC.crs)


def test_stac_api_search(monkeypatch, uri, region, stac_items):
    pystac_client = pytest.importorskip("pystac_client")
    calls = []

    class Search:
        def items(self):
            return iter(stac_items.values())

    class Client:
        def search(self, **kwargs):
            calls.append(kwargs)
            return Search()

    monkeypatch.setattr(pystac_client.Client, "open", lambda url, **kw: Client())
    area = load_region(region.boundary, SPEC.crs)
    api = "https://stac.example.org/v1"
    catalog = Catalog.open(
        api, BANDS, SPEC.crs, collections=S2, start="2023-06-01", end="2023-06-30",
        max_cloud_cover=5, region=area,
    )  # fmt: skip
    (kwargs,) = calls
    assert kwargs["collections"] == S2
    assert kwargs["datetime"] == "2023-06-01T00:00:00+00:00/2023-07-01T00:00:00+00:00"
    assert kwargs["query"] == {"eo:cloud_cover": {"lte": 5}}
    west, south, east, north = kwargs["bbox"]
    assert 7.5 < west < east < 7.7 and 50.1 < south < north < 50.2
    # The server's answer is filtered again here: June scenes of S2 only.
    assert sorted(ids(catalog.items)) == [
        "S2B_SAMPLE0_20230608_0_L2A",
        "S2B_SAMPLE1_20230627_0_L2A",
    ]
    with pytest.raises(ClusterError, match="pass region="):
        Catalog.open(api, BANDS, SPEC.crs)

    def broken(url, **kw):
        raise OSError("connection refused")

    monkeypatch.setattr(pystac_client.Client, "open", broken)
    with pytest.raises(ClusterError, match=r"STAC API search failed.*connection refused"):
        Catalog.open(api, BANDS, SPEC.crs, region=area)
