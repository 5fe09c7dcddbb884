"""s3:// alike local paths: the catalog and its COGs, the tile store and its done record.

Against a real SeaweedFS on loopback (``tests/s3server.py``): whatever is read
from or written to s3:// must equal the local run's, byte for byte, and the
credentials must appear in nothing written.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import pytest

from cluster.errors import ClusterError
from cluster.imagery.catalog import Catalog
from cluster.imagery.reader import read_window
from cluster.imagery.stacitem import ItemRef
from cluster.predict import donerecord
from cluster.predict.store import RunAttrs, StoreLayout, TileStore
from cluster.sample.catalog import write_region
from cluster.sample.scene import BANDS, CLASS_COLORS, CLASS_NAMES, SampleSpec
from cluster.storage import objstore
from cluster.storage.objstore import ObjectStoreError, S3Settings
from cluster.tiles.grid import Grid, Tile

SPEC = SampleSpec(width=256, height=256, stand_px=64)
CRS = "EPSG:25832"
TS = 8
GRID = Grid(CRS, (300000.0, 5600000.0), 10.0, TS, 2)
LAYOUT = StoreLayout(GRID, row0=3, col0=5, rows=4, cols=6)
ATTRS = RunAttrs(
    run_id="run-s3",
    checkpoint_sha256="ab" * 32,
    class_names=CLASS_NAMES,
    class_colors=CLASS_COLORS,
    software_version="0.1.0",
)


def tile_data(tile: Tile) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([tile.row, tile.col])
    classes = rng.integers(0, 4, (TS, TS), dtype=np.uint8)
    classes[0, :3] = 255
    confidence = rng.integers(0, 255, (TS, TS), dtype=np.uint8)
    confidence[classes == 255] = 255
    return classes, confidence


def local_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def assert_no_credentials(server, blobs: dict[str, bytes] | None = None) -> None:
    """Neither key, raw or as text, in any object of the bucket (or in ``blobs``)."""
    blobs = server.objects() if blobs is None else blobs
    assert blobs
    for secret in (server.secret_key, server.access_key):
        leaks = [k for k, data in blobs.items() if secret.encode() in data or secret in k]
        assert not leaks, f"a credential appears in {leaks}"


# --- without a server ----------------------------------------------------------------


def test_uris_and_gdal_paths():
    assert objstore.split_s3("s3://bkt/a/b.tif") == ("bkt", "a/b.tif")
    assert objstore.split_s3("s3://bkt") == ("bkt", "")
    assert objstore.join("s3://bkt/run.zarr/", "zarr.json") == "s3://bkt/run.zarr/zarr.json"
    assert objstore.gdal_path("s3://bkt/a/b.tif") == "/vsis3/bkt/a/b.tif"
    assert objstore.gdal_path("file:///data/x.tif") == "/data/x.tif"
    assert objstore.gdal_path("/data/x.tif") == "/data/x.tif"
    with pytest.raises(ClusterError, match="names no bucket"):
        objstore.split_s3("s3:///key")
    with pytest.raises(ClusterError, match="unknown scheme"):
        donerecord.local_path("gs://bkt/run.zarr")


@pytest.mark.parametrize(
    ("env", "endpoint"),
    [
        ({}, None),
        ({"AWS_ENDPOINT_URL": "http://127.0.0.1:8333/"}, "http://127.0.0.1:8333"),
        ({"AWS_S3_ENDPOINT": "127.0.0.1:8333", "AWS_HTTPS": "NO"}, "http://127.0.0.1:8333"),
        ({"AWS_S3_ENDPOINT": "minio:9000"}, "https://minio:9000"),
        (  # what configure_gdal leaves: GDAL's form first, as GDAL reads it
            {"AWS_S3_ENDPOINT": "h:1", "AWS_HTTPS": "NO", "AWS_ENDPOINT_URL": "http://h:1"},
            "http://h:1",
        ),
    ],
)
def test_settings_from_environment(env, endpoint):
    secret = "s3cr3t-value-never-shown"
    settings = S3Settings.from_env(
        {**env, "AWS_ACCESS_KEY_ID": "AKIDNEVERSHOWN", "AWS_SECRET_ACCESS_KEY": secret}
    )
    assert settings.endpoint_url == endpoint and settings.region == "us-east-1"
    assert settings.secret_access_key == secret
    assert secret not in repr(settings) and "AKIDNEVERSHOWN" not in repr(settings)
    assert S3Settings.from_env({"AWS_DEFAULT_REGION": "eu-west-1"}).region == "eu-west-1"
    both = {"AWS_REGION": "eu-central-1", "AWS_DEFAULT_REGION": "eu-west-1"}
    assert S3Settings.from_env(both).region == "eu-central-1"


def test_a_bucket_on_its_own_service_gets_its_own_gdal_environment(monkeypatch):
    from cluster.imagery.providers import BUCKET_ENDPOINTS
    from cluster.storage.gdalenv import bucket_env, bucket_var

    assert bucket_var("my-bucket.v2", "REGION") == "STATEMAP_BUCKET_MY_BUCKET_V2_REGION"
    for field in ("ENDPOINT_URL", "ACCESS_KEY_ID", "SECRET_ACCESS_KEY", "SESSION_TOKEN"):
        monkeypatch.delenv(bucket_var("eodata", field), raising=False)
    assert bucket_env("statemap-test") is None  # the run's own storage: nothing changes
    cdse = bucket_env("eodata", BUCKET_ENDPOINTS["eodata"])
    assert cdse.session.unsigned and cdse.session.endpoint_url == "eodata.dataspace.copernicus.eu"
    assert cdse.options == {"AWS_HTTPS": "YES", "AWS_VIRTUAL_HOSTING": "FALSE",
                            "AWS_SESSION_TOKEN": ""}  # fmt: skip
    monkeypatch.setenv(bucket_var("eodata", "ENDPOINT_URL"), "http://127.0.0.1:9000")
    monkeypatch.setenv(bucket_var("eodata", "ACCESS_KEY_ID"), "AKIDEODATA")
    monkeypatch.setenv(bucket_var("eodata", "SECRET_ACCESS_KEY"), "never-shown")
    keyed = bucket_env("eodata", BUCKET_ENDPOINTS["eodata"])
    assert not keyed.session.unsigned and keyed.options["AWS_HTTPS"] == "NO"
    assert keyed.session.credentials["aws_access_key_id"] == "AKIDEODATA"


# --- against SeaweedFS ---------------------------------------------------------------


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    return write_region(tmp_path_factory.mktemp("s3-region"), SPEC, layouts=("s2",))


@pytest.fixture(scope="module")
def remote(s3_server, region) -> str:
    """The whole sample region tree, uploaded; its s3:// prefix."""
    return s3_server.upload_tree(region.root, "regions/sample")


@pytest.mark.s3
def test_server_checks_signatures(s3_server):
    from botocore.exceptions import ClientError

    good = s3_server.client()
    good.put_object(Bucket=s3_server.bucket, Key="auth/probe", Body=b"x")
    forged = dataclasses.replace(S3Settings.from_env(), secret_access_key="not-the-secret")
    with pytest.raises(ClientError, match=r"SignatureDoesNotMatch|AccessDenied"):
        objstore.s3_client(forged).get_object(Bucket=s3_server.bucket, Key="auth/probe")
    good.delete_object(Bucket=s3_server.bucket, Key="auth/probe")


@pytest.mark.s3
def test_small_objects(s3_server, caplog):
    base = s3_server.uri("bytes")
    uri = objstore.join(base, "a/record.bin")
    assert objstore.read_bytes(uri) is None and not objstore.exists(uri)
    assert not objstore.exists_under(base)
    with caplog.at_level(logging.DEBUG, logger="cluster"):
        objstore.write_bytes_atomic(uri, b"first")
        objstore.write_bytes_atomic(uri, b"second")
    assert objstore.read_bytes(uri) == b"second" and objstore.exists(uri)
    assert objstore.exists_under(base) and objstore.exists_under(uri)
    assert not objstore.exists(objstore.join(base, "a"))  # a prefix is not an object
    assert donerecord.exists(base, "a/record.bin") and donerecord.exists(base)
    with pytest.raises(ObjectStoreError, match="s3://no-such-bucket/x") as info:
        objstore.read_bytes("s3://no-such-bucket/x")
    for secret in (s3_server.secret_key, s3_server.access_key):
        assert secret not in str(info.value) and secret not in caplog.text


@pytest.mark.s3
def test_catalog_from_s3_equals_local(region, remote):
    local = Catalog.open(str(region.catalog), BANDS, CRS)
    root = str(region.root)

    def mapped(ref: ItemRef) -> ItemRef:
        def s3(href: str) -> str:
            assert href.startswith(root + "/")
            return remote + href[len(root) :]

        bands = tuple(dataclasses.replace(b, href=s3(b.href)) for b in ref.bands)
        mask = ref.mask and dataclasses.replace(ref.mask, href=s3(ref.mask.href))
        return dataclasses.replace(ref, bands=bands, mask=mask)

    expected = [mapped(ref) for ref in local.items]
    for uri in (f"{remote}/catalog.json", remote):  # the file, or the "folder" holding it
        cat = Catalog.open(uri, BANDS, CRS)
        assert [i.id for i in cat.items] == [i.id for i in local.items]
        assert list(cat.items) == expected
        assert all(b.href.startswith("s3://") for i in cat.items for b in i.bands)
    with pytest.raises(ClusterError, match=r"no catalog.json"):
        Catalog.open(objstore.join(remote, "nothing-here"), BANDS, CRS)


@pytest.mark.s3
def test_stac_written_to_s3_reads_back(s3_server):
    import pystac

    catalog = pystac.Catalog("out", "written through S3StacIO")
    catalog.add_child(pystac.Catalog("child", "a child"))
    root = s3_server.uri("stac-out")
    catalog.normalize_hrefs(root)
    catalog.save(pystac.CatalogType.SELF_CONTAINED, stac_io=objstore.S3StacIO())
    assert sorted(s3_server.objects("stac-out")) == ["catalog.json", "child/catalog.json"]
    back = pystac.read_file(f"{root}/catalog.json", stac_io=objstore.S3StacIO())
    assert [c.id for c in back.get_children()] == ["child"]


@pytest.mark.s3
def test_read_window_from_s3_equals_local(region, remote):
    local = Catalog.open(str(region.catalog), BANDS, CRS)
    cat = Catalog.open(f"{remote}/catalog.json", BANDS, CRS)
    grid = Grid(CRS, (SPEC.bounds[0], SPEC.bounds[3]), SPEC.resolution, 64, 16)
    windows = [(SPEC.bounds, (SPEC.height, SPEC.width))]
    windows += [
        (grid.tile_bounds(t, halo=True), grid.tile_shape(halo=True))
        for t in (Tile(0, 0), Tile(1, 2), Tile(3, 3))
    ]
    for bounds, shape in windows:
        want = read_window(local.items_for(bounds), bounds, shape, CRS)
        got = read_window(cat.items_for(bounds), bounds, shape, CRS)
        assert np.isfinite(want).any()
        np.testing.assert_array_equal(got, want)  # NaN where NaN, every value exact


@pytest.mark.s3
def test_tile_store_on_s3_equals_local(s3_server, tmp_path, caplog):
    uri, local_uri = s3_server.uri("runs/run.zarr"), str(tmp_path / "run.zarr")
    written = {t: tile_data(t) for t in (Tile(3, 5), Tile(4, 7), Tile(6, 10))}
    with caplog.at_level(logging.DEBUG, logger="cluster"):
        for target in (uri, local_uri):
            store = TileStore.create_or_open(target, LAYOUT, ATTRS)
            for tile, (cls, conf) in written.items():
                store.write_tile(tile, cls, conf)
            store.mark_done([Tile(3, 5), Tile(4, 7)])
            store.mark_done([Tile(6, 10)])
    assert objstore.exists(objstore.join(uri, "zarr.json"))

    for reopened in (TileStore.open(uri), TileStore.create_or_open(uri, LAYOUT, ATTRS)):
        assert reopened.layout == LAYOUT and reopened.attrs == ATTRS
        assert set(reopened.done_tiles()) == set(written)
        for tile, (cls, conf) in written.items():
            got = reopened.read_tile(tile)
            np.testing.assert_array_equal(got[0], cls)
            np.testing.assert_array_equal(got[1], conf)
        assert (reopened.read_tile(Tile(5, 6))[0] == 255).all()
    with pytest.raises(ClusterError, match="read-only"):
        TileStore.open(uri).write_tile(Tile(3, 5), *written[Tile(3, 5)])
    with pytest.raises(ClusterError, match="holds run"):
        TileStore.create_or_open(uri, LAYOUT, dataclasses.replace(ATTRS, run_id="other"))

    # A rewrite (an actor retried) leaves the same bytes; the record survives a reopen.
    again = TileStore.open(uri, writable=True)
    again.write_tile(Tile(4, 7), *written[Tile(4, 7)])
    local_keys = local_files(Path(local_uri))
    remote_keys = s3_server.objects("runs/run.zarr")
    assert sorted(remote_keys) == sorted(local_keys)
    assert remote_keys == local_keys
    assert "statemap/done.bin" in remote_keys and "class/c/1/2" in remote_keys

    assert_no_credentials(s3_server, remote_keys)
    assert_no_credentials(s3_server, local_keys)
    for secret in (s3_server.secret_key, s3_server.access_key):
        assert secret not in caplog.text


@pytest.mark.s3
def test_store_refuses_foreign_s3_prefix(s3_server):
    s3_server.client().put_object(Bucket=s3_server.bucket, Key="notes/a.txt", Body=b"x")
    with pytest.raises(ClusterError, match="not a Zarr store"):
        TileStore.create_or_open(s3_server.uri("notes"), LAYOUT, ATTRS)
    with pytest.raises(ClusterError, match="no statemap store"):
        TileStore.open(s3_server.uri("missing.zarr"))


@pytest.mark.s3
def test_interrupted_creation_on_s3_is_finished(s3_server):
    import zarr

    uri = s3_server.uri("runs/interrupted.zarr")
    group = zarr.open_group(objstore.zarr_store(uri, read_only=False), mode="a")
    group.create_array("class", shape=LAYOUT.shape, chunks=(TS, TS), dtype="uint8")
    store = TileStore.create_or_open(uri, LAYOUT, ATTRS)
    assert TileStore.open(uri).attrs == ATTRS and store.read_tile(Tile(3, 5))[0].shape == (TS, TS)


@pytest.mark.s3
def test_server_restarts_with_its_data(s3_server):
    """What a publish test needs: the server killed outright, back on the same endpoint."""
    uri = s3_server.uri("restart/record.bin")
    objstore.write_bytes_atomic(uri, b"before")
    endpoint = s3_server.endpoint_url
    s3_server.kill()
    assert not s3_server.running
    s3_server.start()
    assert s3_server.endpoint_url == endpoint and objstore.read_bytes(uri) == b"before"
    objstore.write_bytes_atomic(uri, b"after")
    assert objstore.read_bytes(uri) == b"after"


@pytest.mark.s3
def test_no_credentials_in_any_object(s3_server, remote):
    """Last: every object the tests above left in the bucket."""
    assert_no_credentials(s3_server)


@pytest.mark.s3
def test_a_bucket_on_its_own_service_is_read_with_its_own_keys(
    s3_server, region, tmp_path, monkeypatch
):
    """The Copernicus Data Space way: items whose hrefs are s3://eodata/... on another
    S3 service than the run's own storage, with keys of its own."""
    import json
    import shutil

    from cluster.imagery.reader import AssetReadError, close_datasets
    from cluster.sample.layouts import rewrite_catalog
    from cluster.storage.gdalenv import bucket_var

    local = rewrite_catalog(region.root, tmp_path / "cdse", "cdse")
    s3_server.client().create_bucket(Bucket="eodata")
    remote = tmp_path / "remote"  # the same items, their files in s3://eodata
    shutil.copytree(tmp_path / "cdse", remote, ignore=shutil.ignore_patterns("*.jp2"))
    for path in sorted(remote.glob("*/*/*.json")):
        doc = json.loads(path.read_text())
        for asset in doc["assets"].values():
            key = f"Sentinel-2/{doc['id']}/{asset['href'].removeprefix('./')}"
            s3_server.client().upload_file(
                str(local.parent / path.parent.relative_to(remote) / asset["href"]), "eodata", key
            )
            asset["href"] = f"s3://eodata/{key}"
        path.write_text(json.dumps(doc))
    # The run's own storage is elsewhere (here: nowhere), with other keys.
    for var in ("AWS_ENDPOINT_URL", "AWS_S3_ENDPOINT"):
        monkeypatch.setenv(
            var, "http://127.0.0.1:9" if var == "AWS_ENDPOINT_URL" else "127.0.0.1:9"
        )
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "the-runs-own-key")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the-runs-own-secret")
    monkeypatch.setenv(bucket_var("eodata", "ENDPOINT_URL"), s3_server.endpoint_url)
    bounds, shape = SPEC.bounds, (SPEC.height, SPEC.width)
    want = read_window(Catalog.open(str(local), BANDS, CRS).items_for(bounds), bounds, shape, CRS)
    items = Catalog.open(str(remote / "catalog.json"), BANDS, CRS).items_for(bounds)
    assert items[0].bands[0].href.startswith("s3://eodata/Sentinel-2/")

    monkeypatch.setenv(bucket_var("eodata", "ACCESS_KEY_ID"), s3_server.access_key)
    monkeypatch.setenv(bucket_var("eodata", "SECRET_ACCESS_KEY"), s3_server.secret_key)
    got = read_window(items, bounds, shape, CRS)
    close_datasets()
    assert np.isfinite(want).mean() > 0.5
    np.testing.assert_array_equal(got, want)

    # Without keys of its own, the bucket is asked unsigned: the run's keys are not sent.
    monkeypatch.delenv(bucket_var("eodata", "SECRET_ACCESS_KEY"))
    client = s3_server.client()
    for band in items[0].bands:  # fresh keys: GDAL remembers what it read before
        key = "unsigned/" + band.href.removeprefix("s3://eodata/")
        client.copy_object(Bucket="eodata", Key=key, CopySource=band.href[5:])
    unsigned = dataclasses.replace(
        items[0], mask=None,
        bands=tuple(dataclasses.replace(b, href=b.href.replace("eodata/", "eodata/unsigned/", 1))
                    for b in items[0].bands),
    )  # fmt: skip
    with pytest.raises(
        AssetReadError,
        match=r"eodata/unsigned/.*cannot be read: Access Denied.*"
        r"STATEMAP_BUCKET_EODATA_ACCESS_KEY_ID",
    ):
        read_window([unsigned], bounds, shape, CRS)
