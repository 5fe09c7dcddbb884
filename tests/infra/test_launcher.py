"""The Ray cluster launcher config (infra/cluster-launcher/aws-gpu.yaml), checked
with the schema Ray itself validates `ray up` configs with, plus what statemap
needs of it: a CPU head, autoscaled GPU workers, token auth, no credentials."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import jsonschema
import ray
import yaml

from tests.infra.manifests import LAUNCHER, launcher

RAY_SCHEMA = Path(ray.__file__).parent / "autoscaler" / "ray-schema.json"
# EC2 families with NVIDIA GPUs.
GPU_INSTANCE = re.compile(r"(g4dn|g5|g6|g6e|gr6|p3|p3dn|p4d|p4de|p5|p5e|p5en|p6-b200)\.\w+")


def _node_types(config: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return config["available_node_types"]


def _run_options(config: dict[str, Any]) -> list[str]:
    return [tok for opt in config["docker"].get("run_options", []) for tok in shlex.split(opt)]


def _env(config: dict[str, Any]) -> dict[str, str]:
    argv = _run_options(config)
    pairs = [argv[i + 1] for i, a in enumerate(argv) if a in ("--env", "-e")]
    pairs += [a.split("=", 1)[1] for a in argv if a.startswith("--env=")]
    return dict(p.split("=", 1) for p in pairs)


def test_validates_against_rays_own_schema():
    schema = json.loads(RAY_SCHEMA.read_text())
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(launcher()), key=str)
    assert [f"{list(e.absolute_path)}: {e.message}" for e in errors] == []


def test_rays_schema_refuses_a_misspelled_field():
    config = launcher()
    config["docker"]["imgae"] = config["docker"].pop("image")
    schema = json.loads(RAY_SCHEMA.read_text())
    assert not jsonschema.Draft7Validator(schema).is_valid(config)


def test_cpu_head_and_autoscaled_gpu_workers():
    config = launcher()
    types = _node_types(config)
    head = types[config["head_node_type"]]
    assert head["resources"].get("CPU") == 0, "Ray may schedule tasks and actors on the head"
    assert not GPU_INSTANCE.fullmatch(head["node_config"]["InstanceType"]), (
        "a GPU head idles its GPU"
    )
    gpu = {
        name: t
        for name, t in types.items()
        if name != config["head_node_type"]
        and GPU_INSTANCE.fullmatch(t["node_config"]["InstanceType"])
    }
    assert len(gpu) == 1, f"want one GPU worker type, have {sorted(gpu)}"
    (worker,) = gpu.values()
    assert worker["resources"].get("GPU", 0) >= 1, "the GPU worker type declares no GPU"
    assert worker.get("min_workers", 0) == 0 and worker["max_workers"] >= 1
    assert config["max_workers"] >= worker["max_workers"]


def test_region_and_token_auth_reach_every_container():
    config = launcher()
    env = _env(config)
    assert config["provider"]["type"] == "aws"
    assert env.get("AWS_REGION") == config["provider"]["region"], (
        f"AWS_REGION {env.get('AWS_REGION')} in the containers, provider region "
        f"{config['provider']['region']}"
    )
    assert env.get("RAY_AUTH_MODE") == "token", "Ray's token auth is off"
    assert "~/.ray/auth_token" in config["file_mounts"], "no token file where Ray looks for it"


def _keys(value: Any) -> list[str]:
    if isinstance(value, dict):
        return [str(k) for k in value] + [k for v in value.values() for k in _keys(v)]
    if isinstance(value, list):
        return [k for v in value for k in _keys(v)]
    return []


def test_no_credentials_in_the_config():
    text = (LAUNCHER / "aws-gpu.yaml").read_text()
    config = yaml.safe_load(text)
    keys = {k.lower() for k in _keys(config)}
    assert not keys & {"aws_access_key_id", "aws_secret_access_key", "aws_session_token"}, keys
    assert not re.search(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b", text), "an AWS access key id"
    env = _env(config)
    assert not {k for k in env if k.startswith("AWS_") and k != "AWS_REGION"}, env
    for t in _node_types(config).values():
        assert "IamInstanceProfile" in t["node_config"], "nodes would have no way to the bucket"
