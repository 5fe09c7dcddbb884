"""Spatial block splits: every class in every split, near the fractions, and no
training pixel within the buffer of another split's pixels."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from cluster.errors import ClusterError
from cluster.tiles.grid import Grid
from cluster.training.split import TEST, TRAIN, UNUSED, VAL, SplitSpec, split_chips

CHIP, HALO = 32, 8
GRID = Grid("EPSG:25832", (0.0, 10_000.0), 10.0, CHIP, HALO)
NAMES = ("water", "open", "broadleaf", "conifer")


def _chips(n: int = 24, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An n x n chip field whose classes come in patches of a few chips, so
    blocks differ in their mix as real stands do."""
    rng = np.random.default_rng(seed)
    rows, cols = np.divmod(np.arange(n * n), n)
    patch = rng.integers(0, len(NAMES), size=(n // 3 + 1, n // 3 + 1))
    main = patch[rows // 3, cols // 3]
    counts = np.zeros((n * n, len(NAMES)), dtype=np.int64)
    counts[np.arange(n * n), main] = rng.integers(200, 900, size=n * n)
    counts[np.arange(n * n), (main + 1) % len(NAMES)] = rng.integers(0, 100, size=n * n)
    counts[rng.random(n * n) < 0.1] = 0  # chips whose core holds no label
    return rows, cols, counts


def test_blocks_put_every_class_in_every_split_near_the_fractions():
    rows, cols, counts = _chips()
    spec = SplitSpec(block_px=4 * CHIP, buffer_px=48, fractions=(0.7, 0.1, 0.2), seed=3)
    split = split_chips(spec, GRID, rows, cols, counts, NAMES)
    codes = split.chip_split
    assert set(codes[counts.sum(1) == 0]) == {UNUSED}
    assert set(codes[counts.sum(1) > 0]) == {TRAIN, VAL, TEST}
    per_split = np.stack([counts[codes == s].sum(0) for s in (TRAIN, VAL, TEST)])
    assert (per_split > 0).all()  # every class in every split
    shares = per_split.sum(1) / per_split.sum()
    np.testing.assert_allclose(shares, [0.7, 0.1, 0.2], atol=0.06)
    k = spec.block_px // CHIP  # a block's chips share its split
    for (br, bc), code in split.blocks.items():
        inside = (rows // k == br) & (cols // k == bc) & (codes != UNUSED)
        assert set(codes[inside]) <= {code}
    again = split_chips(spec, GRID, rows, cols, counts, NAMES)
    np.testing.assert_array_equal(again.chip_split, codes)  # deterministic for a seed
    other = split_chips(SplitSpec(block_px=4 * CHIP, buffer_px=48, seed=4), GRID, rows, cols,
                        counts, NAMES)  # fmt: skip
    assert (other.chip_split != codes).any()
    summary = split.summary(counts, rows, cols)
    assert summary["test"]["chips"] == int((codes == TEST).sum())
    assert 0 < summary["train"]["outside_buffer"] < summary["train"]["pixels"]


@pytest.mark.parametrize("kind", ["blocks", "east"])
def test_no_training_pixel_within_the_buffer_of_another_split(kind):
    rows, cols, counts = _chips(n=12)
    spec = SplitSpec(kind=kind, block_px=2 * CHIP, buffer_px=20, seed=1, east_fraction=0.4)
    split = split_chips(spec, GRID, rows, cols, counts, NAMES)
    size = 12 * CHIP  # the whole field, pixel by pixel
    every = split.pixel_split(np.arange(size), np.arange(size))
    foreign = (every != TRAIN) & (every != UNUSED)
    near = ndimage.distance_transform_cdt(~foreign, metric="chessboard") <= spec.buffer_px
    used = {TRAIN: 0, VAL: 0, TEST: 0}
    for i, (r, c) in enumerate(zip(rows, cols, strict=True)):
        mask = split.label_mask(i, int(r), int(c))
        assert mask.shape == (CHIP + 2 * HALO,) * 2
        top, left = r * CHIP - HALO, c * CHIP - HALO
        ys, xs = np.nonzero(mask)
        ys, xs = ys + top, xs + left
        ok = (ys >= 0) & (xs >= 0) & (ys < size) & (xs < size)
        code = split.chip_split[i]
        if code == TRAIN:
            assert not near[ys[ok], xs[ok]].any(), f"chip {i} trains inside the buffer"
        if code != UNUSED:
            assert (every[ys[ok], xs[ok]] == code).all()  # only its own split's pixels
            used[int(code)] += int(mask.sum())
        else:
            assert not mask.any()
    assert used[TRAIN] > 0 and used[TEST] > 0


def test_refusals_name_the_field_and_the_fix():
    rows, cols, counts = _chips(n=6)
    with pytest.raises(ClusterError, match=r"buffer_px 16 is less than .* radius \(48 px\)"):
        SplitSpec(buffer_px=16).check(GRID, 48)
    with pytest.raises(ClusterError, match=r"block_px 48 must be a whole multiple .* \(32 px\)"):
        SplitSpec(block_px=48, buffer_px=64).check(GRID, 48)
    with pytest.raises(ClusterError, match=r"fractions \[0.5, 0.5, 0.5\]"):
        SplitSpec(fractions=(0.5, 0.5, 0.5), buffer_px=64).check(GRID, 48)
    rare = counts.copy()
    rare[:, 3] = 0
    rare[0, 3] = 50  # conifer in one chip only: it cannot be in three splits
    spec = SplitSpec(block_px=2 * CHIP, buffer_px=64)
    with pytest.raises(ClusterError, match=r"every class into every split .* conifer \(in 1 of"):
        split_chips(spec, GRID, rows, cols, rare, NAMES)
    tight = split_chips(SplitSpec(block_px=CHIP, buffer_px=3 * CHIP, seed=2), GRID, rows, cols,
                        counts, NAMES)  # fmt: skip
    with pytest.raises(ClusterError, match=r"no training pixel lies farther than buffer_px 96"):
        tight.summary(counts, rows, cols)
    with pytest.raises(ClusterError, match="no chip holds a labelled pixel"):
        split_chips(spec, GRID, rows, cols, np.zeros_like(counts), NAMES)
