"""No secret leaves a run: a regional run reads Planetary Computer-style blobs with SAS
tokens (Azurite and a loopback token endpoint) and writes its store and maps to S3
(SeaweedFS, signed with a secret key), first with one blob missing (the run fails,
naming it), then again (it resumes and publishes). Every token's signature and the
secret key are then looked for in every file the runs wrote, in every object on the
store, in Ray's logs, in what the job printed, and in its log at DEBUG level with
GDAL's own debug messages on (which name each signed URL it opens)."""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from pathlib import Path
from urllib.parse import parse_qs, quote

import pytest
import ray

from jobs.cli import main
from tests.azurite import TokenEndpoint, publish
from tests.conftest import environ
from tests.jobs.regiondata import PERIOD, REGIONS, tiny_data, with_overrides

pytestmark = [pytest.mark.slow, pytest.mark.s3]


@pytest.fixture
def ray_logs(azurite, s3_server):
    """The token endpoint, and a Ray of this test's own, whose session logs are kept
    in a folder of their own to be read; GDAL's debug messages on everywhere."""
    temp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: socket paths
    with contextlib.ExitStack() as stack:
        stack.callback(shutil.rmtree, temp, ignore_errors=True)
        endpoint = stack.enter_context(TokenEndpoint(600))
        stack.enter_context(
            environ(
                STATEMAP_SAS_TOKEN_URL=endpoint.url,
                STATEMAP_SAS_HOSTS=azurite.host,
                CPL_DEBUG="ON",
            )
        )
        ray.shutdown()  # an instance left by an earlier test has another environment
        ray.init(num_cpus=2, include_dashboard=False, _temp_dir=str(temp))
        stack.callback(ray.shutdown)
        yield endpoint, temp


@pytest.fixture
def debug_log(tmp_path):
    """The job's log at DEBUG, as a user chasing a problem would set it."""
    handler = logging.FileHandler(tmp_path / "debug.log")
    root = logging.getLogger()
    level, root.level = root.level, logging.DEBUG
    root.addHandler(handler)
    yield tmp_path / "debug.log"
    root.removeHandler(handler)
    handler.close()
    root.setLevel(level)


def test_no_secret_in_any_output_or_log(azurite, s3_server, ray_logs, debug_log, tmp_path, capfd):
    endpoint, ray_temp = ray_logs
    source = next(p for p in REGIONS if p.stem == "sample")
    data = tmp_path / "data"
    overrides = tiny_data(source, data, size=128)
    catalog = Path(next(o for o in overrides if o.startswith("catalog=")).split("=", 1)[1])
    signed = publish(azurite, catalog.parent, catalog, "secret", tmp_path / "signed")
    overrides = [
        *(o for o in overrides if not o.startswith("catalog=")),
        f"catalog={signed}",
        "grid.tile_size=64",
        f"output.stores={s3_server.uri('stores')}",
        f"output.maps={s3_server.uri('maps')}",
    ]
    config = with_overrides(source, overrides, tmp_path / "secret.yaml")
    args = ["run", "--config", str(config), "--period", PERIOD, "--quiet"]

    blobs = azurite.client().get_container_client("secret")
    tifs = {b.name: blobs.download_blob(b.name).readall() for b in blobs.list_blobs()
            if b.name.endswith(".tif")}  # fmt: skip
    for name in tifs:
        blobs.delete_blob(name)
    capfd.readouterr()  # what making the data printed
    assert main(args) != 0  # its tiles fail, naming a missing blob
    first = capfd.readouterr()
    printed = first.out + first.err
    assert "FAILED" in printed and "/secret/" in printed, printed

    for name, body in tifs.items():
        blobs.upload_blob(name, body)
    assert main(args) == 0
    second = capfd.readouterr()
    assert "succeeded" in second.out

    sigs = {parse_qs(token)["sig"][0] for token in endpoint.tokens}
    assert sigs, "the runs read no signed blob"
    secrets = {*sigs, s3_server.secret_key}
    files = [p for p in (*tmp_path.rglob("*"), *ray_temp.rglob("*")) if p.is_file()]
    written = {
        **{f"s3:{key}": body for key, body in s3_server.objects().items()},
        **{str(p): p.read_bytes() for p in files if not p.is_symlink()},
        "stdout/stderr": "".join((first.out, first.err, second.out, second.err)).encode(),
    }
    assert str(debug_log) in written and "maps/" in "".join(written)
    assert b"VSICURL" in written[str(debug_log)], "GDAL's debug messages were not logged"
    leaks = [
        f"{where}: {line[:300]}"
        for where, body in written.items()
        for line in body.decode(errors="replace").splitlines()
        for secret in secrets
        if secret in line or quote(secret, safe="") in line
    ]
    # Shown with the secret taken out: a test's output must not hold one either.
    for secret in secrets:
        for form in (secret, quote(secret, safe="")):
            leaks = [leak.replace(form, "<secret>") for leak in leaks]
    assert not leaks, "a secret was written:\n" + "\n".join(leaks[:10])
