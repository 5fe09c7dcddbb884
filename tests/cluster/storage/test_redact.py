"""Secrets in URLs (signatures, tokens, passwords) are taken out of whatever statemap
writes a URL into: messages, the run record, the published config, the checkpoint's
recipe. A sentinel secret is planted in each and looked for in what was written."""

from __future__ import annotations

import dataclasses
import logging
import pickle
from pathlib import Path

import pytest

from cluster.imagery.reader import AssetReadError
from cluster.storage.redact import redact
from cluster.tiles.grid import Grid
from cluster.training.chips import ChipSpec
from cluster.training.labels import LabelSpec
from jobs.run import _publish_config, prepare
from jobs.runrecord import RunRecord, load_record
from tests.jobs.regiondata import PERIOD, REGIONS, tiny_data

SENTINEL = "Zm9vYmFyc2VjcmV0c2VudGluZWwx"  # a secret's stand-in: it must never show
SIGNED = f"https://acct.blob.core.windows.net/box/B04.tif?st=2026&se=2026&sp=rl&sig={SENTINEL}"
PASSWORD = f"http://user:{SENTINEL}@127.0.0.1:9000"


@pytest.mark.parametrize(
    "text",
    [
        SIGNED,
        f"/vsicurl/http://127.0.0.1:1/a/c/b.tif?sv=2021&skoid={SENTINEL}&sig={SENTINEL}%3D",
        f"GET https://b.s3.amazonaws.com/k?X-Amz-Credential={SENTINEL}&X-Amz-Signature={SENTINEL}",
        f"endpoint {PASSWORD}/bucket failed",
        f"HTTP error 403 - https://x.example/f.tif?token={SENTINEL}. Retrying",
    ],
)
def test_secrets_are_taken_out_of_what_names_a_url(text):
    out = redact(text)
    assert SENTINEL not in out and "REDACTED" in out
    assert out.split("?")[0].split("//")[-1].split("@")[-1] in text  # the place stays readable


def test_a_file_that_cannot_be_read_is_named_without_its_token():
    error = AssetReadError("S2B_1", "red", SIGNED, f"HTTP 403 on /vsicurl/{SIGNED}")
    for text in (str(error), str(pickle.loads(pickle.dumps(error)))):  # as Ray ships it
        assert SENTINEL not in text and "acct.blob.core.windows.net/box/B04.tif" in text


def test_the_run_record_keeps_no_secret(tmp_path):
    record = RunRecord(
        run_id="r", region="x", period="2023", state="failed", started="now", store="s",
        maps=str(tmp_path), checkpoint_sha256="0", version="0",
        error=f"cannot read {SIGNED} at {PASSWORD}",
    )  # fmt: skip
    record.save()
    assert SENTINEL not in (tmp_path / "run.json").read_text()
    assert "acct.blob.core.windows.net" in load_record(str(tmp_path / "run.json")).error


def test_the_checkpoint_recipe_keeps_no_catalog_token():
    grid = Grid("EPSG:25832", (0.0, 0.0), 10.0, tile_size=32, halo=8)
    spec = ChipSpec(f"https://stac.example/catalog.json?token={SENTINEL}", grid, ("red",),
                    ("a", "b"), LabelSpec("labels.gpkg"))  # fmt: skip
    assert SENTINEL not in repr(spec.input_recipe()) and SENTINEL not in repr(spec.recipe())


def test_the_published_config_keeps_no_catalog_token(tmp_path):
    from jobs.period import Period

    path = next(p for p in REGIONS if p.stem == "sample")
    overrides = tiny_data(path, tmp_path)
    run = prepare(path, period=Period.parse(PERIOD), overrides=overrides)
    with_token = run.config.model_copy(
        update={"catalog": f"https://stac.example/catalog.json?token={SENTINEL}"}
    )
    uri = _publish_config(dataclasses.replace(run, config=with_token))
    text = Path(uri).read_text()
    assert SENTINEL not in text and "https://stac.example/catalog.json?token=REDACTED" in text


def test_gdal_messages_are_logged_without_their_signature(caplog):
    from cluster.storage.redact import redact_logs

    redact_logs()
    with caplog.at_level(logging.DEBUG, logger="rasterio._env"):
        logging.getLogger("rasterio._env").debug("VSICURL: GetFileSize(%s)=0", SIGNED)
    assert SENTINEL not in caplog.text and "acct.blob.core.windows.net/box/B04.tif" in caplog.text
