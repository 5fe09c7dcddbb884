"""The KubeRay manifests: valid against the CRDs, free of typos, and deploying
the cluster statemap needs (CPU head, autoscaled one-GPU workers, token auth,
S3 credentials by reference only)."""

from __future__ import annotations

import copy
import re

import pytest
import yaml
from packaging.version import Version

from tests.infra import crd
from tests.infra.manifests import (
    cluster_specs,
    groups,
    job_spec,
    kuberay,
    of_kind,
    ray_container,
    yaml_files,
)

KUBERAY = kuberay()
IDS = [m.name for m in KUBERAY]
DNS1035 = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
# KubeRay's own limits: a RayCluster's name plus its longest Service suffix
# ("-serve-svc") must fit 63 characters; a RayJob's cluster appends 6 characters
# to the RayJob's name; a RayCronJob's RayJobs append 6 ("-xxxxx") to its name.
MAX_NAME = {"RayCluster": 53, "RayJob": 53 - 6, "RayCronJob": 53 - 6 - 6}


@pytest.mark.parametrize("path", yaml_files(), ids=lambda p: p.name)
def test_every_infra_yaml_parses_into_mappings(path):
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert docs, f"{path} holds no YAML document"
    assert all(isinstance(d, dict) for d in docs), f"{path}: a document is not a mapping"


def test_the_kuberay_resources_are_there():
    kinds = sorted(m.doc["kind"] for m in KUBERAY)
    assert kinds == ["RayCluster", "RayCronJob", "RayCronJob", "RayJob"], kinds


@pytest.mark.parametrize("m", KUBERAY, ids=IDS)
def test_kuberay_resource_validates_against_its_crd(m):
    assert crd.schema_errors(m.doc) == [], m.name


@pytest.mark.parametrize("m", KUBERAY, ids=IDS)
def test_kuberay_resource_has_only_fields_the_crd_declares(m):
    assert crd.strict_problems(m.doc) == [], m.name


def _cluster():
    (m,) = of_kind("RayCluster")
    return copy.deepcopy(m.doc)


def test_a_misspelled_field_passes_the_schema_but_not_the_strict_check():
    doc = _cluster()
    doc["spec"]["enableInTreeAutoscalling"] = doc["spec"].pop("enableInTreeAutoscaling")
    worker = doc["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    worker["resource"] = worker.pop("resources")
    # The CRD schema lets unknown fields through (the API server would prune them) ...
    assert crd.schema_errors(doc) == []
    # ... the strict walk names each, with the field meant.
    problems = sorted(crd.strict_problems(doc))
    assert problems == [
        "spec.enableInTreeAutoscalling: no such field in the schema; "
        "did you mean 'enableInTreeAutoscaling'?",
        "spec.workerGroupSpecs[0].template.spec.containers[0].resource: no such field in "
        "the schema; did you mean 'resources'?",
    ]


def test_a_repeated_env_name_is_caught():
    doc = _cluster()
    head = doc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]
    head["env"] = [{"name": "AWS_REGION", "value": "a"}, {"name": "AWS_REGION", "value": "b"}]
    assert crd.strict_problems(doc) == [
        "spec.headGroupSpec.template.spec.containers[0].env: ('AWS_REGION',) appears more "
        "than once in a list-type map list"
    ]


def test_wrong_types_and_values_fail_the_schema():
    doc = _cluster()
    doc["spec"]["workerGroupSpecs"][0]["maxReplicas"] = "8"
    doc["spec"]["authOptions"]["mode"] = "tokens"
    doc["spec"]["autoscalerOptions"]["idleTimeoutSeconds"] = 2**40
    errors = crd.schema_errors(doc)
    assert any(
        e.startswith("spec.workerGroupSpecs[0].maxReplicas: '8' is not of type") for e in errors
    )
    assert any(e.startswith("spec.authOptions.mode: 'tokens' is not one of") for e in errors)
    assert any(e.startswith("spec.autoscalerOptions.idleTimeoutSeconds:") for e in errors)


def test_an_unknown_kind_or_version_is_refused():
    doc = _cluster()
    doc["apiVersion"] = "ray.io/v1alpha1"
    with pytest.raises(LookupError, match="v1alpha1"):
        crd.schema_errors(doc)


@pytest.mark.parametrize("m", KUBERAY, ids=IDS)
def test_names_are_what_kuberay_accepts(m):
    name = m.doc["metadata"]["name"]
    kind = m.doc["kind"]
    assert DNS1035.fullmatch(name), f"{m.name}: {name!r} is not a DNS-1035 label"
    assert len(name) <= MAX_NAME[kind], f"{m.name}: {name!r} is over {MAX_NAME[kind]} characters"


def test_every_cluster_we_deploy_is_the_same_cluster():
    specs = cluster_specs()
    assert len(specs) == 4, [m.name for m, _ in specs]
    (standing,) = [spec for m, spec in specs if m.doc["kind"] == "RayCluster"]
    for m, spec in specs:
        assert spec == standing, (
            f"{m.name}: its rayClusterSpec differs from infra/kuberay/raycluster.yaml's spec; "
            "change them together"
        )


@pytest.mark.parametrize("m", KUBERAY, ids=IDS)
def test_operator_rules_the_schema_does_not_express(m):
    """What KubeRay's validation (utils/validation.go) refuses at reconcile time."""
    spec = m.doc["spec"]
    if m.doc["kind"] != "RayCluster":
        job = job_spec(m)
        assert ("rayClusterSpec" in job) != ("clusterSelector" in job), (
            f"{m.name}: set exactly one of rayClusterSpec and clusterSelector"
        )
        if job.get("ttlSecondsAfterFinished", 0) > 0 or job.get("suspend"):
            assert job.get("shutdownAfterJobFinishes"), (
                f"{m.name}: ttlSecondsAfterFinished / suspend need shutdownAfterJobFinishes"
            )
        assert "deletionStrategy" not in job, f"{m.name}: deletionStrategy needs a feature gate"
        spec = job.get("rayClusterSpec")
    if spec is None:
        return
    if spec.get("authOptions", {}).get("mode") == "token":
        assert Version(spec["rayVersion"]) >= Version("2.52.0"), (
            f"{m.name}: token auth needs rayVersion >= 2.52.0, has {spec.get('rayVersion')}"
        )
    for name, group in groups(spec):
        params = group.get("rayStartParams", {})
        assert not (set(params) & {"num-cpus", "num-gpus", "memory", "resources"}) or not group.get(
            "resources"
        ), f"{m.name} {name}: resources in both rayStartParams and resources"
        assert "labels" not in params, f"{m.name} {name}: use the group's labels field"
        assert group["template"]["spec"]["containers"], f"{m.name} {name}: no container"


@pytest.mark.parametrize(("m", "spec"), cluster_specs(), ids=[m.name for m, _ in cluster_specs()])
def test_cpu_head_and_autoscaled_one_gpu_workers(m, spec):
    head = spec["headGroupSpec"]
    assert head["rayStartParams"].get("num-cpus") == "0", f"{m.name}: Ray may schedule on the head"
    assert head["rayStartParams"].get("num-gpus") == "0", m.name
    head_limits = ray_container(head).get("resources", {}).get("limits", {})
    assert "nvidia.com/gpu" not in head_limits, f"{m.name}: the head asks for a GPU"
    assert spec.get("enableInTreeAutoscaling") is True, f"{m.name}: autoscaling is off"
    workers = spec["workerGroupSpecs"]
    gpu = [g for g in workers if "nvidia.com/gpu" in ray_container(g)["resources"]["limits"]]
    assert len(gpu) == 1, f"{m.name}: want exactly one GPU worker group, have {len(gpu)}"
    (group,) = gpu
    assert group["minReplicas"] == 0, f"{m.name}: GPU nodes idle between runs"
    assert group["maxReplicas"] >= 1 and group["replicas"] <= group["maxReplicas"], m.name
    # One GPU per pod: one Predictor actor (num_gpus=1) per pod.
    assert ray_container(group)["resources"]["limits"]["nvidia.com/gpu"] in ("1", 1), m.name
    # KubeRay derives Ray's GPU count from that limit; an override here would lie.
    assert "num-gpus" not in group.get("rayStartParams", {}), m.name


@pytest.mark.parametrize(("m", "spec"), cluster_specs(), ids=[m.name for m, _ in cluster_specs()])
def test_credentials_arrive_by_reference_only(m, spec):
    auth = spec.get("authOptions", {})
    assert auth.get("mode") == "token", f"{m.name}: Ray token auth is off"
    assert auth.get("secretName") == "statemap-ray-auth", (
        f"{m.name}: the token should come from the statemap-ray-auth Secret, so clients know it"
    )
    for name, group in groups(spec):
        container = ray_container(group)
        from_secret = {
            s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s
        }
        keyrefs = {
            e["valueFrom"]["secretKeyRef"]["name"]
            for e in container.get("env", [])
            if "secretKeyRef" in e.get("valueFrom", {})
        }
        assert "statemap-s3" in from_secret | keyrefs, (
            f"{m.name} {name}: the Ray container does not get the statemap-s3 Secret"
        )
        literal = [
            e["name"]
            for e in container.get("env", [])
            if "value" in e and re.search(r"SECRET|ACCESS_KEY|TOKEN|PASSWORD", e["name"])
        ]
        assert not literal, f"{m.name} {name}: credential env var(s) {literal} with a literal value"


def test_the_ray_job_maps_one_region_and_cleans_up():
    (m,) = of_kind("RayJob")
    job = job_spec(m)
    assert job["shutdownAfterJobFinishes"] is True, f"{m.name}: its cluster would outlive the run"
    assert "--scheduled" not in job["entrypoint"], f"{m.name}: a one-off run has no schedule"
    assert job.get("backoffLimit", 0) >= 1, f"{m.name}: a failed run should resume once more"
