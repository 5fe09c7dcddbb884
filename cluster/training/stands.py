"""Splits that keep each stand whole: one feature of the reference data, one split.

A stand (one polygon of a forest inventory, a field, a plot) is internally
alike: pixels of one stand in training and in test make the test score
flatter the model, as inventories know and evaluate by stand or plot cluster.
Blocks alone cut stands at block edges. So where labels are features, each
feature goes whole to the split of the block holding a point inside it (of
its largest part): a pixel's split is its feature's, not its block's, and
training pixels keep the buffer away from every pixel of a validation or test
stand. Blocks are still assigned as ``cluster.training.split`` does (class
balance from the labels), so neighbouring stands still fall together and the
buffer costs no more training pixels than blocks do.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import shapely
from affine import Affine
from rasterio import features

from cluster.tiles.grid import Grid
from cluster.training.labels import VectorLabels

__all__ = ["UNASSIGNED", "Stands", "feature_ids", "feature_points"]

UNASSIGNED = 255  # a feature in no block with chips (too small to burn a pixel)


@dataclass(frozen=True)
class Stands:
    """The labels' features and the split code of each."""

    labels: VectorLabels
    codes: np.ndarray  # uint8 per feature

    @classmethod
    def assign(
        cls, labels: VectorLabels, grid: Grid, blocks: dict[tuple[int, int], int], block_px: int
    ) -> Stands:
        """Each feature to the split of the block holding its point."""
        points = feature_points(labels)
        codes = np.full(len(points), UNASSIGNED, dtype=np.uint8)
        ok = np.isfinite(points).all(axis=1)
        cols = np.floor((points[ok, 0] - grid.origin[0]) / grid.resolution) // block_px
        rows = np.floor((grid.origin[1] - points[ok, 1]) / grid.resolution) // block_px
        codes[ok] = [
            blocks.get((int(r), int(c)), UNASSIGNED) for r, c in zip(rows, cols, strict=True)
        ]
        return cls(labels, codes)

    def pixel_split(self, grid: Grid, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Split code (h, w) of the grid pixels ``rows`` x ``cols`` (contiguous, from the
        grid origin): their feature's, ``UNASSIGNED`` outside every feature."""
        r0, c0, res = int(rows[0]), int(cols[0]), grid.resolution
        x0, y0 = grid.origin[0] + c0 * res, grid.origin[1] - r0 * res
        bounds = (x0, y0 - len(rows) * res, x0 + len(cols) * res, y0)
        ids = feature_ids(self.labels, grid, bounds, (len(rows), len(cols)))
        return np.where(ids >= 0, self.codes[np.maximum(ids, 0)], UNASSIGNED).astype(np.uint8)

    def counts(self) -> np.ndarray:
        """Features per split code (train, validation, test)."""
        return np.bincount(self.codes[self.codes < 3], minlength=3)


def feature_points(labels: VectorLabels) -> np.ndarray:
    """(features, 2): a point inside each feature (of its largest part); NaN for a
    feature that left no part (shrunk away by the inner buffer)."""
    parts, owners = labels.parts, labels.owners
    n = int(owners.max()) + 1 if len(owners) else 0
    out = np.full((n, 2), np.nan)
    if not len(parts):
        return out
    order = np.lexsort((-shapely.area(parts), owners))  # by feature, largest part first
    sorted_owners = owners[order]
    first = order[np.r_[True, sorted_owners[1:] != sorted_owners[:-1]]]
    points = shapely.point_on_surface(parts[first])
    out[owners[first]] = np.c_[shapely.get_x(points), shapely.get_y(points)]
    return out


def feature_ids(
    labels: VectorLabels,
    grid: Grid,
    bounds: tuple[float, float, float, float],
    shape: tuple[int, int],
) -> np.ndarray:
    """int64 ``shape`` over ``bounds`` (on ``grid``'s pixels): the feature whose polygon
    holds each pixel centre (as labels burn pixels), -1 where none does or two do."""
    labels.check_crs(grid)
    out = np.full(shape, -1, dtype=np.int64)
    hits = labels.query(bounds)
    if hits.size == 0:
        return out
    transform = Affine(grid.resolution, 0, bounds[0], 0, -grid.resolution, bounds[3])
    shapes = list(zip(labels.parts[hits], (labels.owners[hits] + 1).tolist(), strict=True))
    ids = features.rasterize(shapes, out_shape=shape, transform=transform, fill=0,
                             dtype=np.int64)  # fmt: skip
    count = features.rasterize([(g, 1) for g, _ in shapes], out_shape=shape,
                               transform=transform, fill=0, dtype=np.uint8,
                               merge_alg=features.MergeAlg.add)  # fmt: skip
    return np.where((ids > 0) & (count == 1), ids - 1, out)
