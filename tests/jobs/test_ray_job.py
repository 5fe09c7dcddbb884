"""A real `ray start --head` cluster on loopback and the real `ray job submit`."""

from __future__ import annotations

import subprocess
import sys

import pytest

from cluster.predict.store import TileStore
from tests.conftest import predict_config
from tests.jobs.conftest import BIN, client_env

pytestmark = pytest.mark.slow


def test_predict_job_through_ray_job_submit(trained_sample, head_node, tmp_path):
    address, env = head_node
    config = predict_config(trained_sample, tmp_path)
    run = subprocess.run(
        [
            str(BIN / "ray"),
            "job",
            "submit",
            "--address",
            address,
            "--",
            sys.executable,
            "-m",
            "jobs.predict",
            "--config",
            str(config),
            "--quiet",
        ],
        env=client_env(env),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "succeeded" in run.stdout + run.stderr
    assert "36 tiles done" in run.stdout
    store = TileStore.open(str(tmp_path / "map.zarr"))
    assert len(store.done_tiles()) == 36
