"""The deployment files under infra/, loaded once for every infra test.

Kubernetes manifests are every YAML file under infra/ except the Ray cluster
launcher's (infra/cluster-launcher/, which is Ray's format, not Kubernetes').
The helpers reach into the three KubeRay kinds the same way, so a test about
"every Ray cluster we deploy" covers the standing RayCluster and the clusters
the RayJob and RayCronJobs bring up alike.
"""

from __future__ import annotations

import functools
import shlex
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
LAUNCHER = INFRA / "cluster-launcher"
DOCKERFILE = INFRA / "Dockerfile"


@dataclass(frozen=True)
class Manifest:
    """One document of one manifest file."""

    path: Path
    index: int  # position in a multi-document file
    doc: dict[str, Any]

    @property
    def name(self) -> str:
        """How messages and test ids name it: file, and kind/name."""
        rel = self.path.relative_to(ROOT)
        return f"{rel}#{self.index} {self.doc.get('kind')}/{self.doc['metadata'].get('name')}"


def yaml_files() -> list[Path]:
    """Every YAML file under infra/, the launcher's included."""
    return sorted(p for p in INFRA.rglob("*") if p.suffix in {".yaml", ".yml"})


def load_documents(path: Path) -> list[dict[str, Any]]:
    """The non-empty documents of a YAML file; a document that is not a mapping is refused."""
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    for i, doc in enumerate(docs):
        if not isinstance(doc, dict):
            raise ValueError(f"{path}: document {i} is a {type(doc).__name__}, not a mapping")
    return docs


@functools.cache
def manifests() -> tuple[Manifest, ...]:
    """Every Kubernetes document under infra/."""
    return tuple(
        Manifest(path, i, doc)
        for path in yaml_files()
        if LAUNCHER not in path.parents
        for i, doc in enumerate(load_documents(path))
    )


def kuberay() -> list[Manifest]:
    return [m for m in manifests() if str(m.doc.get("apiVersion", "")).startswith("ray.io/")]


def kubernetes_own() -> list[Manifest]:
    return [m for m in manifests() if not str(m.doc.get("apiVersion", "")).startswith("ray.io/")]


def of_kind(kind: str) -> list[Manifest]:
    return [m for m in manifests() if m.doc.get("kind") == kind]


def launcher() -> dict[str, Any]:
    (doc,) = load_documents(LAUNCHER / "aws-gpu.yaml")
    return doc


def job_spec(m: Manifest) -> dict[str, Any]:
    """The RayJob spec of a RayJob or a RayCronJob's job template."""
    if m.doc["kind"] == "RayJob":
        return m.doc["spec"]
    if m.doc["kind"] == "RayCronJob":
        return m.doc["spec"]["jobTemplate"]
    raise TypeError(f"{m.name} is no RayJob or RayCronJob")


def cluster_spec(m: Manifest) -> dict[str, Any] | None:
    """The RayCluster spec a KubeRay resource brings up (None: it brings up none)."""
    if m.doc["kind"] == "RayCluster":
        return m.doc["spec"]
    return job_spec(m).get("rayClusterSpec")


def cluster_specs() -> list[tuple[Manifest, dict[str, Any]]]:
    """Every Ray cluster spec we deploy, with the manifest it is in."""
    return [(m, spec) for m in kuberay() if (spec := cluster_spec(m)) is not None]


def groups(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """The head group and each worker group of a cluster spec, by name."""
    yield "head", spec["headGroupSpec"]
    for group in spec.get("workerGroupSpecs", []):
        yield group["groupName"], group


def ray_container(group: dict[str, Any]) -> dict[str, Any]:
    """The Ray container: KubeRay runs Ray in a pod's first container."""
    return group["template"]["spec"]["containers"][0]


def pod_templates() -> list[tuple[str, dict[str, Any]]]:
    """Every pod template inside the KubeRay resources, named by where it sits."""
    found = []
    for m in kuberay():
        spec = cluster_spec(m)
        if spec is not None:
            for name, group in groups(spec):
                found.append((f"{m.name} {name}", group["template"]))
        if m.doc["kind"] != "RayCluster" and "submitterPodTemplate" in job_spec(m):
            found.append((f"{m.name} submitter", job_spec(m)["submitterPodTemplate"]))
    return found


def entrypoint_args(m: Manifest) -> list[str]:
    """A RayJob's entrypoint as argv after ``python -m jobs.run``; refused otherwise."""
    argv = shlex.split(job_spec(m)["entrypoint"])
    if argv[:3] != ["python", "-m", "jobs.run"]:
        raise ValueError(f"{m.name}: entrypoint {argv} is not `python -m jobs.run ...`")
    return argv[3:]


def images() -> dict[str, str]:
    """Every container image named in infra/, by where it is named."""
    found = {}
    for m in manifests():
        for where, container in _containers(m.doc, m.name):
            found[where] = container["image"]
    found["infra/cluster-launcher/aws-gpu.yaml docker.image"] = launcher()["docker"]["image"]
    return found


def _containers(value: Any, where: str) -> Iterator[tuple[str, dict[str, Any]]]:
    if isinstance(value, dict):
        for key, sub in value.items():
            if key in {"containers", "initContainers"} and isinstance(sub, list):
                for c in sub:
                    yield f"{where} container {c.get('name')}", c
            else:
                yield from _containers(sub, where)
    elif isinstance(value, list):
        for item in value:
            yield from _containers(item, where)


def containers(m: Manifest) -> list[tuple[str, dict[str, Any]]]:
    """Every container spec anywhere in a manifest."""
    return list(_containers(m.doc, m.name))
