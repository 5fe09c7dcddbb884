"""Strata = map class x confidence band, as integer codes with readable names.

Errors concentrate where the classifier was unsure. Stratifying each map
class by its confidence puts sample units where the errors are and, with
Stehman's (2014) estimators, still gives unbiased estimates for the map
classes (the strata need not be the classes). This module turns a class chunk
and its confidence chunk into stratum codes for ``cluster.accuracy.design``,
and back: a stratum's name ("conifer, confidence 0.60-0.80") and its map class.

Code = (position of the class in ``classes``) x (number of bands) + band, so
codes are small non-negative integers (counted fast) and stable for a given
class list and band edges.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import zip_longest
from types import MappingProxyType

import numpy as np

from cluster.accuracy.design import Chunk, Chunks
from cluster.accuracy.errors import AccuracyError

__all__ = ["ClassConfidenceStrata"]


@dataclass(frozen=True)
class ClassConfidenceStrata:
    """Strata from class codes x confidence bands.

    ``classes`` maps each map class code to its name; ``edges`` are the band
    boundaries in increasing order, e.g. (0.6, 0.8) gives the bands
    confidence < 0.6, 0.6 <= confidence < 0.8 and confidence >= 0.8.
    ``nodata`` is the stratum code written where the class is nodata or the
    confidence is not a number; give it to ``draw_stratified_sample``.
    """

    classes: Mapping[int, str]
    edges: tuple[float, ...]
    nodata: int = -1

    def __post_init__(self) -> None:
        if not self.classes:
            raise AccuracyError("no classes given; map each class code to its name")
        edges = np.asarray(self.edges, dtype=float)
        if edges.ndim != 1 or (np.diff(edges) <= 0).any() or not np.isfinite(edges).all():
            raise AccuracyError(
                f"confidence band edges {self.edges!r} are not increasing finite numbers; "
                "give them as e.g. (0.6, 0.8)"
            )
        if self.nodata >= 0:
            raise AccuracyError(
                f"nodata {self.nodata} could be a stratum code; give a negative value (-1)"
            )
        object.__setattr__(self, "classes", MappingProxyType(dict(self.classes)))
        object.__setattr__(self, "edges", tuple(float(e) for e in edges))

    @property
    def bands(self) -> int:
        return len(self.edges) + 1

    @property
    def names(self) -> dict[int, str]:
        """Every stratum code with its name, e.g. {4: "conifer, confidence < 0.60", ...}."""
        return {
            i * self.bands + band: f"{name}, confidence {self._band_text(band)}"
            for i, name in enumerate(self.classes.values())
            for band in range(self.bands)
        }

    def code(self, class_code: int, band: int) -> int:
        """The stratum code of a class code and a band index (0 = least confident)."""
        return list(self.classes).index(class_code) * self.bands + band

    def map_class(self, stratum: int) -> int:
        """The map class code of a stratum: what the estimators need as the unit's map class."""
        return list(self.classes)[stratum // self.bands]

    def encode(
        self, classes: np.ndarray, confidence: np.ndarray, *, class_nodata: int | None = None
    ) -> np.ndarray:
        """Stratum codes of one chunk (int32), ``nodata`` where there is no class or confidence."""
        classes, confidence = np.asarray(classes), np.asarray(confidence, dtype=float)
        if classes.shape != confidence.shape:
            raise AccuracyError(
                f"class chunk {classes.shape} and confidence chunk {confidence.shape} differ in "
                "shape; read both on the same window"
            )
        known = np.array(list(self.classes))
        order = np.argsort(known)
        valid = np.isfinite(confidence)
        if class_nodata is not None:
            valid &= classes != class_nodata
        where = np.clip(np.searchsorted(known[order], classes), 0, len(known) - 1)
        position = order[where]
        unknown = valid & (known[position] != classes)
        if unknown.any():
            codes = sorted(set(np.unique(classes[unknown]).tolist()))
            raise AccuracyError(
                f"class codes {codes[:5]} are in the map but not in classes "
                f"({dict(self.classes)}); add them, or pass their value as class_nodata"
            )
        band = np.searchsorted(np.asarray(self.edges), confidence, side="right")
        return np.where(valid, position * self.bands + band, self.nodata).astype(np.int32)

    def chunks(
        self, class_chunks: Chunks, confidence_chunks: Chunks, *, class_nodata: int | None = None
    ) -> Chunks:
        """A chunk source of stratum codes from two aligned sources (same windows, same order)."""

        def combined() -> Iterable[Chunk]:
            for first, second in zip_longest(class_chunks(), confidence_chunks()):
                if first is None or second is None:
                    raise AccuracyError(
                        "the class and confidence sources yield different numbers of chunks; "
                        "both must yield the same windows in the same order"
                    )
                (r1, c1, classes), (r2, c2, confidence) = first, second
                if (r1, c1) != (r2, c2):
                    raise AccuracyError(
                        f"class chunk at row {r1}, col {c1} is paired with a confidence chunk at "
                        f"row {r2}, col {c2}; both sources must yield the same windows in order"
                    )
                yield r1, c1, self.encode(classes, confidence, class_nodata=class_nodata)

        return combined

    def _band_text(self, band: int) -> str:
        if band == 0:
            return f"< {self.edges[0]:.2f}" if self.edges else "any"
        if band == len(self.edges):
            return f">= {self.edges[-1]:.2f}"
        return f"{self.edges[band - 1]:.2f}-{self.edges[band]:.2f}"
