"""A node lost mid-run, on a real two-node Ray cluster on loopback.

A head and a worker node on loopback, each started with
``ray start --block`` in a session of its own, one CPU each. A run of two
actors asks one CPU per actor, so one actor lands on each node. The worker
node is SIGKILLed (every process of its session: raylet, agents, the actor)
while its actor holds tiles; the run ends on the head, and the store equals an
undisturbed run's byte for byte. The replacement the driver asks for finds no
free CPU (or lands on the dying node, not yet declared dead, and dies with it):
either way it must not hold tiles back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import ray
import torch
from ray._raylet import AuthenticationMode, get_authentication_mode

from cluster.errors import ClusterError
from cluster.predict.driver import RunSpec, run_predict
from cluster.predict.setup import TileResult
from cluster.predict.store import TileStore
from cluster.sample.catalog import SampleRegion, write_region
from cluster.sample.scene import BANDS, CLASS_COLORS, CLASS_NAMES, SampleSpec
from jobs.config import PredictConfig
from jobs.sample import predict_config
from tests.conftest import store_tree
from tests.netproxy import free_port
from unet.checkpoint import ModelCard, save_checkpoint
from unet.context import context_record
from unet.model import UNet, UNetConfig

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
SPEC = SampleSpec(seed=5, width=384, height=384, stand_px=96)  # 36 tiles of 64 px
TILES = 36
KILL_AFTER = 4  # tiles reported before the worker node is killed
# Loopback, but not 127.0.0.1, which Ray swaps for the machine's outward address
# (where nothing listens) unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, which in
# turn refuses to start a worker node. Distinct: the driver joins the head's.
HEAD_IP, WORKER_IP = "127.0.0.2", "127.0.0.3"

# The GCS declares a node dead after this many failed health checks this far
# apart: about 4.5 s after the kill here, 14 s with Ray's defaults (measured).
# A killed raylet refuses the check at once; a live but busy one has 1 s to
# answer, five times running. The driver does not wait for it: the dead actor's
# calls fail as soon as its socket closes (ActorUnavailableError, ~1-2 s). Only
# starting a new worker node waits, for the cluster to count two nodes again.
HEALTH_CHECKS = {
    "RAY_health_check_initial_delay_ms": "1000",
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_timeout_ms": "1000",
    "RAY_health_check_failure_threshold": "5",
}


def _session_pids(sid: int) -> list[int]:
    """Live processes of a session: all that one ``ray start --block`` started."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[3]) == sid and fields[0] != "Z":
            pids.append(int(proc.name))
    return pids


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


class Node:
    """One ``ray start --block``, in a session of its own so that it, and only it,
    can be killed whole."""

    def __init__(self, args: list[str], env: dict[str, str], temp: str) -> None:
        self.temp = temp
        self.log = Path(temp) / "start.log"
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [str(BIN / "ray"), "start", "--block", "--temp-dir", temp, *args, *_ports()],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 120
        while b"Ray runtime started" not in self.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                log = self.log.read_text()[-3000:]
                self.stop()
                raise RuntimeError(f"ray start failed:\n{log}")
            time.sleep(0.2)

    def pids(self) -> list[int]:
        return _session_pids(self.proc.pid)

    def kill(self) -> None:
        """SIGKILL every process of the node at once: a node lost, not shut down."""
        for _ in range(20):  # until none is left (a raylet may be starting a worker)
            pids = self.pids()
            if not pids:
                break
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.1)
        self.proc.wait()

    def stop(self) -> None:
        """``ray start --block`` stops its processes on SIGTERM; what is left is killed."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)
        self.kill()
        shutil.rmtree(self.temp, ignore_errors=True)


def _ports() -> list[str]:
    """A node's own ports: Ray's fixed defaults would meet another node (or another
    test's cluster) on this machine."""
    names = ("node-manager", "object-manager", "metrics-export", "dashboard-agent-listen",
             "dashboard-agent-grpc", "runtime-env-agent")  # fmt: skip
    return [arg for name in names for arg in (f"--{name}-port", str(free_port()))]


class Cluster:
    """A head and a worker node on loopback addresses, one CPU each; the worker
    can be killed and started again."""

    def __init__(self) -> None:
        self.port = free_port()
        self.address = f"{HEAD_IP}:{self.port}"
        # The nodes take this process's auth mode, which Ray fixed when it first
        # started or joined a cluster here (token if ~/.ray/auth_token existed, or it
        # made one) and which RAY_AUTH_MODE set later would not change.
        token = get_authentication_mode() == AuthenticationMode.TOKEN
        self.auth = "token" if token else "disabled"
        self.env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {
            "PATH": f"{BIN}:{os.environ['PATH']}",
            "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",  # 0 refuses to start a worker node
            "RAY_AUTH_MODE": self.auth,
            "RAY_USAGE_STATS_ENABLED": "0",
            **HEALTH_CHECKS,
        }
        self.nodes: list[Node] = []
        head = ["--head", "--node-ip-address", HEAD_IP, "--port", str(self.port),
                "--ray-client-server-port", str(free_port()), "--include-dashboard=false",
                "--dashboard-port", str(free_port())]  # fmt: skip
        self.head = self._start(head)
        self.worker: Node | None = None
        self.killed_at = 0.0

    def _start(self, args: list[str]) -> Node:
        temp = tempfile.mkdtemp(prefix="rayn", dir="/tmp")  # short: socket paths are capped
        common = ["--num-cpus", "1", "--object-store-memory", str(100 * 2**20),
                  "--disable-usage-stats"]  # fmt: skip
        node = Node([*args, *common], self.env, temp)
        self.nodes.append(node)
        return node

    def ensure_worker(self) -> None:
        """A live worker node, registered with the cluster (two CPUs in all)."""
        if self.worker is None:
            self.worker = self._start(["--address", self.address, "--node-ip-address", WORKER_IP])
        deadline = time.monotonic() + 60
        while sum(n["Alive"] for n in ray.nodes()) != 2 or ray.cluster_resources().get("CPU") != 2:
            assert time.monotonic() < deadline, ray.nodes()
            time.sleep(0.2)

    def kill_worker(self) -> list[int]:
        """SIGKILL the worker node whole; returns the pids of the Predictor actors it had."""
        assert self.worker is not None
        actors = [p for p in self.worker.pids() if _cmdline(p).startswith(b"ray::Predictor")]
        self.worker.kill()
        self.worker = None
        self.killed_at = time.monotonic()
        return actors

    def wait_worker_dead(self) -> float:
        """Seconds from the kill until the GCS declares the node dead."""
        while sum(n["Alive"] for n in ray.nodes()) != 1:
            assert time.monotonic() < self.killed_at + 60, ray.nodes()
            time.sleep(0.1)
        return time.monotonic() - self.killed_at

    def stop(self) -> None:
        for node in reversed(self.nodes):
            node.stop()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    ray.shutdown()  # another module's local instance
    made = Cluster()
    try:
        ray.init(
            address=made.address,
            _node_ip_address=HEAD_IP,  # the head's raylet, which survives
            log_to_driver=False,
        )
        made.ensure_worker()
        yield made
    finally:
        ray.shutdown()
        made.stop()


@pytest.fixture(scope="module")
def sample(tmp_path_factory) -> tuple[Path, SampleRegion]:
    """The generated region and an untrained small U-Net: a map that is
    deterministic is all a byte-for-byte comparison needs."""
    out = tmp_path_factory.mktemp("nodeloss")
    region = write_region(out / "sample", SPEC, layouts=("s2",))
    torch.manual_seed(0)
    config = UNetConfig(in_bands=4, num_classes=4, base_width=8, depth=3)
    card = ModelCard(
        config=config,
        bands=BANDS,
        mean=(0.05, 0.07, 0.07, 0.28),
        std=(0.02, 0.03, 0.04, 0.1),
        class_names=CLASS_NAMES,
        class_colors=CLASS_COLORS,
        resolution=SPEC.resolution,
    )
    model = UNet(config)
    card.extra["context"] = context_record(model, None)  # what the run's halo is held to
    save_checkpoint(out / "model" / "checkpoint.safetensors", model, card)
    return out, region


def _spec(sample: tuple[Path, SampleRegion], folder: Path) -> RunSpec:
    """Two actors (one CPU each: one per node), batches of two, the done record
    written at every batch."""
    out, region = sample
    doc = predict_config(region, SPEC, tile_size=64)
    doc["store"] = str(folder / "map.zarr")
    doc["run"] = {"batch_size": 2, "actors": 2, "flush_seconds": 0}
    return PredictConfig.model_validate(doc).to_spec(out)


@pytest.fixture(scope="module")
def reference(cluster, sample, tmp_path_factory) -> Path:
    """An undisturbed run on both nodes."""
    folder = tmp_path_factory.mktemp("reference")
    cluster.ensure_worker()
    summary = run_predict(_spec(sample, folder), progress=False)
    assert summary.done == TILES and not summary.failed and not summary.lost
    return folder / "map.zarr"


def _killer(cluster: Cluster, killed: list[int]) -> Callable[[TileResult], None]:
    """An ``on_result`` that kills the worker node once KILL_AFTER tiles are in:
    the run still has most batches to send, so the worker's actor holds some."""
    seen = []

    def on_result(result: TileResult) -> None:
        seen.append(result)
        if len(seen) == KILL_AFTER:
            killed.extend(cluster.kill_worker())
            assert killed, "no Predictor actor on the worker node"

    return on_result


def test_lost_node_is_survived(cluster, sample, reference, tmp_path):
    """The worker node dies with its actor's batches in flight: they go to the
    head's actor, the run completes, and the store is the undisturbed run's."""
    cluster.ensure_worker()
    killed: list[int] = []
    start = time.perf_counter()
    summary = run_predict(
        _spec(sample, tmp_path), progress=False, on_result=_killer(cluster, killed)
    )
    print(f"run with a node lost: {time.perf_counter() - start:.1f} s; {summary.lost}")
    assert killed
    assert summary.done == TILES and not summary.failed
    # The actor's death, seen at once (its socket closed), not when the GCS declares
    # the node dead; a replacement Ray placed on the node meanwhile dies with it.
    assert summary.lost and "holding 0 tiles" not in summary.lost[0]
    print(f"node declared dead {cluster.wait_worker_dead():.1f} s after the kill")
    assert len(TileStore.open(str(tmp_path / "map.zarr")).done_tiles()) == TILES
    assert store_tree(tmp_path / "map.zarr") == store_tree(reference)


def test_actors_lost_past_the_limit_stop_the_run_and_keep_what_is_done(
    cluster, sample, reference, tmp_path
):
    """No replacements allowed: the lost node stops the run, which says why and how
    far it got; the tiles done are recorded, and a rerun resumes to the same store."""
    cluster.ensure_worker()
    killed: list[int] = []
    spec = dataclasses.replace(_spec(sample, tmp_path), actor_replacements=0)
    with pytest.raises(ClusterError, match=r"actor \d died holding [1-9]") as caught:
        run_predict(spec, progress=False, on_result=_killer(cluster, killed))
    message = str(caught.value)
    print(message)
    assert killed and "after 0 replacements" in message and "rerun resumes" in message
    done = len(TileStore.open(str(tmp_path / "map.zarr")).done_tiles())
    assert KILL_AFTER <= done < TILES and f"the {done} tiles it wrote" in message

    cluster.ensure_worker()
    summary = run_predict(_spec(sample, tmp_path), progress=False)
    assert summary.skipped == done and summary.done == TILES - done and not summary.failed
    assert store_tree(tmp_path / "map.zarr") == store_tree(reference)
