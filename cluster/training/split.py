"""Train / validation / test by spatial blocks, with a buffer the model cannot see across.

Neighbouring pixels look alike, so a model judged on pixels next to the ones
it learnt from is judged too kindly. The chip grid is cut into square blocks
of ``block_px``; whole blocks go to one split, so the test pixels form areas
the model never saw labels of. Training pixels also keep ``buffer_px`` away
from any block of another split: at least the U-Net's receptive radius, so no
training pixel's prediction looks at a test pixel's surroundings either.
Validation and test pixels are used whole.

Blocks are assigned per seed so that each split gets about its fraction of
every class: of many seeded shuffles (each filled greedily by labelled
pixels), the one whose worst class share is closest to the fractions wins,
among those that put every class into every split that has a fraction. The
split is computed from the chips' positions and class counts, not stored with
the pixels, so changing it needs no chip to be read again.

Where labels are features (polygons, points), ``stands`` (what ``auto``, the
default, picks for them) keeps each feature whole in one split
(``cluster.training.stands``): a pixel's split is its feature's, the feature
taking its block's. ``blocks`` stays for raster labels, which have no features.

``east`` keeps the old scheme: the eastern ``east_fraction`` of the labelled
extent is the test area, the rest trains, the buffer between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from cluster.errors import ClusterError
from cluster.tiles.grid import Grid
from cluster.training.labels import Labels, VectorLabels
from cluster.training.stands import Stands

__all__ = ["NAMES", "TEST", "TRAIN", "UNUSED", "VAL", "BlockSplit", "SplitSpec", "split_chips"]

TRAIN, VAL, TEST = 0, 1, 2
UNUSED = 255  # a chip with no labelled pixel in its core
NAMES = ("train", "validation", "test")
_TRIES = 256
KINDS = ("auto", "stands", "blocks", "east")


@dataclass(frozen=True)
class SplitSpec:
    """How chips are split; ``kind`` "auto" (stands for features, else blocks),
    "stands", "blocks" or "east"."""

    kind: str = "auto"
    block_px: int = 512
    buffer_px: int = 64
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)
    seed: int = 0
    east_fraction: float = 0.3

    def check(self, grid: Grid, receptive_radius: int) -> None:
        """Refuse a split that cannot mean what it says, naming the field and the fix."""
        if self.kind not in KINDS:
            raise ClusterError(f"split.kind {self.kind!r}: use one of {list(KINDS)}")
        if self.buffer_px < receptive_radius:
            raise ClusterError(
                f"split.buffer_px {self.buffer_px} is less than the U-Net's receptive radius "
                f"({receptive_radius} px): training pixels would see test pixels' "
                f"surroundings; set buffer_px >= {receptive_radius}"
            )
        if self.kind != "east" and (
            self.block_px < grid.tile_size or self.block_px % grid.tile_size
        ):
            raise ClusterError(
                f"split.block_px {self.block_px} must be a whole multiple of the chip size "
                f"({grid.tile_size} px), so that every chip lies in one block"
            )
        fractions = np.asarray(self.fractions, dtype=float)
        if fractions.shape != (3,) or (fractions < 0).any() or not np.isclose(fractions.sum(), 1):
            raise ClusterError(
                f"split.fractions {list(self.fractions)}: give three shares (train, "
                "validation, test), each >= 0, summing to 1"
            )
        if fractions[TRAIN] == 0 or fractions[TEST] == 0:
            raise ClusterError("split.fractions: training and test need a share above 0")
        if not 0 < self.east_fraction < 1:
            raise ClusterError(f"split.east_fraction {self.east_fraction}: give 0 < f < 1")


@dataclass(frozen=True)
class BlockSplit:
    """The split of a chip store: a code per chip, and per pixel through ``label_mask``."""

    spec: SplitSpec
    grid: Grid  # the chip grid (tile = chip core, halo = context)
    chip_split: np.ndarray  # uint8 per chip: TRAIN, VAL, TEST or UNUSED
    blocks: dict[tuple[int, int], int]  # block (row, col) -> split; "east": column cut instead
    east_col: int = 0  # "east": first grid pixel column of the test area
    stands: Stands | None = None  # "stands": each feature's split; pixels take their feature's

    def pixel_split(self, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Split code (h, w) of the grid pixels at ``rows`` x ``cols`` (1-D pixel indexes
        from the grid origin); UNUSED where no labelled chip's block is."""
        rows, cols = np.asarray(rows).ravel(), np.asarray(cols).ravel()
        if self.stands is not None:
            return self.stands.pixel_split(self.grid, rows, cols)
        if self.spec.kind == "east":
            line = np.where(cols >= self.east_col, TEST, TRAIN).astype(np.uint8)
            return np.broadcast_to(line, (len(rows), len(cols))).copy()
        size = self.spec.block_px
        (brows, at_row), (bcols, at_col) = (
            np.unique(np.floor_divide(v, size), return_inverse=True) for v in (rows, cols)
        )
        table = np.array(
            [[self.blocks.get((int(r), int(c)), UNUSED) for c in bcols] for r in brows],
            dtype=np.uint8,
        )  # a window meets a few blocks: look each up once
        return table[at_row[:, None], at_col[None, :]]

    def label_mask(self, index: int, row: int, col: int) -> np.ndarray:
        """bool (h, w) over chip ``index``'s haloed window at chip-grid tile (row, col):
        the pixels whose labels this chip may use, given its split."""
        code = int(self.chip_split[index])
        g, b = self.grid, self.spec.buffer_px
        size = g.tile_size + 2 * g.halo
        top, left = row * g.tile_size - g.halo, col * g.tile_size - g.halo
        if code == UNUSED:
            return np.zeros((size, size), dtype=bool)
        margin = b if code == TRAIN else 0
        rr = np.arange(top - margin, top + size + margin)
        cc = np.arange(left - margin, left + size + margin)
        splits = self.pixel_split(rr, cc)
        if code != TRAIN:
            return splits == code
        foreign = (splits != TRAIN) & (splits != UNUSED)
        near = ndimage.maximum_filter(foreign, size=2 * b + 1, mode="constant", cval=False)
        keep = (splits == TRAIN) & ~near
        return keep[margin : margin + size, margin : margin + size]

    def summary(self, counts: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> dict[str, dict]:
        """Chips, labelled core pixels and classes per split (``counts``: chips x
        classes; with stands some of a chip's pixels are another split's, and unused),
        features per split with stands, and for training about how many pixels lie
        outside the buffer."""
        out: dict[str, dict] = {}
        for code, name in enumerate(NAMES):
            mine = self.chip_split == code
            out[name] = {"chips": int(mine.sum()), "pixels": int(counts[mine].sum()),
                         "classes": int((counts[mine].sum(axis=0) > 0).sum())}  # fmt: skip
            if self.stands is not None:
                out[name]["features"] = int(self.stands.counts()[code])
        g = self.grid
        core = slice(g.halo, g.halo + g.tile_size)
        usable = 0.0
        for i in np.flatnonzero((self.chip_split == TRAIN) & (counts.sum(axis=1) > 0)):
            share = self.label_mask(int(i), int(rows[i]), int(cols[i]))[core, core].mean()
            usable += share * counts[i].sum()
        out[NAMES[TRAIN]]["outside_buffer"] = round(usable)
        if usable == 0:
            raise ClusterError(
                f"split: no training pixel lies farther than buffer_px {self.spec.buffer_px} "
                "from a validation or test pixel; use larger split.block_px (several times "
                "the buffer), kind: east, or more labels"
            )
        return out


def split_chips(
    spec: SplitSpec,
    grid: Grid,
    rows: np.ndarray,
    cols: np.ndarray,
    counts: np.ndarray,
    class_names: Sequence[str],
    labels: Labels | None = None,
) -> BlockSplit:
    """Assign each chip (chip-grid ``rows``/``cols``, per-class labelled core pixel
    ``counts``) to a split; refuse if a class cannot be in every split. ``labels``:
    the reference labels, whose features (if any) kind "auto" and "stands" keep whole."""
    rows, cols = np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64)
    counts = np.asarray(counts, dtype=np.int64).reshape(len(rows), len(class_names))
    labelled = counts.sum(axis=1) > 0
    if not labelled.any():
        raise ClusterError("no chip holds a labelled pixel: check the labels and the grid")
    if spec.kind == "east":
        return _east(spec, grid, rows, cols, labelled)
    k = spec.block_px // grid.tile_size
    block_of = np.stack([rows // k, cols // k], axis=1)
    keys, inverse = np.unique(block_of[labelled], axis=0, return_inverse=True)
    per_block = np.zeros((len(keys), counts.shape[1]), dtype=np.int64)
    np.add.at(per_block, inverse.ravel(), counts[labelled])
    codes = _assign(per_block, np.asarray(spec.fractions), spec.seed, class_names, spec.block_px)
    blocks = {(int(r), int(c)): int(code) for (r, c), code in zip(keys, codes, strict=True)}
    chip_split = np.full(len(rows), UNUSED, dtype=np.uint8)
    chip_split[labelled] = codes[inverse.ravel()]
    stands = None
    if spec.kind == "stands" and not isinstance(labels, VectorLabels):
        raise ClusterError(
            "split.kind stands keeps each feature of the labels whole, and raster labels have "
            "no features: use kind blocks (or auto) for them"
        )
    if spec.kind in ("stands", "auto") and isinstance(labels, VectorLabels):
        stands = Stands.assign(labels, grid, blocks, spec.block_px)
    return BlockSplit(spec, grid, chip_split, blocks, stands=stands)


def _east(
    spec: SplitSpec, grid: Grid, rows: np.ndarray, cols: np.ndarray, labelled: np.ndarray
) -> BlockSplit:
    """Chips whose core starts east of the cut are test; the buffer keeps training off it."""
    first, last = cols[labelled].min(), cols[labelled].max() + 1
    cut_col = first + round((last - first) * (1 - spec.east_fraction))
    if not first < cut_col < last:
        raise ClusterError(
            f"split.east_fraction {spec.east_fraction} leaves no training or no test chips "
            f"over the {last - first} chip columns that hold labels"
        )
    chip_split = np.where(cols >= cut_col, TEST, TRAIN).astype(np.uint8)
    chip_split[~labelled] = UNUSED
    return BlockSplit(spec, grid, chip_split, {}, east_col=int(cut_col * grid.tile_size))


def _assign(
    per_block: np.ndarray,
    fractions: np.ndarray,
    seed: int,
    class_names: Sequence[str],
    block_px: int,
) -> np.ndarray:
    """Split code per block: the best of ``_TRIES`` seeded greedy fillings."""
    wanted = fractions > 0
    present = per_block.sum(axis=0) > 0
    block_px_total = per_block.sum(axis=1)
    best: tuple[float, np.ndarray] | None = None
    for attempt in range(_TRIES):
        order = np.random.default_rng([seed, attempt]).permutation(len(per_block))
        codes = np.empty(len(per_block), dtype=np.uint8)
        filled = np.zeros(3)
        for i in order:
            deficit = np.where(wanted, fractions * block_px_total.sum() - filled, -np.inf)
            code = int(np.argmax(deficit))
            codes[i] = code
            filled[code] += block_px_total[i]
        share = np.stack([per_block[codes == s].sum(axis=0) for s in range(3)])  # split x class
        if (share[wanted][:, present] == 0).any():
            continue
        worst = float(
            np.abs(share[:, present] / share[:, present].sum(0) - fractions[:, None]).max()
        )
        if best is None or worst < best[0]:
            best = (worst, codes)
    if best is None:
        spread = sorted(
            (int((per_block[:, c] > 0).sum()), name)
            for c, name in enumerate(class_names)
            if present[c]
        )
        rare = ", ".join(f"{name} (in {n} of {len(per_block)} blocks)" for n, name in spread[:3])
        raise ClusterError(
            f"cannot put every class into every split over {len(per_block)} blocks of "
            f"{block_px} px; the rarest: {rare}. Use a smaller split.block_px, more labels "
            "of the rare classes, or no validation share"
        )
    return best[1]
