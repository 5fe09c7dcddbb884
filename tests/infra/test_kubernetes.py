"""Kubernetes' own resources in infra/ (and the pod templates inside the KubeRay
ones) against Kubernetes' schemas from kubernetes-validate, strictly: an
unknown field is an error there, as kubectl's server-side field validation
makes it.

Versions: the newest kubernetes-validate ships, and a floor below which the
manifests are not meant to run (CronJob.spec.timeZone, for one, is GA since
1.27). Raise the floor on purpose, when a field needs it.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import itertools
import shlex

import kubernetes_validate
import pytest
from croniter import croniter

from tests.infra.manifests import (
    containers,
    kuberay,
    kubernetes_own,
    of_kind,
    pod_templates,
)

NEWEST = kubernetes_validate.latest_version()
VERSIONS = ("1.31", NEWEST)
OWN = kubernetes_own()
TEMPLATES = pod_templates()


def test_the_newest_version_is_recent():
    # kubernetes-validate >= 1.30 (pyproject) ships at least that far.
    assert tuple(int(x) for x in NEWEST.split(".")[:2]) >= (1, 30), NEWEST


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("m", OWN, ids=[m.name for m in OWN])
def test_kubernetes_resource_validates(m, version):
    try:
        kubernetes_validate.validate(m.doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{m.name} against Kubernetes {exc.version}: {path}: {exc.message}")


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize(("where", "template"), TEMPLATES, ids=[w for w, _ in TEMPLATES])
def test_pod_template_inside_kuberay_resource_validates(where, template, version):
    wrapped = {
        "apiVersion": "v1",
        "kind": "PodTemplate",
        "metadata": {"name": "check"},
        "template": template,
    }
    try:
        kubernetes_validate.validate(wrapped, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{where} against Kubernetes {exc.version}: {path}: {exc.message}")


KUBERAY = kuberay()


@pytest.mark.parametrize("m", KUBERAY, ids=[m.name for m in KUBERAY])
def test_kuberay_resource_metadata_is_object_meta(m):
    """The CRDs leave metadata unchecked (type: object); Kubernetes' ObjectMeta does not."""
    wrapped = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": m.doc["metadata"]}
    try:
        kubernetes_validate.validate(wrapped, NEWEST, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{m.name}: {path}: {exc.message}")


def test_strict_validation_refuses_a_misspelled_field():
    (m,) = of_kind("CronJob")
    doc = copy.deepcopy(m.doc)
    doc["spec"]["concurencyPolicy"] = doc["spec"].pop("concurrencyPolicy")
    with pytest.raises(kubernetes_validate.ValidationError, match="concurencyPolicy"):
        kubernetes_validate.validate(doc, NEWEST, strict=True)


def _tick():
    (m,) = of_kind("CronJob")
    return m, m.doc["spec"]


def test_tick_runs_every_ten_minutes_one_at_a_time():
    m, spec = _tick()
    assert spec["concurrencyPolicy"] == "Forbid", m.name
    start = dt.datetime(2026, 1, 1, 0, 3, tzinfo=dt.UTC)
    it = croniter(spec["schedule"], start)
    firings = [it.get_next(dt.datetime) for _ in range(7)]
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(firings)}
    assert gaps == {600.0}, f"{m.name}: schedule {spec['schedule']!r} is not every 10 minutes"
    # A tick still running when the next is due would be skipped (Forbid), not doubled;
    # a deadline under 10 minutes keeps it from happening at all.
    assert spec["jobTemplate"]["spec"]["activeDeadlineSeconds"] < 600, m.name


def test_tick_calls_the_standing_clusters_dashboard_with_its_token():
    m, spec = _tick()
    (cluster,) = of_kind("RayCluster")
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    argv = container.get("command", []) + container.get("args", [])
    assert argv[:3] == ["statemap", "schedule", "tick"], f"{m.name}: runs {argv}"

    # The arguments are the ones the real command takes.
    from jobs.schedule import add_arguments

    parser = argparse.ArgumentParser(prog="statemap schedule")
    add_arguments(parser)
    args = parser.parse_args(argv[2:])
    head = cluster.doc["spec"]["headGroupSpec"]
    dashboard = {
        p["name"]: p["containerPort"] for p in head["template"]["spec"]["containers"][0]["ports"]
    }
    want = f"http://{cluster.doc['metadata']['name']}-head-svc:{dashboard['dashboard']}"
    assert args.address == want, f"{m.name}: --address {args.address}, the head Service is {want}"

    env = {e["name"]: e for e in container["env"]}
    assert env["RAY_AUTH_MODE"].get("value") == "token", f"{m.name}: no RAY_AUTH_MODE=token"
    ref = env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": cluster.doc["spec"]["authOptions"]["secretName"], "key": "auth_token"}, (
        f"{m.name}: RAY_AUTH_TOKEN is not the cluster's token Secret ({ref})"
    )


def test_tick_runs_under_its_own_account_without_an_api_token():
    m, spec = _tick()
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    accounts = {a.doc["metadata"]["name"]: a.doc for a in of_kind("ServiceAccount")}
    assert pod["serviceAccountName"] in accounts, (
        f"{m.name}: ServiceAccount {pod['serviceAccountName']!r} is defined nowhere in infra/"
    )
    assert pod.get("automountServiceAccountToken") is False, (
        f"{m.name}: the tick needs no Kubernetes API token"
    )
    assert pod["restartPolicy"] == "Never", m.name


@pytest.mark.parametrize("m", OWN, ids=[m.name for m in OWN])
def test_no_secret_values_in_kubernetes_resources(m):
    assert m.doc["kind"] != "Secret" or not (m.doc.get("data") or m.doc.get("stringData")), (
        f"{m.name}: a Secret with values belongs in `kubectl create secret`, not in the repo"
    )
    for where, container in containers(m):
        for e in container.get("env", []):
            if "value" in e and any(w in e["name"] for w in ("SECRET", "KEY", "TOKEN", "PASSWORD")):
                pytest.fail(f"{where}: {e['name']} has a literal value ({shlex.quote(e['value'])})")
