"""A regional run writing its store, maps and run record to object storage
(SeaweedFS on loopback, started by the fixture), listed back by `statemap runs`."""

from __future__ import annotations

import pytest
import ray

from jobs.cli import main
from jobs.period import Period
from jobs.run import execute, prepare
from jobs.runrecord import load_record, record_uri
from tests.jobs.regiondata import PERIOD, REGIONS, tiny_data, with_overrides

pytestmark = [pytest.mark.slow, pytest.mark.s3]


@pytest.fixture(scope="module")
def s3_ray(s3_server):
    """Ray started after the server's endpoint and keys are in the environment:
    workers get them from their own environment, never from the job."""
    ray.shutdown()  # an instance left by an earlier test lacks them
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield s3_server
    ray.shutdown()


def test_regional_run_publishes_to_object_storage(s3_ray, tmp_path, capsys):
    server = s3_ray
    source = next(p for p in REGIONS if p.stem == "sample")
    overrides = [
        *tiny_data(source, tmp_path, size=128),
        "grid.tile_size=64",
        f"output.stores={server.uri('stores')}",
        f"output.maps={server.uri('maps/sample')}",
    ]
    run = prepare(source, period=Period.parse(PERIOD), overrides=overrides)
    assert run.maps == server.uri(f"maps/sample/{run.run_id}")
    assert execute(run, progress=False) == 0

    maps = server.objects(f"maps/sample/{run.run_id}")
    for name in ("run.json", "config.yaml", "quicklook.png", "collection.json"):
        assert name in maps
    assert f"{run.run_id}_class.tif" in maps
    assert server.objects(f"stores/{run.run_id}.zarr")
    for body in [*maps.values(), *server.objects("stores").values()]:
        assert server.secret_key.encode() not in body and server.access_key.encode() not in body
    record = load_record(record_uri(run.maps))
    quicklook = server.uri(f"maps/sample/{run.run_id}/quicklook.png")
    assert record.state == "succeeded" and quicklook in record.outputs

    config = with_overrides(source, overrides, tmp_path / "s3.yaml")
    capsys.readouterr()
    assert main(["runs", str(config), "--outputs"]) == 0
    listed = capsys.readouterr().out
    assert "1 run(s) recorded" in listed and f"{run.run_id}  succeeded" in listed
    assert f"    {quicklook}" in listed

    assert execute(prepare(source, period=Period.parse(PERIOD), overrides=overrides)) == 0
    assert "already succeeded" in capsys.readouterr().out
