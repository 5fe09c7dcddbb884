import os
import subprocess
import sys

import pytest
import yaml

from jobs.config import load_predict_config
from jobs.errors import ConfigError
from jobs.trainconfig import load_train_config

GOOD = {
    "image": "image.tif",
    "labels": "labels.tif",
    "output": "model",
    "bands": ["blue", "green", "red", "nir"],
    "classes": [{"name": "water", "color": "#0000ff"}, {"name": "land", "color": "#ffff00"}],
    "training": {"max_seconds": 10},
}


def _write(tmp_path, doc) -> str:
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def test_good_config_resolves_paths_against_its_folder(tmp_path):
    spec = load_train_config(_write(tmp_path, GOOD))
    assert spec.image == tmp_path / "image.tif" and spec.output == tmp_path / "model"
    assert spec.class_names == ("water", "land") and spec.max_seconds == 10
    assert spec.model_config().in_bands == 4


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"training": {"batch_sise": 4}}, r"training\.batch_sise: unknown field"),
        ({"training": {"lr": -1}}, r"training\.lr: Input should be greater than 0"),
        ({"classes": [{"name": "water", "color": "blue"}] * 2}, r"classes\.0\.color: .*'#rrggbb'"),
        ({"bands": ["red", "red"]}, r"bands: .*\['red'\] listed twice"),
        ({"model": {"depth": 9}}, r"model\.depth: Input should be less than or equal to 6"),
    ],
)
def test_wrong_field_is_named(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load_train_config(_write(tmp_path, GOOD | change))


def test_missing_field_is_named(tmp_path):
    doc = {k: v for k, v in GOOD.items() if k != "labels"}
    with pytest.raises(ConfigError, match="labels: required field is missing"):
        load_train_config(_write(tmp_path, doc))


def test_not_a_mapping_and_missing_file(tmp_path):
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="must hold a mapping"):
        load_train_config(tmp_path / "list.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_train_config(tmp_path / "nope.yaml")


def test_command_line_reports_the_field_without_traceback(tmp_path):
    path = _write(tmp_path, GOOD | {"holdout": {"east_fraction": 1.5}})
    run = subprocess.run(
        [sys.executable, "-m", "jobs.cli", "train", path], capture_output=True, text=True
    )
    assert run.returncode == 2
    assert "holdout.east_fraction" in run.stderr and "Traceback" not in run.stderr


PREDICT = {
    "catalog": "s3://bucket/catalog.json",
    "region": "region.geojson",
    "checkpoint": "s3://bucket/model.safetensors",
    "store": "s3://bucket/map.zarr",
    "grid": {"crs": "EPSG:25832", "resolution": 10, "origin": [400000, 5560000]},
}


def test_storage_endpoint_and_region_come_from_the_config(tmp_path, monkeypatch):
    monkeypatch.setenv("AWS_S3_ENDPOINT", "old-host:9000")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    for name in ("AWS_REGION", "AWS_HTTPS", "AWS_ENDPOINT_URL_S3"):  # restored after the test
        monkeypatch.delenv(name, raising=False)
    doc = PREDICT | {"storage": {"endpoint_url": "http://127.0.0.1:8333", "region": "eu-central-1"}}
    spec = load_predict_config(_write(tmp_path, doc))
    assert os.environ["AWS_ENDPOINT_URL"] == "http://127.0.0.1:8333"
    assert os.environ["AWS_REGION"] == "eu-central-1"
    assert "AWS_S3_ENDPOINT" not in os.environ  # the config's endpoint wins
    assert spec.setup.store == "s3://bucket/map.zarr"


def test_credentials_in_a_config_are_refused(tmp_path):
    doc = PREDICT | {"storage": {"aws_secret_access_key": "abc"}}
    with pytest.raises(ConfigError, match=r"storage: .*credentials are not read from configs"):
        load_predict_config(_write(tmp_path, doc))


def test_a_bucket_on_its_own_service(tmp_path, monkeypatch):
    """Its endpoint from the config, into the variables every reader uses; never keys."""
    for name in ("STATEMAP_BUCKET_EODATA_ENDPOINT_URL", "STATEMAP_BUCKET_EODATA_REGION"):
        monkeypatch.delenv(name, raising=False)  # restored after the test
    buckets = {"eodata": {"endpoint_url": "https://eodata.example.eu", "region": "default"}}
    load_predict_config(_write(tmp_path, PREDICT | {"storage": {"buckets": buckets}}))
    assert os.environ["STATEMAP_BUCKET_EODATA_ENDPOINT_URL"] == "https://eodata.example.eu"
    assert os.environ["STATEMAP_BUCKET_EODATA_REGION"] == "default"
    keyed = {"eodata": {"endpoint_url": "https://e.eu", "secret_access_key": "abc"}}
    with pytest.raises(ConfigError, match=r"storage.buckets.eodata: .*STATEMAP_BUCKET_<NAME>_"):
        load_predict_config(_write(tmp_path, PREDICT | {"storage": {"buckets": keyed}}))
    bad = {"eodata": {"endpoint_url": "eodata.example.eu"}}
    with pytest.raises(ConfigError, match=r"storage.buckets.eodata.endpoint_url"):
        load_predict_config(_write(tmp_path, PREDICT | {"storage": {"buckets": bad}}))


def test_base_moves_every_relative_path_of_a_region_config(tmp_path):
    """``base`` (or ``--set base=...``) points a config at data elsewhere: local or
    s3://; absolute paths and URIs stay as written."""
    from jobs.config import load_region_config
    from jobs.run import output_root

    doc = {
        "name": "x",
        "base": "../data",
        "region": "sample/region.geojson",
        "catalog": "s3://bucket/catalog.json",
        "checkpoint": str(tmp_path / "model.safetensors"),
        "grid": {"crs": "EPSG:25832", "resolution": 10, "origin": [0, 0]},
        "output": {"stores": "runs/stores", "maps": "runs/maps"},
    }
    (tmp_path / "configs").mkdir()
    path = tmp_path / "configs" / "x.yaml"
    path.write_text(yaml.safe_dump(doc))
    config = load_region_config(path)
    base = config.root(path)
    assert base == str(tmp_path / "data")
    setup = config.run_spec(base, store="s").setup
    assert setup.region == str(tmp_path / "data" / "sample" / "region.geojson")
    assert setup.catalog == "s3://bucket/catalog.json"
    assert setup.checkpoint == str(tmp_path / "model.safetensors")
    assert output_root(config.output.maps, base) == str(tmp_path / "data" / "runs" / "maps")

    moved = load_region_config(path, ["base=s3://shared/demo"])
    assert moved.root(path) == "s3://shared/demo"
    assert output_root(moved.output.stores, moved.root(path)) == "s3://shared/demo/runs/stores"
    unset = load_region_config(path, ["base=null"])
    assert unset.root(path) == str(tmp_path / "configs")


YEAR_RUN = {
    "catalog": "catalog.json",
    "region": "region.geojson",
    "checkpoint": "model.safetensors",
    "store": "map.zarr",
    "period": {"start": "2023-01-01", "end": "2023-12-31"},
    "grid": {"crs": "EPSG:25832", "resolution": 10, "origin": [0, 0]},
}


@pytest.mark.parametrize(
    ("time", "message"),
    [
        ({"compositing": "max"}, r"time\.compositing: Input should be 'first', 'median'"),
        ({"percentile": 101}, r"time\.percentile: Input should be less than or equal to 100"),
        ({"periods": [{"name": "a", "start": "02-30", "end": "03-31"}]}, r"'02-30' is not a date"),
        ({"periods": [{"name": "a b", "start": "01-01", "end": "03-31"}]}, r"periods\.0\.name"),
        ({"fill": "nearest"}, r"time\.fill: Input should be 'nodata' or 'neighbour'"),
    ],
)
def test_time_section_is_checked_at_the_boundary(tmp_path, time, message):
    path = tmp_path / "predict.yaml"
    path.write_text(yaml.safe_dump(YEAR_RUN | {"time": time}))
    with pytest.raises(ConfigError, match=message):
        load_predict_config(path)


def test_a_run_carries_only_the_time_settings_it_sets(tmp_path):
    path = tmp_path / "predict.yaml"
    path.write_text(yaml.safe_dump(YEAR_RUN | {"time": {"fill": "neighbour", "min_clear": 2}}))
    assert load_predict_config(path).setup.time == (("min_clear", 2), ("fill", "neighbour"))
    path.write_text(yaml.safe_dump(YEAR_RUN))
    assert load_predict_config(path).setup.time == ()


def test_reads_in_flight_reach_the_readers(tmp_path):
    spec = load_predict_config(_write(tmp_path, PREDICT))
    assert (spec.setup.tiles_in_flight, spec.setup.requests_in_flight) == (8, 32)
    doc = PREDICT | {"run": {"tiles_in_flight": 16, "requests_in_flight": 96,
                             "handles_per_file": 1}}  # fmt: skip
    setup = load_predict_config(_write(tmp_path, doc)).setup
    assert (setup.tiles_in_flight, setup.requests_in_flight, setup.handles_per_file) == (16, 96, 1)
    with pytest.raises(ConfigError, match=r"run\.requests_in_flight: .*greater than or equal to 1"):
        load_predict_config(_write(tmp_path, PREDICT | {"run": {"requests_in_flight": 0}}))


def test_mask_dilation_reaches_the_run_and_is_bounded(tmp_path):
    spec = load_predict_config(_write(tmp_path, PREDICT | {"mask": {"dilate_m": 60}}))
    assert spec.setup.overrides.dilate_m == 60.0
    assert load_predict_config(_write(tmp_path, PREDICT)).setup.overrides.dilate_m is None
    with pytest.raises(ConfigError, match=r"mask\.dilate_m: Input should be greater than"):
        load_predict_config(_write(tmp_path, PREDICT | {"mask": {"dilate_m": -1}}))
