"""Reading a run's store for the accuracy tools: whole-tile blocks, exact counts, points."""

from __future__ import annotations

import numpy as np
import pytest
from pyproj import Transformer

from cluster.accuracy.design import count_strata
from cluster.accuracy.errors import AccuracyError
from cluster.accuracy.storechunks import StoreMap, StrataScheme, probability
from cluster.accuracy.strata import ClassConfidenceStrata
from cluster.predict.store import NODATA
from tests.cluster.accuracy.storemaps import CLASS_NAMES, LAYOUT, TS, known_map, write_store


@pytest.fixture(scope="module")
def arrays() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return known_map()


@pytest.fixture(scope="module")
def store_uri(tmp_path_factory, arrays) -> str:
    uri = str(tmp_path_factory.mktemp("storechunks") / "map.zarr")
    write_store(uri, arrays[0], arrays[1])
    return uri


@pytest.mark.parametrize("block_px", [1, TS, 2 * TS, 3 * TS + 5, 10_000])
def test_blocks_are_whole_tiles_covering_each_pixel_once(store_uri, arrays, block_px):
    source = StoreMap.open(store_uri, block_px=block_px)
    seen = np.zeros(source.shape, np.int64)
    step = max(1, block_px // TS) * TS
    for row, col, block in source.class_chunks()():
        assert row % TS == 0 and col % TS == 0
        assert block.shape[0] <= step and block.shape[1] <= step
        np.testing.assert_array_equal(
            block, arrays[0][row : row + block.shape[0], col : col + block.shape[1]]
        )
        seen[row : row + block.shape[0], col : col + block.shape[1]] += 1
    assert (seen == 1).all()


def test_counts_via_chunks_equal_unique_over_the_whole_array(store_uri, arrays):
    classes, confidence, _ = arrays
    source = StoreMap.open(store_uri, block_px=TS)
    values, counts = np.unique(classes[classes != NODATA], return_counts=True)
    whole = {CLASS_NAMES[v]: int(n) for v, n in zip(values, counts, strict=True)}
    assert source.count_classes() == whole
    # Class x confidence strata, counted block by block, against encoding the whole array.
    scheme = StrataScheme(CLASS_NAMES, (0.5, 0.8))
    bands = ClassConfidenceStrata(dict(enumerate(CLASS_NAMES)), (0.5, 0.8))
    codes = bands.encode(classes, probability(confidence), class_nodata=NODATA)
    values, counts = np.unique(codes[codes != bands.nodata], return_counts=True)
    chunked = count_strata(scheme.chunks(source), nodata=scheme.nodata)
    assert chunked == dict(zip(values.tolist(), counts.tolist(), strict=True))


def test_values_and_strata_at_points(store_uri, arrays):
    classes, confidence, _ = arrays
    source = StoreMap.open(store_uri)
    rng = np.random.default_rng(2)
    rows = rng.integers(0, LAYOUT.shape[0], 200)
    cols = rng.integers(0, LAYOUT.shape[1], 200)
    np.testing.assert_array_equal(source.values_at("class", rows, cols), classes[rows, cols])
    np.testing.assert_array_equal(
        source.values_at("confidence", rows, cols), confidence[rows, cols]
    )
    scheme = StrataScheme(CLASS_NAMES, (0.6,))
    encoded = ClassConfidenceStrata(dict(enumerate(CLASS_NAMES)), (0.6,)).encode(
        classes, probability(confidence), class_nodata=NODATA
    )
    np.testing.assert_array_equal(scheme.at(source, rows, cols), encoded[rows, cols])


def test_pixel_centres_round_trip_through_map_crs_and_lonlat(store_uri):
    source = StoreMap.open(store_uri)
    rows, cols = np.array([0, 5, 63]), np.array([0, 17, 79])
    xs, ys = source.centres(rows, cols)
    t = LAYOUT.transform
    np.testing.assert_allclose(xs, t.c + (cols + 0.5) * 10.0)
    np.testing.assert_allclose(ys, t.f - (rows + 0.5) * 10.0)
    back_rows, back_cols = source.pixels_of(xs, ys)
    np.testing.assert_array_equal(back_rows, rows)
    np.testing.assert_array_equal(back_cols, cols)
    lon, lat = source.lonlat(xs, ys)
    expected = Transformer.from_crs("EPSG:25832", "EPSG:4326", always_xy=True).transform(xs, ys)
    np.testing.assert_allclose(lon, expected[0], atol=1e-9)
    np.testing.assert_allclose(lat, expected[1], atol=1e-9)
    again = source.from_crs(lon, lat, "EPSG:4326")
    np.testing.assert_allclose(again[0], xs, atol=1e-6)
    np.testing.assert_allclose(again[1], ys, atol=1e-6)
    off_rows, off_cols = source.pixels_of(np.array([t.c - 1.0]), np.array([t.f + 1.0]))
    assert not source.on_map(off_rows, off_cols).any()


def test_facts_and_pixel_area(store_uri):
    source = StoreMap.open(store_uri)
    facts = source.facts()
    assert source.pixel_area_m2 == 100.0
    assert facts["run_id"] == "run-acc" and facts["crs"]["epsg"] == 25832
    assert facts["shape"] == list(LAYOUT.shape) and facts["tiles_done"] == facts["tiles"] - 1
    assert [c["name"] for c in facts["classes"]] == list(CLASS_NAMES)


def test_block_size_must_be_positive(store_uri):
    with pytest.raises(AccuracyError, match="block_px"):
        StoreMap.open(store_uri, block_px=0)
