"""Splits by stand: each feature of the reference data in one split only."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from cluster.errors import ClusterError
from cluster.sample.catalog import write_region
from cluster.sample.references import write_references
from cluster.sample.scene import CLASS_NAMES, SampleSpec
from cluster.tiles.grid import Grid, Tile
from cluster.training.chips import labelled_counts
from cluster.training.labels import LabelSpec, open_labels
from cluster.training.split import TEST, TRAIN, UNUSED, VAL, SplitSpec, split_chips
from cluster.training.stands import feature_ids

SPEC = SampleSpec(seed=3, width=384, height=384, stand_px=64)
GRID = Grid(SPEC.crs, SPEC.origin, SPEC.resolution, 32, 16)


@pytest.fixture(scope="module")
def stands(tmp_path_factory):
    region = write_region(tmp_path_factory.mktemp("stands"), SPEC, layouts=())
    refs = write_references(region, SPEC)
    labels = open_labels(LabelSpec(str(refs.stands), "species"), CLASS_NAMES, SPEC.crs)
    cells = labels.cells(GRID)
    counts = labelled_counts(labels, GRID, cells, len(CLASS_NAMES))
    rows = np.array([t.row for t in cells])
    cols = np.array([t.col for t in cells])
    return labels, rows, cols, counts


def _splits_of_each_stand(split, labels, rows, cols) -> dict[int, set[int]]:
    """The splits whose chips use some pixel of each feature (label_mask: what the
    chip's split lets it learn from or be scored on)."""
    seen: dict[int, set[int]] = defaultdict(set)
    shape = GRID.tile_shape(halo=True)
    for i, code in enumerate(split.chip_split):
        if code == UNUSED:
            continue
        tile = Tile(int(rows[i]), int(cols[i]))
        ids = feature_ids(labels, GRID, GRID.tile_bounds(tile, halo=True), shape)
        used = split.label_mask(i, int(rows[i]), int(cols[i])) & (ids >= 0)
        for feature in np.unique(ids[used]):
            seen[int(feature)].add(int(code))
    return seen


def test_no_stand_lies_in_two_splits(stands):
    labels, rows, cols, counts = stands
    spec = SplitSpec(kind="auto", block_px=64, buffer_px=16, fractions=(0.6, 0.2, 0.2))
    split = split_chips(spec, GRID, rows, cols, counts, CLASS_NAMES, labels)
    assert split.stands is not None
    seen = _splits_of_each_stand(split, labels, rows, cols)
    assert len(seen) > 20
    assert all(len(codes) == 1 for codes in seen.values()), {
        f: c for f, c in seen.items() if len(c) > 1
    }
    assert {c for codes in seen.values() for c in codes} == {TRAIN, VAL, TEST}
    summary = split.summary(counts, rows, cols)
    assert sum(s["features"] for s in summary.values()) == labels.owners.max() + 1
    assert all(s["classes"] == len(CLASS_NAMES) for s in summary.values())

    blocks = split_chips(
        SplitSpec(kind="blocks", block_px=64, buffer_px=16, fractions=(0.6, 0.2, 0.2)),
        GRID, rows, cols, counts, CLASS_NAMES, labels,
    )  # fmt: skip
    leaked = [f for f, c in _splits_of_each_stand(blocks, labels, rows, cols).items() if len(c) > 1]
    assert leaked  # what the stands split is for: blocks cut stands at their edges


def test_stands_need_features(stands):
    _, rows, cols, counts = stands
    spec = SplitSpec(kind="stands", block_px=64, buffer_px=16, fractions=(0.6, 0.2, 0.2))
    with pytest.raises(ClusterError, match="raster labels have no features"):
        split_chips(spec, GRID, rows, cols, counts, CLASS_NAMES, None)
