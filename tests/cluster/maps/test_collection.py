"""The output catalog: validates offline, one item per part, assets on the COGs, classes and
projection from the COGs, run links, same bytes twice."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pystac
import pytest
import rasterio

from cluster.errors import ClusterError
from cluster.imagery.stacvalidate import validate_catalog
from cluster.maps.collection import CLASSIFICATION_SCHEMA, write_output_catalog
from cluster.maps.compile import compile_store
from cluster.predict.store import TileStore
from tests.cluster.maps.test_compile import ATTRS, LAYOUT, _fill

CHECKPOINT = "s3://models/run-a/checkpoint.pt"


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory) -> str:
    uri = str(tmp_path_factory.mktemp("store") / "run.zarr")
    _fill(TileStore.create_or_open(uri, LAYOUT, ATTRS), skip={(1, 2)})
    return uri


@pytest.fixture(scope="module")
def single(store_uri, tmp_path_factory) -> list[Path]:
    return compile_store(store_uri, tmp_path_factory.mktemp("one"))


@pytest.fixture(scope="module")
def parts(store_uri, tmp_path_factory) -> list[Path]:
    return compile_store(store_uri, tmp_path_factory.mktemp("parts"), max_part_px=600)


def write(cogs: list[Path], out: Path, store_uri: str, **kw) -> Path:
    args = {"start": "2024-04-01", "end": "2024-09-30", "config_uri": str(out / "job.yaml")}
    return write_output_catalog(
        cogs, out, run_id="run-a", store_uri=store_uri, checkpoint_uri=CHECKPOINT, **args | kw
    )


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.json"))}


@pytest.mark.parametrize("layout", ["single", "parts"])
def test_validates_offline_one_item_per_part(request, layout, store_uri, monkeypatch):
    cogs = request.getfixturevalue(layout)

    def no_network(*args, **kwargs):
        raise AssertionError("validation tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    path = write(cogs, cogs[0].parent, store_uri)
    assert path == cogs[0].parent / "collection.json"
    n_parts = sum(p.name.endswith("_class.tif") for p in cogs)
    assert n_parts == (1 if layout == "single" else 4)
    assert validate_catalog(path) == 1 + n_parts
    collection = pystac.Collection.from_file(str(path))
    items = list(collection.get_items())
    assert sorted(i.id for i in items) == sorted(
        p.name.removesuffix("_class.tif") for p in cogs if p.name.endswith("_class.tif")
    )
    if layout == "parts":
        assert {k: Path(a.get_absolute_href()).name for k, a in collection.assets.items()} == {
            "class_mosaic": "run-a_class.vrt",
            "confidence_mosaic": "run-a_confidence.vrt",
            "quality_mosaic": "run-a_quality.vrt",
        }
    else:
        assert collection.assets == {}


def test_assets_classes_and_projection_match_the_cogs(parts, store_uri):
    path = write(parts, parts[0].parent, store_uri)
    for item in pystac.Collection.from_file(str(path)).get_items():
        on_disk = json.loads(Path(item.get_self_href()).read_text())
        assert CLASSIFICATION_SCHEMA in on_disk["stac_extensions"]  # pystac migrates on read
        assert item.properties["statemap:run_id"] == "run-a"
        assert item.properties["start_datetime"] == "2024-04-01T00:00:00Z"
        assert item.properties["end_datetime"] == "2024-09-30T23:59:59Z"
        assert set(item.assets) == {"class", "confidence", "quality"}
        for key, asset in item.assets.items():
            assert asset.href.startswith("../")  # relative, beside the item folder
            cog = Path(asset.get_absolute_href())
            assert cog.is_file() and cog.name == f"{item.id}_{key}.tif"
            assert asset.media_type == "image/tiff; application=geotiff; profile=cloud-optimized"
            assert asset.roles == ["data"]
            bands = asset.extra_fields["raster:bands"]
            plain = {"nodata": 255, "data_type": "uint8", "spatial_resolution": 10.0}
            if key == "quality":
                assert [b["name"] for b in bands] == ["clear_observations", "filled"]
                assert [b.items() >= plain.items() for b in bands] == [True, True]
            else:
                assert bands == [plain]
            with rasterio.open(cog) as src:
                assert item.properties["proj:code"] == f"EPSG:{src.crs.to_epsg()}"
                assert item.properties["proj:shape"] == [src.height, src.width]
                assert item.properties["proj:transform"] == list(src.transform)[:6]
                assert item.properties["proj:bbox"] == list(src.bounds)
                lon0, lat0, lon1, lat1 = rasterio.warp.transform_bounds(
                    src.crs, "EPSG:4326", *src.bounds
                )
            assert item.bbox == pytest.approx([lon0, lat0, lon1, lat1], abs=1e-6)
        classes = item.assets["class"].extra_fields["classification:classes"]
        assert [c["name"] for c in classes] == [*ATTRS.class_names, "nodata"]
        assert [c.get("color_hint") for c in classes[:-1]] == [
            c.lstrip("#").upper() for c in ATTRS.class_colors
        ]
        assert classes[-1] == {
            "value": 255,
            "name": "nodata",
            "description": "no data",
            "nodata": True,
        }
        assert "classification:classes" not in item.assets["confidence"].extra_fields


def test_run_links(single, store_uri):
    out = single[0].parent
    path = write(single, out, store_uri)
    collection = pystac.Collection.from_file(str(path))
    for obj in [collection, *collection.get_items()]:
        links = {(lk.rel, lk.title): lk for lk in obj.links}
        store = links["derived_from", "statemap run store (Zarr)"]
        assert Path(store.get_absolute_href()) == Path(store_uri).resolve()
        assert links["via", "model checkpoint"].href == CHECKPOINT
        assert Path(links["via", "job config"].get_absolute_href()) == (out / "job.yaml").resolve()
    for json_file in out.rglob("*.json"):  # self-contained: no absolute local path
        assert (
            str(out) not in json_file.read_text() and '"rel": "self"' not in json_file.read_text()
        )


def test_same_bytes_twice(parts, store_uri, tmp_path):
    out = parts[0].parent
    first = tree(write(parts, out, store_uri).parent)
    assert tree(write(parts, out, store_uri).parent) == first


def test_period(single, store_uri, tmp_path):
    path = write(single, tmp_path / "a", store_uri, start="2024-06-15T10:00:00Z", end=None)
    (item,) = pystac.Collection.from_file(str(path)).get_items()
    assert item.properties["datetime"] == "2024-06-15T10:00:00Z"
    with pytest.raises(ClusterError, match="period"):
        write(single, tmp_path / "b", store_uri, start=None, end=None)
    with pytest.raises(ClusterError, match="before start"):
        write(single, tmp_path / "c", store_uri, start="2024-09-01", end="2024-01-01")
    with pytest.raises(ClusterError, match="ISO 8601"):
        write(single, tmp_path / "d", store_uri, start="June", end=None)


def test_missing_partner(single, store_uri, tmp_path):
    with pytest.raises(ClusterError, match="confidence"):
        write(single[:1], tmp_path, store_uri)
    with pytest.raises(ClusterError, match=r"_class\.tif"):
        write(single[1:], tmp_path, store_uri)
