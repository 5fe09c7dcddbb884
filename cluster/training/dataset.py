"""Chips from the chip store as the training loop wants them: streamed, in bounded memory.

Training never holds the label set in memory: a batch is read from the store
when it is needed (a DataLoader may read ahead in worker processes), so the
chips of a whole state train on one machine. Order and augmentation are drawn
from the seed, the epoch and the position alone, never from which worker read
what, so a run is the same with any number of loader workers. The loop is
ready for one data-parallel worker per GPU: each takes every n-th batch.

Labels a chip may not use (other splits' pixels, training pixels inside the
split buffer, pixels without imagery) are set to IGNORE before the loss sees
them; input NaN becomes 0 after normalisation, the training mean, as at
prediction time.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from cluster.errors import ClusterError
from cluster.training.chipstore import ChipStore
from cluster.training.split import NAMES, TRAIN, BlockSplit
from unet.augment import augment
from unet.data import IGNORE, normalize, weights_from_counts

__all__ = ["ChipDataset", "band_stats", "class_weights", "training_batches"]

_STATS_CHIPS = 2000  # chips sampled for the band statistics: plenty for a mean


class ChipDataset(Dataset):
    """``dataset[(position, seed)]``: one chip of ``split``'s ``code``, normalised,
    its unusable labels ignored, augmented by a generator seeded with ``seed``."""

    def __init__(
        self,
        uri: str,
        split: BlockSplit,
        code: int,
        mean: np.ndarray,
        std: np.ndarray,
        augmentation: str = "none",
    ) -> None:
        self.uri, self.split, self.code = uri, split, code
        self.mean, self.std, self.augmentation = mean, std, augmentation
        self.indexes = np.flatnonzero(split.chip_split == code)
        if not len(self.indexes):
            raise ClusterError(f"chip store {uri} has no {NAMES[code]} chips: check the split")
        self._store: ChipStore | None = None  # opened in each loader worker, not pickled

    def __len__(self) -> int:
        return len(self.indexes)

    def __getstate__(self) -> dict[str, object]:
        return {**self.__dict__, "_store": None}

    @property
    def store(self) -> ChipStore:
        if self._store is None:
            self._store = ChipStore.open(self.uri)
        return self._store

    def chip(self, position: int) -> tuple[np.ndarray, np.ndarray]:
        """Normalised image and usable labels of the split's ``position``-th chip."""
        index = int(self.indexes[position])
        image, label = self.store.read(index)
        store = self.store
        usable = self.split.label_mask(index, int(store.rows[index]), int(store.cols[index]))
        label = np.where(usable, label, IGNORE).astype(np.uint8)
        return normalize(image, self.mean, self.std), label

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        position, seed = key
        image, label = self.chip(position)
        image, label = augment(image, label, self.augmentation, np.random.default_rng(seed))
        return torch.from_numpy(image), torch.from_numpy(label).long()


class _Shuffled(Sampler[tuple[int, int]]):
    """Endless (position, augmentation seed) pairs: a new permutation each epoch."""

    def __init__(self, n: int, seed: int, rank: int = 0, world: int = 1) -> None:
        self.n, self.seed, self.rank, self.world = n, seed, rank, world

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, drawn = 0, 0
        while True:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.n)
            for position in order:
                if drawn % self.world == self.rank:
                    yield int(position), (self.seed << 32) + drawn  # one stream per draw
                drawn += 1
            epoch += 1


def training_batches(
    dataset: ChipDataset, batch_size: int, seed: int, workers: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An endless stream of (image, label) batches of the training chips."""
    loader = DataLoader(
        dataset, batch_size=batch_size, sampler=_Shuffled(len(dataset), seed),
        num_workers=workers, persistent_workers=workers > 0, pin_memory=torch.cuda.is_available(),
    )  # fmt: skip
    return iter(loader)


def band_stats(store: ChipStore, split: BlockSplit, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and std over the valid core pixels of (a seeded sample of) the
    training chips: never validation or test pixels."""
    chosen = np.flatnonzero(split.chip_split == TRAIN)
    if len(chosen) > _STATS_CHIPS:
        chosen = np.sort(np.random.default_rng(seed).choice(chosen, _STATS_CHIPS, replace=False))
    g = store.grid
    core = slice(g.halo, g.halo + g.tile_size)
    total = np.zeros(len(store.bands))
    squares = np.zeros(len(store.bands))
    n = 0
    for index in chosen:
        image = store.image[int(index)][:, core, core]
        valid = np.isfinite(image).all(axis=0)
        pixels = image[:, valid].astype(np.float64)
        total += pixels.sum(axis=1)
        squares += (pixels**2).sum(axis=1)
        n += pixels.shape[1]
    if n == 0:
        raise ClusterError(f"chip store {store.uri}: the training chips hold no valid pixel")
    mean = total / n
    std = np.sqrt(np.maximum(squares / n - mean**2, 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


def class_weights(counts: np.ndarray, split: BlockSplit) -> torch.Tensor:
    """As the raster path weights classes, from the training chips' labelled pixels."""
    return weights_from_counts(counts[split.chip_split == TRAIN].sum(axis=0))
