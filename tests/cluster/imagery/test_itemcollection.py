"""A catalog given as one ItemCollection or ndjson file selects exactly what the static
catalog of the same items selects."""

import json
import os

import pystac
import pytest

from cluster.errors import ClusterError
from cluster.imagery.catalog import Catalog
from cluster.sample.catalog import S2_COLLECTION, write_region
from cluster.sample.scene import BANDS, SampleSpec

SPEC = SampleSpec(width=256, height=256, stand_px=64)


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    return write_region(tmp_path_factory.mktemp("itemcollection"), SPEC)


@pytest.fixture(scope="module")
def docs(region) -> list[dict]:
    """The sample's items as JSON, asset hrefs relative to the catalog's folder."""
    out = []
    for item in pystac.Catalog.from_file(str(region.catalog)).get_items(recursive=True):
        doc = item.to_dict(include_self_link=False)
        for asset in doc["assets"].values():
            absolute = pystac.utils.make_absolute_href(asset["href"], item.get_self_href())
            asset["href"] = os.path.relpath(absolute, region.root)
        doc["links"] = []
        out.append(doc)
    return out


def write(path, text):
    path.write_text(text)
    return str(path)


def test_featurecollection_and_ndjson_equal_the_static_catalog(region, docs):
    static = Catalog.open(str(region.catalog), BANDS, SPEC.crs)
    root = region.root  # relative hrefs resolve against the file's folder
    collection = {"type": "FeatureCollection", "features": docs}
    type_last = {"features": docs, "type": "FeatureCollection"}  # the rare order: parsed whole
    sources = [
        write(root / "items.json", json.dumps(collection, indent=2)),
        write(root / "items.ndjson", "\n".join(json.dumps(d) for d in docs) + "\n\n"),
        write(root / "last.geojson", json.dumps(type_last)),
    ]
    for uri in sources:
        again = Catalog.open(uri, BANDS, SPEC.crs)
        assert again.items == static.items, uri
    s2 = Catalog.open(sources[1], BANDS, SPEC.crs, collections=[S2_COLLECTION], start="2023-06-01")
    assert [r.id for r in s2.items] == [
        r.id for r in Catalog.open(str(region.catalog), BANDS, SPEC.crs,
                                   collections=[S2_COLLECTION], start="2023-06-01").items
    ]  # fmt: skip
    assert all(os.path.isfile(b.href) for r in static.items for b in r.bands)


def test_broken_entries_are_named(tmp_path, docs):
    lines = [json.dumps(docs[0]), "{not json", json.dumps(docs[1])]
    with pytest.raises(ClusterError, match=r"line 2 is not JSON"):
        Catalog.open(write(tmp_path / "a.ndjson", "\n".join(lines)), BANDS, SPEC.crs)
    collection = {"type": "FeatureCollection", "features": [docs[0], {"type": "Catalog"}]}
    with pytest.raises(ClusterError, match=r"feature 1 is a Catalog, not a STAC item"):
        Catalog.open(write(tmp_path / "b.json", json.dumps(collection)), BANDS, SPEC.crs)
    with pytest.raises(ClusterError, match="no such file"):
        Catalog.open(str(tmp_path / "absent.ndjson"), BANDS, SPEC.crs)
    no_geometry = {**docs[0], "geometry": None, "bbox": None}
    with pytest.raises(ClusterError, match=f"item {docs[0]['id']} has neither geometry nor bbox"):
        Catalog.open(write(tmp_path / "c.ndjson", json.dumps(no_geometry)), BANDS, SPEC.crs)
