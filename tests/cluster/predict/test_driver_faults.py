"""A run reading and writing object storage that misbehaves as it does under load:
5% of requests answered 503 SlowDown, 1% of connections reset, 1% of responses
stalled beyond the timeout. It completes, equal to an undisturbed run, and says
what it went through."""

from __future__ import annotations

import contextlib

import pytest
import ray

from cluster.predict.driver import run_predict
from jobs.config import load_predict_config
from tests.conftest import config_on_s3, environ, predict_config, store_tree
from tests.faultproxy import FaultProxy

pytestmark = [pytest.mark.slow, pytest.mark.s3]

TIMEOUT_S, STALL_S = 2, 6  # GDAL_HTTP_TIMEOUT, and how long a stalled response hangs


@pytest.fixture(scope="module")
def faulty(s3_server):
    """The proxy before the server, and Ray started with the run's environment on it
    (AWS_S3_ENDPOINT and AWS_HTTPS derived again from the proxy's endpoint)."""
    with contextlib.ExitStack() as stack:
        proxy = stack.enter_context(
            FaultProxy(
                s3_server.ports["s3"],
                slowdown=0.05,
                reset=0.01,
                stall=0.01,
                stall_s=STALL_S,
                seed=23,
            )
        )
        stack.enter_context(
            environ(
                AWS_ENDPOINT_URL=proxy.endpoint_url,
                AWS_S3_ENDPOINT="",
                AWS_HTTPS="",
                GDAL_HTTP_TIMEOUT=str(TIMEOUT_S),
            )
        )
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        stack.callback(ray.shutdown)
        yield proxy


def test_a_run_through_faults_equals_an_undisturbed_run(trained_sample, s3_server, faulty,
                                                        tmp_path):  # fmt: skip
    local = predict_config(trained_sample, tmp_path / "local", run_id="same-run")
    undisturbed = run_predict(load_predict_config(local), progress=False)
    assert undisturbed.done == 36 and not undisturbed.failed and undisturbed.retries == 0

    remote = config_on_s3(s3_server, trained_sample, local, "faults/inputs", "faults/map.zarr")
    before = faulty.counts()
    summary = run_predict(load_predict_config(remote), progress=False)
    seen = {k: v - before[k] for k, v in faulty.counts().items()}
    print(f"\nproxy: {seen}\n" + "\n".join(summary.lines()))

    assert summary.done == 36 and not summary.failed
    assert s3_server.objects("faults/map.zarr") == store_tree(tmp_path / "local" / "map.zarr")
    assert seen["slowdown"] > 0 and seen["requests"] > 200
    # GDAL's retries of the imagery, counted by the readers and the driver's checks and
    # summed: every 503 the imagery's reads met (about 5 of 100), none of the store's.
    assert seen["gdal_requests"] > 50
    gdal_faults = seen["gdal_slowdown"] + seen["gdal_reset"] + seen["gdal_stall"]
    assert summary.throttled == seen["gdal_slowdown"] <= summary.retries <= gdal_faults
    if summary.retries:
        assert any(line.startswith("object storage: ") for line in summary.lines())
