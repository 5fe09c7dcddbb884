"""The published worked examples (Olofsson et al. 2014; Stehman 2014) as fixtures.

They live outside the repository, in ``../shared/reference-data/accuracy`` beside
the checkout (the same relative path here and in CI); where that folder is
missing the tests that need it skip and say where they looked.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

REFERENCE = Path(__file__).resolve().parents[3] / ".." / "shared" / "reference-data" / "accuracy"


def read_csv(name: str) -> list[dict[str, str]]:
    with (REFERENCE / name).open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def reference_data() -> Path:
    """The reference-data folder, or a skip naming where it should be."""
    if not REFERENCE.is_dir():
        pytest.skip(
            f"published worked examples not found at {REFERENCE.resolve()}: the accuracy "
            "reference data live in ../shared/reference-data/accuracy beside the checkout"
        )
    return REFERENCE


@pytest.fixture(scope="session")
def olofsson(reference_data: Path) -> tuple[list[list[int]], dict[str, int], float]:
    """Olofsson et al. (2014) Table 8: counts n_ij (rows map), mapped pixels, pixel area (m^2)."""
    pixels = read_csv("olofsson2014_mapped_pixels.csv")
    mapped = {row["map_class"]: int(row["mapped_pixels"]) for row in pixels}
    names = list(mapped)
    counts = [[0] * len(names) for _ in names]
    for row in read_csv("olofsson2014_table8.csv"):
        counts[names.index(row["map_class"])][names.index(row["reference_class"])] = int(
            row["count"]
        )
    (area_ha,) = {float(row["pixel_area_ha"]) for row in pixels}
    return counts, mapped, area_ha * 10_000


@pytest.fixture(scope="session")
def stehman(reference_data: Path) -> tuple[list[dict[str, str]], dict[str, int]]:
    """Stehman (2014) Table 2: the 40 sample units, and pixels per stratum."""
    sizes = {r["stratum"]: int(r["pixels_in_stratum"]) for r in read_csv("stehman2014_strata.csv")}
    return read_csv("stehman2014_table2.csv"), sizes
