"""A design drawn from a store: exact stratum sizes, points in their strata, seeded."""

from __future__ import annotations

import numpy as np
import pytest

from cluster.accuracy.errors import AccuracyError
from cluster.accuracy.samplesize import (
    allocate_neyman,
    allocate_proportional,
    sample_size_overall_accuracy,
)
from cluster.accuracy.sampling import DesignSpec, draw_design
from cluster.accuracy.storechunks import StoreMap, probability
from cluster.accuracy.strata import ClassConfidenceStrata
from cluster.predict.store import NODATA
from tests.cluster.accuracy.storemaps import CLASS_NAMES, TS, known_map, pixel, write_store


@pytest.fixture(scope="module")
def arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return known_map()


@pytest.fixture(scope="module")
def source(tmp_path_factory, arrays) -> StoreMap:
    uri = str(tmp_path_factory.mktemp("sampling") / "map.zarr")
    write_store(uri, arrays[0], arrays[1])
    return StoreMap.open(uri, block_px=2 * TS)


def class_sizes(classes: np.ndarray) -> dict[str, int]:
    values, counts = np.unique(classes[classes != NODATA], return_counts=True)
    return {CLASS_NAMES[v]: int(n) for v, n in zip(values, counts, strict=True)}


def test_class_strata_exact_sizes_points_inside_and_seeded(source, arrays):
    classes = arrays[0]
    spec = DesignSpec(seed=5, n=60, allocation="proportional-min", minimum=8)
    drawn = draw_design(source, spec)
    design, points = drawn.design, drawn.points
    sizes = class_sizes(classes)
    assert design.stratum_sizes == sizes
    assert {s.name: s.sample for s in design.strata} == allocate_proportional(60, sizes, minimum=8)
    assert design.n == 60 == len(points.ids) and design.strata_kind == "map classes"
    assert points.ids.tolist() == list(range(1, 61))
    for i, (x, y) in enumerate(zip(points.x, points.y, strict=True)):
        row, col = pixel(x, y)
        assert CLASS_NAMES[classes[row, col]] == points.stratum[i] == points.map_class[i]
        assert points.stratum_pixels[i] == sizes[points.stratum[i]]
    for s in design.strata:  # ids are contiguous per stratum, as design.json says
        assert set(points.stratum[np.isin(points.ids, list(s.ids))]) == {s.name}
    again = draw_design(source, spec)
    np.testing.assert_array_equal(again.points.x, points.x)
    np.testing.assert_array_equal(again.points.y, points.y)
    other = draw_design(source, DesignSpec(seed=6, n=60, allocation="proportional-min", minimum=8))
    assert not np.array_equal(other.points.x, points.x)


def test_block_size_does_not_change_the_draw(source, arrays, tmp_path):
    spec = DesignSpec(seed=1, n=40)
    small = draw_design(StoreMap(source.store, block_px=TS), spec)
    large = draw_design(StoreMap(source.store, block_px=10_000), spec)
    assert small.design.stratum_sizes == large.design.stratum_sizes
    # Chunk order differs, so the points may differ; each still lies in its stratum.
    for drawn in (small, large):
        for x, y, name in zip(drawn.points.x, drawn.points.y, drawn.points.stratum, strict=True):
            assert CLASS_NAMES[arrays[0][pixel(x, y)]] == name


def test_sample_size_from_target_se_and_neyman_allocation(source, arrays):
    users = {"water": 0.95, "open land": 0.7}
    spec = DesignSpec(
        seed=2, target_se=0.03, expected_users=users, default_users=0.8, allocation="neyman"
    )
    drawn = draw_design(source, spec)
    sizes = class_sizes(arrays[0])
    expected = {c: users.get(c, 0.8) for c in sizes}
    n = sample_size_overall_accuracy(sizes, expected, 0.03)
    assert drawn.design.n == n
    assert {s.name: s.sample for s in drawn.design.strata} == allocate_neyman(n, sizes, expected)
    assert drawn.design.expected_users == {c: users.get(c, 0.8) for c in CLASS_NAMES}
    assert drawn.design.target_se == 0.03


def test_class_by_confidence_strata(source, arrays):
    classes, confidence, _ = arrays
    drawn = draw_design(source, DesignSpec(seed=3, n=80, confidence_bands=(0.6,), minimum=4))
    bands = ClassConfidenceStrata(dict(enumerate(CLASS_NAMES)), (0.6,))
    codes = bands.encode(classes, probability(confidence), class_nodata=NODATA)
    names = bands.names
    assert drawn.design.strata_kind == "class x confidence band"
    expected = {
        names[v]: int(n)
        for v, n in zip(*np.unique(codes[codes >= 0], return_counts=True), strict=True)
    }
    assert drawn.design.stratum_sizes == expected
    for x, y, stratum, mapped in zip(
        drawn.points.x, drawn.points.y, drawn.points.stratum, drawn.points.map_class, strict=True
    ):
        row, col = pixel(x, y)
        assert names[codes[row, col]] == stratum
        assert CLASS_NAMES[classes[row, col]] == mapped
    assert {s.map_class for s in drawn.design.strata} == set(CLASS_NAMES)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({}, "either as n or as a target standard error"),
        ({"n": 10, "target_se": 0.01}, "not both or neither"),
        ({"n": 10, "allocation": "random"}, "not one of proportional"),
        ({"n": 10, "default_users": 1.5}, "not a proportion"),
    ],
)
def test_spec_refusals(changes, message):
    with pytest.raises(AccuracyError, match=message):
        DesignSpec(seed=0, **changes)


def test_missing_or_unknown_expected_users_are_named(source):
    with pytest.raises(AccuracyError, match="class 'open land' has no expected user's accuracy"):
        draw_design(source, DesignSpec(seed=0, target_se=0.02, expected_users={"water": 0.9}))
    with pytest.raises(AccuracyError, match="'beech', which is not a class"):
        draw_design(
            source,
            DesignSpec(
                seed=0, n=20, allocation="neyman", expected_users={"beech": 0.9}, default_users=0.8
            ),
        )
    with pytest.raises(AccuracyError, match="has only"):
        draw_design(source, DesignSpec(seed=0, n=5000))
