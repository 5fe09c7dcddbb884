"""KubeRay manifests checked offline against the CRDs vendored in schemas/kuberay/.

Two checks, because one is not enough: jsonschema validation of a document
against the CRD's openAPIV3Schema catches wrong types, missing required fields
and bad enum values, but a CRD's schema (like the API server's pruning) lets
unknown fields through, so a misspelled field would pass and be dropped
silently by the cluster. ``strict_problems`` therefore also walks the document
beside the schema and reports every key the schema does not declare, and every
list item that repeats a key of a ``x-kubernetes-list-type: map`` list (two
env entries of one name: the API server keeps one).
"""

from __future__ import annotations

import difflib
import functools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

SCHEMAS = Path(__file__).resolve().parent / "schemas" / "kuberay"

_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_FORMATS = jsonschema.FormatChecker(formats=())


def _in_range(name: str) -> None:
    low, high = _INT_RANGES[name]

    @_FORMATS.checks(name)
    def check(value: object) -> bool:
        return not isinstance(value, int) or low <= value <= high


for _name in _INT_RANGES:
    _in_range(_name)


@dataclass(frozen=True)
class Crd:
    """One vendored CRD: the resource it defines and its v1 schema."""

    crd: str  # e.g. rayclusters.ray.io
    kind: str
    api_version: str  # group/version
    schema: dict[str, Any]


@functools.cache
def crds() -> dict[str, Crd]:
    """The vendored CRDs by kind (RayCluster, RayJob, RayCronJob)."""
    found = {}
    for path in sorted(SCHEMAS.glob("*.json")):
        doc = json.loads(path.read_text())
        found[doc["kind"]] = Crd(
            doc["crd"], doc["kind"], f"{doc['group']}/{doc['version']}", doc["openAPIV3Schema"]
        )
    return found


def crd_for(doc: dict[str, Any]) -> Crd:
    """The CRD a manifest claims to be, refused when its kind or apiVersion is unknown."""
    kind, api_version = doc.get("kind"), doc.get("apiVersion")
    known = crds()
    if kind not in known:
        raise LookupError(f"kind {kind!r} has no vendored CRD (have {sorted(known)})")
    if api_version != known[kind].api_version:
        raise LookupError(
            f"{kind} has apiVersion {api_version!r}; the vendored CRD serves "
            f"{known[kind].api_version!r}"
        )
    return known[kind]


def schema_errors(doc: dict[str, Any]) -> list[str]:
    """Every jsonschema violation of ``doc`` against its CRD, each with its path."""
    schema = crd_for(doc).schema
    validator = jsonschema.Draft4Validator(schema, format_checker=_FORMATS)
    return [
        f"{_dotted(err.absolute_path)}: {err.message}"
        for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    ]


def strict_problems(doc: dict[str, Any]) -> list[str]:
    """Undeclared fields and repeated list-map keys in ``doc``, each with its path."""
    return list(_walk(doc, crd_for(doc).schema, ""))


def _walk(value: Any, schema: dict[str, Any], path: str) -> Iterator[str]:
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, sub in value.items():
            here = f"{path}.{key}" if path else str(key)
            if props is not None and key in props:
                yield from _walk(sub, props[key], here)
            elif props is not None:
                near = difflib.get_close_matches(str(key), list(props), n=1)
                hint = f"; did you mean {near[0]!r}?" if near else ""
                yield f"{here}: no such field in the schema{hint}"
            elif isinstance(extra, dict):
                yield from _walk(sub, extra, here)
            # An object with neither (top-level metadata): nothing declared to check against.
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        yield from _repeated_keys(value, schema, path)
        for i, item in enumerate(value):
            yield from _walk(item, schema["items"], f"{path}[{i}]")


def _repeated_keys(items: list[Any], schema: dict[str, Any], path: str) -> Iterator[str]:
    kind = schema.get("x-kubernetes-list-type")
    if kind == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen = [tuple(item.get(k) for k in keys) for item in items if isinstance(item, dict)]
    elif kind == "set":
        seen = [json.dumps(item, sort_keys=True) for item in items]
    else:
        return
    for key in sorted({k for k in seen if seen.count(k) > 1}, key=str):
        yield f"{path}: {key} appears more than once in a list-type {kind} list"


def _dotted(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"
