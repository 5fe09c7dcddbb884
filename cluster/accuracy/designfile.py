"""design.json: a sample design written beside its points, so labelling cannot lose it.

The estimators weight each sample unit by N_h / n_h of its stratum. The sample
file carries those per point, but a labeller may drop or reorder columns in
QGIS or Collect Earth; the sidecar keeps the design itself: which map it was
drawn on (store, run id, grid), the strata (name, map class, N_h, n_h and the
range of point ids drawn in each), the seed, the allocation and the sample
size's reasoning. ``statemap assess`` reads the stratum of a point from its id
here, and needs nothing else from the file than id, position and label.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from cluster.accuracy.errors import AccuracyError
from cluster.storage import objstore
from cluster.storage.redact import redact

__all__ = ["DESIGN_FILE", "SCHEMA", "DesignStratum", "SampleDesign"]

DESIGN_FILE = "design.json"
SCHEMA = "statemap.sample-design/1"
STRATA_KINDS = ("map classes", "class x confidence band")


@dataclass(frozen=True)
class DesignStratum:
    """One stratum: its pixels N_h, its sample n_h and the ids drawn in it."""

    code: int
    name: str
    map_class: str
    pixels: int
    sample: int
    first_id: int  # ids first_id .. first_id + sample - 1

    @property
    def ids(self) -> range:
        return range(self.first_id, self.first_id + self.sample)


@dataclass(frozen=True)
class SampleDesign:
    """A stratified random sample's design, as drawn from one run's map."""

    store: str
    run_id: str
    shape: tuple[int, int]
    transform: tuple[float, ...]
    crs_wkt: str
    crs_epsg: int | None
    pixel_area_m2: float | None
    class_names: tuple[str, ...]
    confidence_bands: tuple[float, ...]
    allocation: str
    min_per_stratum: int
    target_se: float | None
    expected_users: Mapping[str, float] | None
    seed: int
    strata: tuple[DesignStratum, ...]
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = [s.name for s in self.strata]
        if len(set(names)) != len(names):
            raise AccuracyError(f"design strata {names} repeat a name; each must be unique")
        object.__setattr__(self, "store", redact(self.store))
        if self.expected_users is not None:
            object.__setattr__(self, "expected_users", MappingProxyType(dict(self.expected_users)))

    @property
    def n(self) -> int:
        return sum(s.sample for s in self.strata)

    @property
    def strata_kind(self) -> str:
        return STRATA_KINDS[1] if self.confidence_bands else STRATA_KINDS[0]

    @property
    def stratum_sizes(self) -> dict[str, int]:
        return {s.name: s.pixels for s in self.strata}

    def strata_of(self, ids: Sequence[int], source: str) -> list[str]:
        """Each id's stratum name; an id the design never drew is refused, naming it."""
        owner = {i: s.name for s in self.strata for i in s.ids}
        out = []
        for unit in ids:
            name = owner.get(unit)
            if name is None:
                raise AccuracyError(
                    f"{source}: point id {unit} was not drawn by the design in "
                    f"{DESIGN_FILE} (ids 1..{self.n}); remove the point, or give the design "
                    "it was drawn with (--design)"
                )
            out.append(name)
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "store": self.store,
            "run_id": self.run_id,
            "shape": list(self.shape),
            "transform": list(self.transform),
            "crs": {"wkt": self.crs_wkt, "epsg": self.crs_epsg},
            "pixel_area_m2": self.pixel_area_m2,
            "class_names": list(self.class_names),
            "strata_kind": self.strata_kind,
            "confidence_bands": list(self.confidence_bands),
            "allocation": self.allocation,
            "min_per_stratum": self.min_per_stratum,
            "target_se": self.target_se,
            "expected_users": None if self.expected_users is None else dict(self.expected_users),
            "seed": self.seed,
            "n": self.n,
            "strata": [
                {
                    "code": s.code,
                    "name": s.name,
                    "map_class": s.map_class,
                    "pixels": s.pixels,
                    "sample": s.sample,
                    "ids": [s.first_id, s.first_id + s.sample - 1] if s.sample else [],
                }
                for s in self.strata
            ],
            **dict(self.extra),
        }

    @classmethod
    def from_json(cls, doc: Any, source: str) -> SampleDesign:
        """The design from its JSON; anything missing or malformed names the file and key."""
        fix = "write it again with statemap sample-design, or restore the one written then"
        if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
            got = doc.get("schema") if isinstance(doc, dict) else type(doc).__name__
            raise AccuracyError(f"{source} is not a statemap sample design (schema {got!r}); {fix}")
        try:
            strata = tuple(
                DesignStratum(
                    int(s["code"]),
                    str(s["name"]),
                    str(s["map_class"]),
                    _count(s["pixels"]),
                    _count(s["sample"]),
                    int(s["ids"][0]) if s["ids"] else 0,
                )
                for s in doc["strata"]
            )
            users = doc["expected_users"]
            known = set(cls.__dataclass_fields__) | {"schema", "crs", "strata_kind", "n"}
            return cls(
                store=str(doc["store"]),
                run_id=str(doc["run_id"]),
                shape=(int(doc["shape"][0]), int(doc["shape"][1])),
                transform=tuple(float(v) for v in doc["transform"]),
                crs_wkt=str(doc["crs"]["wkt"]),
                crs_epsg=doc["crs"]["epsg"],
                pixel_area_m2=_optional_float(doc["pixel_area_m2"]),
                class_names=tuple(str(c) for c in doc["class_names"]),
                confidence_bands=tuple(float(v) for v in doc["confidence_bands"]),
                allocation=str(doc["allocation"]),
                min_per_stratum=int(doc["min_per_stratum"]),
                target_se=_optional_float(doc["target_se"]),
                expected_users=None if users is None else {k: float(v) for k, v in users.items()},
                seed=int(doc["seed"]),
                strata=strata,
                extra={k: v for k, v in doc.items() if k not in known},
            )
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise AccuracyError(
                f"{source}: design is incomplete or malformed ({exc!r}); {fix}"
            ) from exc

    def write(self, uri: str) -> None:
        body = json.dumps(self.to_json(), indent=2) + "\n"
        objstore.write_bytes_atomic(uri, redact(body).encode())

    @classmethod
    def read(cls, uri: str) -> SampleDesign | None:
        """The design at ``uri``, or None where there is none."""
        data = objstore.read_bytes(uri)
        if data is None:
            return None
        try:
            doc = json.loads(data)
        except ValueError as exc:
            raise AccuracyError(
                f"{uri} is not JSON ({exc}); restore the design.json sample-design wrote"
            ) from exc
        return cls.from_json(doc, uri)


def _count(value: Any) -> int:
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(f"{value!r} is not a count")
    return int(value)


def _optional_float(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{value!r} is not a finite number")
    return number
