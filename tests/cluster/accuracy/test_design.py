"""Drawing a stratified sample from a chunked raster: exact, inside, seeded, uniform."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest
from scipy.stats import chisquare

from cluster.accuracy import (
    AccuracyError,
    Chunk,
    Chunks,
    allocate_proportional,
    count_strata,
    draw_ranks,
    draw_stratified_sample,
)
from cluster.accuracy.design import _distinct_ranks

NODATA = 255


def chunked(raster: np.ndarray, height: int, width: int) -> Chunks:
    """A chunk source over an in-memory raster: windows of height x width, row by row."""

    def chunks() -> Iterator[Chunk]:
        for row in range(0, raster.shape[0], height):
            for col in range(0, raster.shape[1], width):
                yield row, col, raster[row : row + height, col : col + width]

    return chunks


@pytest.fixture(scope="module")
def raster() -> np.ndarray:
    """53 x 71 pixels of strata 0-3 (unequal shares) and a nodata border."""
    rng = np.random.default_rng(11)
    codes = rng.choice(4, size=(53, 71), p=[0.55, 0.25, 0.15, 0.05]).astype(np.uint8)
    codes[:3] = NODATA
    codes[:, -2:] = NODATA
    return codes


def test_counts_are_exact(raster):
    sizes = count_strata(chunked(raster, 16, 20), nodata=NODATA)
    values, counts = np.unique(raster[raster != NODATA], return_counts=True)
    assert sizes == dict(zip(values.tolist(), counts.tolist(), strict=True))
    # Without nodata the border is a stratum of its own.
    assert count_strata(chunked(raster, 16, 20))[NODATA] == (raster == NODATA).sum()


def test_points_lie_in_their_stratum_and_match_a_brute_force_draw(raster):
    chunks = chunked(raster, 16, 20)
    allocation = {0: 40, 1: 30, 2: 20, 3: 10}
    sample = draw_stratified_sample(chunks, allocation, seed=4, nodata=NODATA)
    assert sample.sample_sizes == allocation
    assert dict(sample.stratum_sizes) == count_strata(chunks, nodata=NODATA)
    for point in sample.points:
        assert raster[point.row, point.col] == point.stratum
        assert point.stratum_pixels == sample.stratum_sizes[point.stratum]
        assert point.stratum_sample == allocation[point.stratum]
    positions = set(zip(sample.rows.tolist(), sample.cols.tolist(), strict=True))
    assert len(positions) == 100  # distinct
    # Brute force: list every pixel in chunk order, then row-major inside the chunk.
    order = [
        (row + r, col + c, int(v))
        for row, col, chunk in chunks()
        for (r, c), v in np.ndenumerate(chunk)
        if v != NODATA
    ]
    ranks = draw_ranks(sample.stratum_sizes, allocation, seed=4)
    for stratum, picked in ranks.items():
        pixels = [(r, c) for r, c, v in order if v == stratum]
        expected = [pixels[i] for i in picked]
        found = [(p.row, p.col) for p in sample.points if p.stratum == stratum]
        assert found == expected


def test_same_seed_same_sample_whatever_the_chunking(raster):
    allocation = {0: 25, 1: 25, 2: 25, 3: 25}
    first = draw_stratified_sample(chunked(raster, 16, 20), allocation, seed=8, nodata=NODATA)
    again = draw_stratified_sample(chunked(raster, 16, 20), allocation, seed=8, nodata=NODATA)
    assert first == again
    other = draw_stratified_sample(chunked(raster, 16, 20), allocation, seed=9, nodata=NODATA)
    assert set(first.points) != set(other.points)
    # Chunks of whole rows rank the pixels row-major over the whole raster: another order,
    # the same sizes, a sample of the same design.
    rows = draw_stratified_sample(chunked(raster, 5, 71), allocation, seed=8, nodata=NODATA)
    assert rows.sample_sizes == first.sample_sizes and rows.stratum_sizes == first.stratum_sizes
    # One stratum's n_h leaves the others' points alone.
    more = draw_stratified_sample(
        chunked(raster, 16, 20), {**allocation, 3: 40}, seed=8, nodata=NODATA
    )
    assert [p for p in more.points if p.stratum == 0] == [p for p in first.points if p.stratum == 0]


def test_allocation_can_follow_the_counts(raster):
    sample = draw_stratified_sample(
        chunked(raster, 16, 20),
        lambda sizes: allocate_proportional(120, sizes, minimum=20),
        seed=1,
        nodata=NODATA,
        stratum_names={0: "water"},
    )
    assert sum(sample.sample_sizes.values()) == 120 and min(sample.sample_sizes.values()) == 20
    assert sample.stratum_names == {0: "water", 1: "1", 2: "2", 3: "3"}


def test_every_pixel_is_equally_likely():
    """Each pixel of a stratum is drawn in about n_h / N_h of the samples (chi-square)."""
    raster = np.array([[0, 0, 1, 1, 0, 2, 2], [1, 0, 0, 2, 2, 2, 0], [0, 1, 1, 1, 0, 0, 2]] * 2)
    chunks = chunked(raster, 4, 3)  # uneven chunks: 4 rows then 2, 3 columns then 1
    allocation = {0: 3, 1: 2, 2: 4}
    hits = np.zeros(raster.shape)
    draws = 1500
    for seed in range(draws):
        sample = draw_stratified_sample(chunks, allocation, seed=seed)
        np.add.at(hits, (sample.rows, sample.cols), 1)
    for stratum, n_h in allocation.items():
        observed = hits[raster == stratum]
        expected = draws * n_h / observed.size
        assert observed.sum() == draws * n_h
        assert chisquare(observed, np.full(observed.size, expected)).pvalue > 0.001, stratum


def test_ranks_for_huge_strata_in_small_memory():
    rng = np.random.default_rng(0)
    ranks = _distinct_ranks(rng, 10**12, 5000)
    assert len(np.unique(ranks)) == 5000 and (np.diff(ranks) > 0).all()
    assert ranks[0] >= 0 and ranks[-1] < 10**12
    # Spread over the whole range: the deciles hold about a tenth each.
    deciles = np.bincount(ranks // 10**11, minlength=10)
    assert deciles.min() > 400 and deciles.max() < 600
    assert _distinct_ranks(rng, 7, 7).tolist() == list(range(7))
    sparse = _distinct_ranks(rng, 100, 20)  # few duplicates, but some: topped up
    assert len(np.unique(sparse)) == 20


def test_refusals(raster):
    chunks = chunked(raster, 16, 20)
    with pytest.raises(AccuracyError, match=r"stratum 3 .* has no sample size in the allocation"):
        draw_stratified_sample(chunks, {0: 5, 1: 5, 2: 5}, seed=0, nodata=NODATA)
    with pytest.raises(AccuracyError, match=r"stratum 3 has \d+ pixels but the allocation asks"):
        draw_stratified_sample(chunks, {0: 5, 1: 5, 2: 5, 3: 10_000}, seed=0, nodata=NODATA)
    with pytest.raises(AccuracyError, match="seed must be a whole number"):
        draw_stratified_sample(chunks, {0: 5, 1: 5, 2: 5, 3: 5}, seed=-1, nodata=NODATA)
    with pytest.raises(AccuracyError, match="2-D integer array"):
        draw_stratified_sample(lambda: [(0, 0, np.zeros((2, 2)))], {0: 1}, seed=0)

    calls = []

    def shifting() -> Iterator[Chunk]:  # a source that changes between the passes
        calls.append(1)
        yield 0, 0, np.full((4, 4), len(calls), dtype=np.int16)

    with pytest.raises(AccuracyError, match="stratum 2, which the first pass did not see"):
        draw_stratified_sample(shifting, {1: 2}, seed=0)
