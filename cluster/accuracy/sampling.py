"""A stratified random sample drawn from a run's store: the design, its points, its sidecar.

Strata are the map classes or class x confidence band (``StrataScheme``);
the sample size is given or follows from a target standard error of overall
accuracy and expected user's accuracies (Olofsson et al. 2014, eq. 13); the
allocation is proportional (optionally with a minimum per stratum, as
Olofsson et al. recommend for rare classes), equal or Neyman. Counting and
drawing are ``cluster.accuracy.design``'s two passes over the store's blocks;
points come back with their pixel-centre coordinates in the map's CRS and in
lon/lat, and the design as a ``SampleDesign`` for design.json.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from cluster.accuracy.design import StratifiedSample, draw_stratified_sample
from cluster.accuracy.designfile import DesignStratum, SampleDesign
from cluster.accuracy.errors import AccuracyError
from cluster.accuracy.samplefile import SamplePoints
from cluster.accuracy.samplesize import (
    allocate_equal,
    allocate_neyman,
    allocate_proportional,
    sample_size_overall_accuracy,
)
from cluster.accuracy.storechunks import StoreMap, StrataScheme

__all__ = ["ALLOCATIONS", "DEFAULT_MINIMUM", "DesignSpec", "DrawnDesign", "draw_design"]

ALLOCATIONS = ("proportional", "equal", "neyman", "proportional-min")
DEFAULT_MINIMUM = 50  # units per stratum for proportional-min (Olofsson et al. 2014: 50-100)


@dataclass(frozen=True)
class DesignSpec:
    """What the user asked for: sample size (``n`` or ``target_se``), allocation, strata.

    ``expected_users`` maps class names to the user's accuracy expected of
    them and ``default_users`` covers the classes not named; they are needed
    for ``target_se`` and for Neyman allocation. ``minimum`` defaults to
    ``DEFAULT_MINIMUM`` for proportional-min and 0 otherwise.
    """

    seed: int
    n: int | None = None
    target_se: float | None = None
    expected_users: Mapping[str, float] = field(default_factory=dict)
    default_users: float | None = None
    allocation: str = "proportional"
    minimum: int | None = None
    confidence_bands: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if (self.n is None) == (self.target_se is None):
            raise AccuracyError(
                "give the sample size either as n or as a target standard error of overall "
                "accuracy (with expected user's accuracies), not both or neither"
            )
        if self.allocation not in ALLOCATIONS:
            raise AccuracyError(
                f"allocation {self.allocation!r} is not one of {', '.join(ALLOCATIONS)}"
            )
        values = [*self.expected_users.values(), self.default_users]
        bad = [u for u in values if u is not None and not 0.0 <= u <= 1.0]
        if bad:
            raise AccuracyError(
                f"expected user's accuracy {bad[0]!r} is not a proportion; give values in 0..1"
            )
        object.__setattr__(self, "expected_users", MappingProxyType(dict(self.expected_users)))
        object.__setattr__(self, "confidence_bands", tuple(float(e) for e in self.confidence_bands))

    @property
    def min_per_stratum(self) -> int:
        if self.minimum is not None:
            return self.minimum
        return DEFAULT_MINIMUM if self.allocation == "proportional-min" else 0

    @property
    def needs_users(self) -> bool:
        return self.target_se is not None or self.allocation == "neyman"

    def users_of(self, class_names: tuple[str, ...]) -> dict[str, float]:
        """The expected user's accuracy of every class, or an error naming a class without."""
        unknown = sorted(set(self.expected_users) - set(class_names))
        if unknown:
            raise AccuracyError(
                f"expected user's accuracy given for {unknown[0]!r}, which is not a class of the "
                f"map ({', '.join(class_names)}); use the map's class names"
            )
        missing = [c for c in class_names if c not in self.expected_users]
        if missing and self.default_users is None:
            raise AccuracyError(
                f"class {missing[0]!r} has no expected user's accuracy, which the "
                f"{'target SE' if self.target_se is not None else 'Neyman allocation'} needs; "
                f"give one per class (e.g. {missing[0]}=0.8) or one value for all classes"
            )
        return {c: float(self.expected_users.get(c, self.default_users)) for c in class_names}


@dataclass(frozen=True)
class DrawnDesign:
    """The design (for design.json) and its points (for the sample files)."""

    design: SampleDesign
    points: SamplePoints
    sample: StratifiedSample


def draw_design(source: StoreMap, spec: DesignSpec) -> DrawnDesign:
    """Count the strata, size and allocate the sample, draw it; two passes over the store."""
    scheme = StrataScheme(source.class_names, spec.confidence_bands)
    users = spec.users_of(source.class_names) if spec.needs_users else None

    def allocate(sizes: Mapping[int, int]) -> dict[int, int]:
        if not sizes:
            raise AccuracyError(
                f"store {source.uri} holds no mapped pixels (all nodata); nothing to sample"
            )
        named = {scheme.names[h]: size for h, size in sizes.items()}
        # users is set whenever the target SE or Neyman needs it (DesignSpec.needs_users)
        per_stratum = (
            {} if users is None else {scheme.names[h]: users[scheme.map_class(h)] for h in sizes}
        )
        n = spec.n
        if n is None:  # DesignSpec checked that target_se is given instead
            n = sample_size_overall_accuracy(named, per_stratum, float(spec.target_se or 0))
        minimum = spec.min_per_stratum
        if spec.allocation == "equal":
            wanted = allocate_equal(n, named, minimum=minimum)
        elif spec.allocation == "neyman":
            wanted = allocate_neyman(n, named, per_stratum, minimum=minimum)
        else:
            wanted = allocate_proportional(n, named, minimum=minimum)
        code = {name: h for h, name in scheme.names.items()}
        return {code[name]: int(count) for name, count in wanted.items()}

    sample = draw_stratified_sample(
        scheme.chunks(source),
        allocate,
        seed=spec.seed,
        nodata=scheme.nodata,
        stratum_names=scheme.names,
    )
    return DrawnDesign(
        _design(source, spec, scheme, sample, users), _points(source, sample, scheme), sample
    )


def _design(
    source: StoreMap,
    spec: DesignSpec,
    scheme: StrataScheme,
    sample: StratifiedSample,
    users: Mapping[str, float] | None,
) -> SampleDesign:
    strata, first = [], 1
    for h, pixels in sample.stratum_sizes.items():
        n_h = sample.sample_sizes.get(h, 0)
        strata.append(
            DesignStratum(h, sample.stratum_names[h], scheme.map_class(h), pixels, n_h, first)
        )
        first += n_h
    crs = source.crs
    return SampleDesign(
        store=source.uri,
        run_id=source.store.attrs.run_id,
        shape=source.shape,
        transform=tuple(source.transform)[:6],
        crs_wkt=crs.to_wkt(),
        crs_epsg=crs.to_epsg(),
        pixel_area_m2=source.pixel_area_m2,
        class_names=source.class_names,
        confidence_bands=spec.confidence_bands,
        allocation=spec.allocation,
        min_per_stratum=spec.min_per_stratum,
        target_se=spec.target_se,
        expected_users=None if users is None else dict(users),
        seed=spec.seed,
        strata=tuple(strata),
        # Provenance: a resumed run adds tiles; the design describes the map as it was.
        extra={"tiles_done": len(source.store.done_tiles())},
    )


def _points(source: StoreMap, sample: StratifiedSample, scheme: StrataScheme) -> SamplePoints:
    """Ids 1..n in the sample's order (stratum code, then rank), with both coordinates."""
    rows, cols, strata = sample.rows, sample.cols, sample.strata
    xs, ys = source.centres(rows, cols)
    lon, lat = source.lonlat(xs, ys)
    names = sample.stratum_names
    return SamplePoints(
        ids=np.arange(1, len(rows) + 1, dtype=np.int64),
        x=xs,
        y=ys,
        lon=lon,
        lat=lat,
        stratum=np.array([names[h] for h in strata.tolist()], dtype=object),
        map_class=np.array([scheme.map_class(h) for h in strata.tolist()], dtype=object),
        stratum_pixels=np.array([sample.stratum_sizes[h] for h in strata.tolist()], np.int64),
        stratum_sample=np.array([sample.sample_sizes[h] for h in strata.tolist()], np.int64),
    )
