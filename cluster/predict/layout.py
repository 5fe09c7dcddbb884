"""The rectangle of grid tiles a run's store spans, and how its pixels map to tiles.

Kept apart from ``cluster.predict.store`` (which re-exports it) so that the store
module stays about the arrays and their attributes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from affine import Affine

from cluster.errors import ClusterError
from cluster.tiles.grid import Bounds, Grid, Tile

__all__ = ["StoreLayout"]


@dataclass(frozen=True)
class StoreLayout:
    """The rectangle of grid tiles a store spans: rows [row0, row0+rows), cols likewise.

    A store covers the rectangle of the region's tiles, not the whole grid
    (whose origin may lie far away): chunk (i, j) is tile (row0 + i, col0 + j).
    """

    grid: Grid
    row0: int
    col0: int
    rows: int
    cols: int

    def __post_init__(self) -> None:
        if not isinstance(self.grid, Grid):
            raise ClusterError(f"StoreLayout.grid must be a Grid, got {self.grid!r}")
        for field, low in (("row0", 0), ("col0", 0), ("rows", 1), ("cols", 1)):
            value = getattr(self, field)
            if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < low:
                raise ClusterError(
                    f"StoreLayout.{field} must be an integer >= {low}, got {value!r}"
                )
            object.__setattr__(self, field, int(value))

    @classmethod
    def for_bounds(cls, grid: Grid, bounds: Bounds) -> StoreLayout:
        """The tile rectangle covering ``bounds`` (e.g. a region's), as ``iter_tiles`` counts it."""
        rows, cols = grid.tiles_in_bounds(bounds)
        return cls(grid, rows.start, cols.start, len(rows), len(cols))

    @property
    def shape(self) -> tuple[int, int]:
        return (self.rows * self.grid.tile_size, self.cols * self.grid.tile_size)

    @property
    def transform(self) -> Affine:
        """Of the store's upper-left pixel; the same edge arithmetic as the grid's tiles."""
        return self.grid.tile_transform(Tile(self.row0, self.col0))

    def contains(self, tile: Tile) -> bool:
        return (
            self.row0 <= tile.row < self.row0 + self.rows
            and self.col0 <= tile.col < self.col0 + self.cols
        )

    def check(self, tile: Tile, uri: str) -> tuple[slice, slice]:
        """The tile's pixel window in the store; a tile outside is a ClusterError."""
        if not isinstance(tile, Tile):
            raise ClusterError(f"expected a Tile, got {tile!r}")
        if not self.contains(tile):
            raise ClusterError(
                f"tile {tile.id} is outside store {uri}, which holds tile rows "
                f"{self.row0}..{self.row0 + self.rows - 1} and cols "
                f"{self.col0}..{self.col0 + self.cols - 1}; the store was made for another "
                "region or grid: use a new store path for this one"
            )
        ts = self.grid.tile_size
        r, c = (tile.row - self.row0) * ts, (tile.col - self.col0) * ts
        return slice(r, r + ts), slice(c, c + ts)

    def to_json(self) -> dict[str, Any]:
        grid = asdict(self.grid)
        grid["origin"] = list(grid["origin"])
        return {"grid": grid, **{k: getattr(self, k) for k in ("row0", "col0", "rows", "cols")}}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StoreLayout:
        grid = Grid(**{**data["grid"], "origin": tuple(data["grid"]["origin"])})
        return cls(grid, data["row0"], data["col0"], data["rows"], data["cols"])
