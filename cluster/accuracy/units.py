"""Sample units checked once, as index arrays the estimators can work on.

Everything that can be wrong with a sample (a unit whose stratum has no pixel
count, a reference label that is not a class, more units than pixels in a
stratum, a stratum without units) is found here, before any arithmetic, and
reported with the unit's id, the stratum or the class, and the fix.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from cluster.accuracy.errors import AccuracyError

__all__ = ["SampleUnits"]

_SHOWN = 5  # classes listed in one message; more would bury the fix


@dataclass(frozen=True)
class SampleUnits:
    """A validated sample as index arrays (unit -> class, unit -> stratum)."""

    classes: tuple[Hashable, ...]
    strata: tuple[Hashable, ...]  # those with N_h > 0, in stratum_sizes' order
    mapped: np.ndarray  # class index per unit
    reference: np.ndarray
    stratum: np.ndarray  # stratum index per unit
    sizes: np.ndarray  # N_h (float)
    counts: np.ndarray  # n_h
    strata_are_map_classes: bool
    word: str  # "stratum" or "post-stratum", for messages

    @classmethod
    def build(
        cls,
        strata: Sequence[Hashable],
        map_classes: Sequence[Hashable],
        reference_classes: Sequence[Hashable],
        stratum_sizes: Mapping[Hashable, int],
        classes: Sequence[Hashable] | None,
        sample_ids: Sequence[Hashable] | None,
        word: str,
    ) -> SampleUnits:
        strata, mapped, reference = (_as_list(v) for v in (strata, map_classes, reference_classes))
        n = len(mapped)
        if not (len(strata) == n == len(reference)) or n == 0:
            raise AccuracyError(
                f"the sample has {len(strata)} {word} labels, {n} map classes and "
                f"{len(reference)} reference classes; give one of each per sample unit (and at "
                "least one unit)"
            )
        ids = list(range(1, n + 1)) if sample_ids is None else _as_list(sample_ids)
        if len(ids) != n:
            raise AccuracyError(f"{len(ids)} sample_ids for {n} sample units; give one id per unit")
        if classes is None:
            classes = _sorted_labels({*mapped, *reference})
        classes = tuple(classes)
        lookup = {c: i for i, c in enumerate(classes)}
        if len(lookup) != len(classes):
            twice = next(c for c in classes if classes.count(c) > 1)
            raise AccuracyError(f"class {twice!r} is listed twice in classes; list each once")
        sizes = {h: _size(h, v, word) for h, v in stratum_sizes.items()}
        names = tuple(h for h, v in sizes.items() if v > 0)
        stratum_index = {h: i for i, h in enumerate(names)}
        stratum_index.update({h: -1 for h, v in sizes.items() if v == 0})
        arg = "stratum_sizes" if word == "stratum" else "class_sizes"
        s = _indices(
            strata,
            stratum_index,
            ids,
            f"its {word} {{label!r}} has no pixel count N_h in {arg}; add the {word}'s pixel "
            f"count, or correct the unit's {word}",
        )
        shown = ", ".join(map(repr, classes[:_SHOWN])) + (", ..." if len(classes) > _SHOWN else "")
        m, r = (
            _indices(
                labels,
                lookup,
                ids,
                f"its {what} {{label!r}} is not among the classes ({shown}); correct the "
                "label, or add the class to classes",
            )
            for labels, what in ((mapped, "map class"), (reference, "reference class"))
        )
        if (s == -1).any():
            first = int(np.flatnonzero(s == -1)[0])
            raise AccuracyError(
                f"{word} {strata[first]!r} has N_h = 0 pixels in {arg} but sample unit "
                f"{ids[first]!r} lies in it; give the {word}'s pixel count or correct the "
                f"unit's {word}"
            )
        n_h = np.bincount(s, minlength=len(names))
        big_n = np.array([sizes[h] for h in names], dtype=float)
        for h, count, size in zip(names, n_h, big_n, strict=True):
            if count > size:
                raise AccuracyError(
                    f"{word} {h!r} has {count} sample units but only N_h = {size:.0f} pixels; "
                    f"check that {arg} are pixel counts (not hectares) and the units' "
                    f"{word} labels"
                )
            if count == 0:
                fix = (
                    f"sample it, or leave it out of {arg} and report estimates for the rest "
                    "of the region only"
                    if word == "stratum"
                    else "merge it with a similar post-stratum or enlarge the sample"
                )
                raise AccuracyError(
                    f"{word} {h!r} ({size:.0f} pixels) has no sample units, so nothing can be "
                    f"said about its area; {fix}"
                )
        same = all(st == mc for st, mc in zip(strata, mapped, strict=True))
        return cls(classes, names, m, r, s, big_n, n_h, same and set(names) <= set(lookup), word)


def _as_list(values: Sequence[Hashable]) -> list[Hashable]:
    return values.tolist() if isinstance(values, np.ndarray) else list(values)


def _sorted_labels(labels: set[Hashable]) -> tuple[Hashable, ...]:
    try:
        return tuple(sorted(labels))  # type: ignore[type-var]
    except TypeError:  # mixed types (1 and "1"): sort by text, deterministically
        return tuple(sorted(labels, key=lambda v: (type(v).__name__, str(v))))


def _size(stratum: Hashable, value: float, word: str) -> int:
    if not (isinstance(value, int | np.integer | float | np.floating) and value == int(value)):
        raise AccuracyError(
            f"{word} {stratum!r}: size {value!r} is not a whole number of pixels; give N_h as "
            "a pixel count"
        )
    if value < 0:
        raise AccuracyError(f"{word} {stratum!r}: size {value!r} is negative; give its pixel count")
    return int(value)


def _indices(
    labels: list[Hashable], lookup: Mapping[Hashable, int], ids: list[Hashable], problem: str
) -> np.ndarray:
    """Labels -> indices, or an error naming the first unit whose label is unknown.

    ``problem`` is the message after the unit's id, with ``{label!r}`` for the label.
    """
    try:
        return np.fromiter((lookup[v] for v in labels), dtype=np.intp, count=len(labels))
    except (KeyError, TypeError):
        pass
    for unit, label in zip(ids, labels, strict=True):
        try:
            lookup[label]
        except (KeyError, TypeError):
            raise AccuracyError(f"sample unit {unit!r}: " + problem.format(label=label)) from None
    raise AssertionError("unreachable: a lookup failed but no label is unknown")
