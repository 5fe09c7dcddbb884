"""A whole run over Planetary Computer-style items: blobs in a private container of a
real Azure Blob emulator (Azurite), 50 ms away, read with SAS tokens from a loopback
token endpoint that expire mid-run. The map equals the same items read from local disk."""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

import pytest
import ray
import yaml

from cluster.predict.driver import run_predict
from jobs.config import load_predict_config
from tests.azurite import TokenEndpoint, publish
from tests.conftest import environ, predict_config, store_tree
from tests.netproxy import DelayProxy

pytestmark = [pytest.mark.slow]

# Tokens live 3-4 s and are renewed at half their life, while a read holding one has
# 1.5 s to spare; the run reads one file at a time (~10 s 50 ms away), so its tokens
# are renewed several times.
LIFETIME_S = 3


@pytest.fixture(scope="module")
def signed_ray(azurite):
    """The token endpoint, a proxy 50 ms before Azurite, and Ray started with the
    environment that names them."""
    with contextlib.ExitStack() as stack:
        endpoint = stack.enter_context(TokenEndpoint(LIFETIME_S))
        proxy = stack.enter_context(DelayProxy(azurite.port, 50))
        stack.enter_context(
            environ(
                STATEMAP_SAS_TOKEN_URL=endpoint.url, STATEMAP_SAS_HOSTS=f"127.0.0.1:{proxy.port}"
            )
        )
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        stack.callback(ray.shutdown)
        yield endpoint, proxy


def test_a_run_on_signed_blobs_equals_a_local_run(trained_sample, azurite, signed_ray, tmp_path):
    local = predict_config(trained_sample, tmp_path / "local", run_id="same-run")
    undisturbed = run_predict(load_predict_config(local), progress=False)
    assert undisturbed.done == 36 and not undisturbed.failed

    doc = yaml.safe_load(local.read_text())
    sample = Path(doc["catalog"]).parent
    endpoint, proxy = signed_ray
    catalog = publish(azurite, sample, Path(doc["catalog"]), "sample", tmp_path / "sample",
                      via=proxy.endpoint_url)  # fmt: skip
    doc["catalog"], doc["store"] = str(catalog), str(tmp_path / "signed" / "map.zarr")
    doc["run"].update(tiles_in_flight=1, requests_in_flight=1)
    signed = tmp_path / "signed.yaml"
    signed.write_text(yaml.safe_dump(doc))
    start = time.monotonic()
    summary = run_predict(load_predict_config(signed), progress=False)
    seconds = time.monotonic() - start
    print(f"\n{seconds:.1f} s, {endpoint.issued['sample']} tokens")

    assert summary.done == 36 and not summary.failed
    signed_store, local_store = (tmp_path / run / "map.zarr" for run in ("signed", "local"))
    assert store_tree(signed_store) == store_tree(local_store)
    # The driver's and the actor's first tokens, and at least one renewed mid-run.
    assert endpoint.issued["sample"] >= 3
