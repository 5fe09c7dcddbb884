"""Streaming chips for training: only usable labels, seeded order, train-only statistics."""

from __future__ import annotations

import numpy as np
import pytest

from cluster.sample.catalog import write_region
from cluster.sample.references import write_references
from cluster.sample.scene import BANDS, CLASS_NAMES, SampleSpec
from cluster.tiles.grid import Grid
from cluster.training.chips import ChipMaker, ChipSpec, labelled_counts
from cluster.training.chipstore import ChipStore
from cluster.training.dataset import ChipDataset, band_stats, class_weights, training_batches
from cluster.training.labels import LabelSpec, open_labels
from cluster.training.split import TEST, TRAIN, SplitSpec, split_chips
from unet.data import IGNORE

SPEC = SampleSpec(seed=4, width=256, height=256, stand_px=64)


@pytest.fixture(scope="module")
def chips(tmp_path_factory):
    """A chip store made in-process (the Ray path is tested in test_chips.py)."""
    out = tmp_path_factory.mktemp("dataset")
    region = write_region(out, SPEC, layouts=("s2",))
    refs = write_references(region, SPEC)
    spec = ChipSpec(
        catalog=str(region.catalog), grid=Grid(SPEC.crs, SPEC.origin, 10.0, 32, 16),
        bands=BANDS, class_names=CLASS_NAMES, labels=LabelSpec(str(refs.stands), "species"),
    )  # fmt: skip
    labels = open_labels(spec.labels, CLASS_NAMES, SPEC.crs)
    uri = str(out / "chips.zarr")
    cells = labels.cells(spec.grid)
    counts = labelled_counts(labels, spec.grid, cells, len(CLASS_NAMES))
    store = ChipStore.create_or_open(uri, spec.recipe(), spec.grid, BANDS, CLASS_NAMES, cells,
                                     lambda: counts)  # fmt: skip
    results = ChipMaker(spec, uri, labels).make(list(range(len(store))))
    store.mark_done([(r.index, np.asarray(r.counts)) for r in results])
    split = split_chips(SplitSpec(block_px=64, buffer_px=16, fractions=(0.6, 0.2, 0.2)),
                        spec.grid, store.rows, store.cols, store.counts(), CLASS_NAMES)  # fmt: skip
    return uri, split


def test_only_usable_labels_reach_the_loss(chips):
    uri, split = chips
    store = ChipStore.open(uri)
    mean, std = band_stats(store, split, seed=0)
    data = ChipDataset(uri, split, TRAIN, mean, std, augmentation="none")
    for position in range(len(data)):
        index = int(data.indexes[position])
        image, label = data.chip(position)
        _, raw = store.read(index)
        usable = split.label_mask(index, int(store.rows[index]), int(store.cols[index]))
        np.testing.assert_array_equal(label, np.where(usable, raw, IGNORE))
        assert np.isfinite(image).all()  # NaN input became 0, the training mean
    test = ChipDataset(uri, split, TEST, mean, std)
    _, label = test.chip(0)
    assert (label != IGNORE).any()


def test_batches_are_seeded_and_statistics_come_from_training_chips(chips):
    uri, split = chips
    store = ChipStore.open(uri)
    mean, std = band_stats(store, split, seed=0)
    core = slice(16, 48)
    train = np.concatenate([
        store.image[int(i)][:, core, core].reshape(len(BANDS), -1)
        for i in np.flatnonzero(split.chip_split == TRAIN)
    ], axis=1)  # fmt: skip
    train = train[:, np.isfinite(train).all(axis=0)]
    np.testing.assert_allclose(mean, train.mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(std, train.std(axis=1), rtol=1e-4)
    data = ChipDataset(uri, split, TRAIN, mean, std, augmentation="d4")
    first = [next(training_batches(data, 4, seed=7)) for _ in range(2)]
    np.testing.assert_array_equal(first[0][0].numpy(), first[1][0].numpy())
    other = next(training_batches(data, 4, seed=8))
    assert not np.array_equal(first[0][0].numpy(), other[0].numpy())
    x, y = first[0]
    assert x.shape == (4, len(BANDS), 64, 64) and y.shape == (4, 64, 64)
    weights = class_weights(store.counts(), split)
    assert weights.shape == (len(CLASS_NAMES),) and abs(float(weights.mean()) - 1) < 1e-6
