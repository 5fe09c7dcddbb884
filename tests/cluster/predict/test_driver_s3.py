"""A whole prediction run on object storage: catalog, imagery, region,
checkpoint and store all on s3:// (SeaweedFS on loopback), equal to a local run."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray

from cluster.predict.driver import run_predict
from jobs.compile import compile_to
from jobs.config import load_predict_config
from tests.conftest import config_on_s3, predict_config, store_tree

pytestmark = [pytest.mark.slow, pytest.mark.s3]


@pytest.fixture(scope="module")
def s3_ray(s3_server):
    """Ray started after the server's endpoint and keys are in the environment:
    workers get them from their own environment, never from the job."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield s3_server
    ray.shutdown()


def test_run_on_object_storage_equals_local_run(trained_sample, s3_ray, tmp_path):
    server = s3_ray
    local = predict_config(trained_sample, tmp_path / "local", run_id="same-run")
    summary = run_predict(load_predict_config(local), progress=False)
    assert summary.done == 36 and not summary.failed

    remote = config_on_s3(server, trained_sample, local, "inputs", "runs/map.zarr")
    summary = run_predict(load_predict_config(remote), progress=False)
    assert summary.done == 36 and not summary.failed

    objects = server.objects("runs/map.zarr")
    assert objects == store_tree(tmp_path / "local" / "map.zarr")
    for body in objects.values():
        assert server.secret_key.encode() not in body and server.access_key.encode() not in body

    again = run_predict(load_predict_config(remote), progress=False)  # resumes: nothing to do
    assert again.done == 0 and again.skipped == 36

    # COGs compiled from the s3:// store and published to s3:// are the local run's bytes.
    published = compile_to(server.uri("runs/map.zarr"), server.uri("runs/cogs"))
    local_cogs = compile_to(str(tmp_path / "local" / "map.zarr"), str(tmp_path / "cogs"))
    assert len(published) == len(local_cogs) >= 2
    local = {Path(p).relative_to(tmp_path / "cogs").as_posix(): Path(p) for p in local_cogs}
    assert server.objects("runs/cogs") == {key: p.read_bytes() for key, p in local.items()}
