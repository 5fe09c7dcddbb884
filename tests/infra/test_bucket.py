"""The bucket's settings (infra/bucket/*.json, in the shape `aws s3api
put-bucket-...` takes) and the script that applies them.

The lifecycle is checked against the layout the region configs actually use:
intermediate stores under stores/ expire, and nothing else the jobs write or
read (published maps, checkpoints) sits under an expiring prefix.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from tests.infra.manifests import INFRA, ROOT

BUCKET = INFRA / "bucket"
SCRIPT = BUCKET / "create-bucket.sh"


def _writes_to_s3(path: Path) -> bool:
    config = yaml.safe_load(path.read_text()) or {}
    return str(config.get("output", {}).get("stores", "")).startswith("s3://")


# The region configs that keep their stores in object storage (sample.yaml is local).
S3_CONFIGS = [p for p in sorted((ROOT / "jobs" / "regions").glob("*.yaml")) if _writes_to_s3(p)]


def _doc(name: str) -> dict[str, Any]:
    return json.loads((BUCKET / name).read_text())


def _expiring_prefixes() -> list[str]:
    rules = _doc("lifecycle.json")["Rules"]
    return [
        r["Filter"].get("Prefix", "")
        for r in rules
        if r["Status"] == "Enabled" and ("Expiration" in r or "Transitions" in r)
    ]


def test_default_encryption_is_on():
    rules = _doc("encryption.json")["Rules"]
    algorithms = {r["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] for r in rules}
    assert algorithms and algorithms <= {"AES256", "aws:kms", "aws:kms:dsse"}, algorithms


def test_public_access_is_blocked_every_way():
    flags = _doc("public-access-block.json")
    assert flags == {
        "BlockPublicAcls": True,
        "IgnorePublicAcls": True,
        "BlockPublicPolicy": True,
        "RestrictPublicBuckets": True,
    }


def test_acls_are_off():
    (rule,) = _doc("ownership-controls.json")["Rules"]
    assert rule["ObjectOwnership"] == "BucketOwnerEnforced"


def test_intermediate_stores_expire_and_nothing_else_does():
    rules = _doc("lifecycle.json")["Rules"]
    stores = [
        r
        for r in rules
        if r["Status"] == "Enabled" and r["Filter"].get("Prefix") == "stores/" and "Expiration" in r
    ]
    assert len(stores) == 1, f"want one enabled rule expiring stores/, have {stores}"
    assert stores[0]["Expiration"]["Days"] >= 7, "stores must outlive a run that resumes"
    for prefix in _expiring_prefixes():
        assert prefix.startswith("stores/"), f"a rule expires objects under {prefix!r}"


def test_incomplete_multipart_uploads_are_aborted():
    rules = _doc("lifecycle.json")["Rules"]
    abort = [
        r
        for r in rules
        if r["Status"] == "Enabled"
        and r["Filter"].get("Prefix", "") == ""
        and r.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation", 0) >= 1
    ]
    assert abort, "no bucket-wide rule aborts incomplete multipart uploads"


def _key_prefix(uri: str) -> tuple[str, str]:
    parts = urlsplit(uri)
    return parts.netloc, parts.path.strip("/") + "/"


def test_some_region_config_uses_the_bucket():
    assert S3_CONFIGS, "no jobs/regions/*.yaml keeps its stores in s3://: the layout check is void"


@pytest.mark.parametrize("path", S3_CONFIGS, ids=lambda p: p.name)
def test_region_configs_write_where_the_lifecycle_expects(path):
    config = yaml.safe_load(path.read_text())
    output = config["output"]
    expiring = _expiring_prefixes()
    bucket, stores = _key_prefix(output["stores"])
    assert stores == "stores/", (
        f"{path.name}: output.stores {output['stores']}: want s3://<bucket>/stores"
    )
    assert any(stores.startswith(p) for p in expiring), f"{path.name}: its stores never expire"
    for field in ("maps", "checkpoint"):
        value = output.get(field) if field == "maps" else config.get(field)
        if not str(value or "").startswith(f"s3://{bucket}/"):
            continue
        _, key = _key_prefix(value)
        assert not any(key.startswith(p) for p in expiring), (
            f"{path.name}: {field} {value} would expire"
        )
    _, maps = _key_prefix(output["maps"])
    assert maps == f"maps/{config['name']}/", f"{path.name}: output.maps {output['maps']}"


def _fake_aws(tmp_path: Path, bucket_exists: bool) -> tuple[dict[str, str], Path]:
    """An `aws` on PATH that logs its arguments and answers head-bucket as told."""
    log = tmp_path / "calls.log"
    fake = tmp_path / "bin" / "aws"
    fake.parent.mkdir()
    fake.write_text(
        "#!/usr/bin/env bash\n"
        f'printf "%s\\n" "$*" >> {shlex.quote(str(log))}\n'
        f"[[ $2 == head-bucket ]] && exit {0 if bucket_exists else 254}\n"
        "exit 0\n"
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake.parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("AWS_REGION", None)
    return env, log


def test_script_creates_the_bucket_and_applies_every_document(tmp_path):
    env, log = _fake_aws(tmp_path, bucket_exists=False)
    run = subprocess.run(
        ["bash", str(SCRIPT), "statemap-test", "eu-west-1"], env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    calls = log.read_text().splitlines()
    verbs = [c.split()[1] for c in calls]
    assert verbs == [
        "head-bucket",
        "create-bucket",
        "put-public-access-block",
        "put-bucket-ownership-controls",
        "put-bucket-encryption",
        "put-bucket-lifecycle-configuration",
    ], calls
    assert "LocationConstraint=eu-west-1" in calls[1]
    used = {c.split("file://")[1].split()[0] for c in calls if "file://" in c}
    assert {Path(p).name for p in used} == {
        "public-access-block.json",
        "ownership-controls.json",
        "encryption.json",
        "lifecycle.json",
    }
    for p in used:
        json.loads(Path(p).read_text())  # every file it hands the CLI exists and is JSON
    assert all("--bucket statemap-test" in c and "--region eu-west-1" in c for c in calls)


def test_script_leaves_an_existing_bucket_and_reapplies_settings(tmp_path):
    env, log = _fake_aws(tmp_path, bucket_exists=True)
    run = subprocess.run(
        ["bash", str(SCRIPT), "statemap-test"], env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    calls = log.read_text().splitlines()
    assert not any(c.startswith("s3api create-bucket") for c in calls), calls
    assert len(calls) == 5 and all("--region eu-central-1" in c for c in calls), calls


def test_script_refuses_to_run_without_a_bucket(tmp_path):
    env, log = _fake_aws(tmp_path, bucket_exists=False)
    run = subprocess.run(["bash", str(SCRIPT)], env=env, capture_output=True, text=True)
    assert run.returncode == 2 and "usage:" in run.stderr
    assert not log.exists()
