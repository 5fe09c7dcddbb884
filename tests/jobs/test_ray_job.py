"""A real `ray start --head` cluster on loopback and the real `ray job submit`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from cluster.store import TileStore
from tests.conftest import predict_config

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def head_node():
    """A head node in its own temp dir, so no other Ray client finds it by accident."""
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths are capped
    gcs, dashboard = _free_port(), _free_port()
    env = os.environ | {
        "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
        "PATH": f"{BIN}:{os.environ['PATH']}",
    }
    env.pop("RAY_ADDRESS", None)
    subprocess.run(
        [
            str(BIN / "ray"),
            "start",
            "--head",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(gcs),
            "--dashboard-host",
            "127.0.0.1",
            "--dashboard-port",
            str(dashboard),
            "--num-cpus",
            "2",
            "--temp-dir",
            temp,
            "--disable-usage-stats",
        ],
        check=True,
        env=env,
        capture_output=True,
        timeout=120,
    )
    try:
        yield f"http://127.0.0.1:{dashboard}", env
    finally:
        subprocess.run(
            [str(BIN / "ray"), "stop", "--force"], env=env, capture_output=True, timeout=120
        )
        shutil.rmtree(temp, ignore_errors=True)


def test_predict_job_through_ray_job_submit(trained_sample, head_node, tmp_path):
    address, env = head_node
    config = predict_config(trained_sample, tmp_path)
    client_env = dict(env)
    if (Path.home() / ".ray" / "auth_token").exists():  # `ray start` turned token auth on
        client_env["RAY_AUTH_MODE"] = "token"
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
        env=client_env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "succeeded" in run.stdout + run.stderr
    assert "36 tiles done" in run.stdout
    store = TileStore.open(str(tmp_path / "map.zarr"))
    assert len(store.done_tiles()) == 36
