"""Reference labels to map classes: by class name, or by the reference data's own codes.

Photo interpreters type a class name; an inventory or another agency's map
carries its own codes (a species code per plot, several of them one map class:
beech and oak are both "broadleaf"). A mapping file (YAML or JSON) says which
code is which class::

    # codes -> class names; several codes may name one class
    labels:
      10: broadleaf
      11: broadleaf
      20: conifer

(the ``labels:`` level may be left out). Every label must then be a mapped
code or a class name, compared as text; a class name also matches in another
case ("Conifer"). Nothing is dropped silently: an empty label or one that is
no class is refused, naming the point, since leaving units out changes the
design the estimates rest on.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

import yaml

from cluster.accuracy.errors import AccuracyError
from cluster.storage import objstore

__all__ = ["LabelMapping", "resolve_labels"]

_SHOWN = 8  # ids listed in one message


@dataclass(frozen=True)
class LabelMapping:
    """Code (as text) -> class name, checked against the map's classes."""

    codes: Mapping[str, str] = field(default_factory=dict)
    source: str = ""

    @classmethod
    def load(cls, uri: str, class_names: Sequence[str]) -> LabelMapping:
        data = objstore.read_bytes(uri)
        if data is None:
            raise AccuracyError(f"label mapping {uri} does not exist; check the path")
        try:
            doc = json.loads(data) if uri.lower().endswith(".json") else yaml.safe_load(data)
        except (ValueError, yaml.YAMLError) as exc:
            raise AccuracyError(f"label mapping {uri} cannot be parsed ({exc}); fix it") from exc
        if isinstance(doc, dict) and set(doc) == {"labels"}:
            doc = doc["labels"]
        if not isinstance(doc, dict) or not doc:
            raise AccuracyError(
                f"label mapping {uri} is not a mapping of codes to class names (e.g. "
                f"'10: {class_names[0]}'); write one code per line"
            )
        return cls.build(doc, class_names, uri)

    @classmethod
    def build(
        cls, mapping: Mapping[object, object], class_names: Sequence[str], source: str
    ) -> LabelMapping:
        codes: dict[str, str] = {}
        for code, name in mapping.items():
            key = _key(code)
            target = _class_of(name, class_names)
            if key is None or target is None:
                raise AccuracyError(
                    f"label mapping {source}: code {code!r} -> {name!r}: "
                    + (
                        "the code is empty; give each code a value"
                        if key is None
                        else f"{name!r} is not a class of the map ({', '.join(class_names)}); "
                        "map the code to one of them"
                    )
                )
            if key in codes and codes[key] != target:
                raise AccuracyError(
                    f"label mapping {source}: code {key!r} is mapped to both {codes[key]!r} and "
                    f"{target!r}; map each code once"
                )
            codes[key] = target
        return cls(MappingProxyType(codes), source)


def resolve_labels(
    labels: Sequence[str | None],
    where: Sequence[str],
    class_names: Sequence[str],
    mapping: LabelMapping | None,
    source: str,
) -> list[str]:
    """Each label's class name; refuses empty labels and labels that are no class.

    ``where`` names each unit in messages ("point id 7"); ``source`` the file.
    """
    empty = [w for w, label in zip(where, labels, strict=True) if label is None]
    if empty:
        shown = ", ".join(empty[:_SHOWN]) + (", ..." if len(empty) > _SHOWN else "")
        raise AccuracyError(
            f"{source}: {len(empty)} of {len(labels)} points have no reference label ({shown}); "
            "label every point: leaving points out changes the design the estimates rest on"
        )
    codes = {} if mapping is None else dict(mapping.codes)
    out = []
    for unit, label in zip(where, labels, strict=True):
        name = codes.get(str(label)) or _class_of(label, class_names)
        if name is None:
            how = (
                f"map its code in {mapping.source}"
                if mapping is not None
                else "or give a mapping of the reference data's codes with --labels"
            )
            raise AccuracyError(
                f"{source}, {unit}: reference label {label!r} is not a class of the map "
                f"({', '.join(class_names)}); correct the label, {how}"
            )
        out.append(name)
    return out


def _key(code: object) -> str | None:
    if code is None:
        return None
    if isinstance(code, float) and code.is_integer():
        code = int(code)
    text = str(code).strip()
    return text or None


def _class_of(label: object, class_names: Sequence[str]) -> str | None:
    """The class ``label`` names: exactly, or else ignoring case and outer spaces."""
    if not isinstance(label, str):
        return None
    if label in class_names:
        return label
    folded = [c for c in class_names if c.casefold() == label.strip().casefold()]
    return folded[0] if len(folded) == 1 else None
