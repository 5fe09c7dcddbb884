"""A real `ray start --head` cluster on loopback, for the job-submission tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.netproxy import free_port

BIN = Path(sys.executable).parent


@pytest.fixture
def head_node():
    """A head node in its own temp dir, so no other Ray client finds it by accident."""
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths are capped
    gcs, dashboard = free_port(), free_port()
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


def client_env(env: dict[str, str]) -> dict[str, str]:
    """A job client's environment: token auth when `ray start` turned it on."""
    out = dict(env)
    if (Path.home() / ".ray" / "auth_token").exists():
        out["RAY_AUTH_MODE"] = "token"
    return out
