"""The quality layer of a run's store: what each mapped pixel's input rests on.

A class from one hazy date means less than one from the median of twenty
clear ones, and a stack whose autumn was copied from its summer
(``time.fill: neighbour``) is not quite the stack the model learnt. So beside
``class`` and ``confidence`` a store holds ``quality``: uint8, shape
(2, height, width), chunk (2, tile, tile), so a tile is still one object per
array, written with the others:

- band 0, ``clear_observations``: the clear observations the pixel's input
  used, summed over sub-periods; the mosaic (``first``) uses one per layer;
  a sub-period filled from a neighbour adds none (they are the neighbour's,
  counted once); saturates at 254;
- band 1, ``filled``: 1 where a sub-period of the pixel was filled from a
  neighbouring one, else 0.

Both bands are 255 (nodata) exactly where the class map is. The counts are
made while compositing (``Stack.clear`` and ``Stack.filled`` of
``cluster.imagery.composite``): no imagery is read twice for them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cluster.errors import ClusterError

__all__ = ["BANDS", "CLEAR_MAX", "QUALITY", "check_tile", "spec", "tile_quality"]

QUALITY = "quality"
BANDS = ("clear_observations", "filled")
CLEAR_MAX = 254  # 255 is nodata
NODATA = 255  # the store's (cluster.predict.store.NODATA)
DESCRIPTION = (
    "band 1: clear observations the input used, summed over sub-periods (0..254, "
    "saturating); band 2: 1 where a sub-period was filled from a neighbouring one, else 0"
)


def tile_quality(clear: np.ndarray, filled: np.ndarray, keep: np.ndarray) -> np.ndarray:
    """uint8 (2, tile, tile) quality of a tile's core: ``clear`` (int) and ``filled``
    (bool) as its stack counted them, nodata wherever ``keep`` (the pixels mapped)
    is False, so the layer is nodata exactly where the class map is."""
    out = np.full((len(BANDS), *keep.shape), NODATA, dtype=np.uint8)
    out[0][keep] = np.minimum(clear[keep], CLEAR_MAX)
    out[1][keep] = filled[keep]
    return out


def spec(shape: tuple[int, int], tile: int, geo: dict[str, Any]) -> dict[str, Any]:
    """``create_array`` arguments of the store's quality array (a band axis before y, x,
    named for xarray; one chunk per tile, like the class map)."""
    return {
        "shape": (len(BANDS), *shape),
        "chunks": (len(BANDS), tile, tile),
        "dtype": "uint8",
        "fill_value": NODATA,
        "dimension_names": ["band", "y", "x"],
        "attributes": {**geo, "long_name": "input quality", "bands": list(BANDS),
                       "description": DESCRIPTION},
    }  # fmt: skip


def check_tile(tile_id: str, quality: np.ndarray, classes: np.ndarray) -> None:
    """Refuse a tile's quality that is not uint8 (2, tile, tile), nodata exactly where
    ``classes`` is, and a 0/1 flag: a store must not say a pixel is what it is not."""
    want = (len(BANDS), *classes.shape)
    if not isinstance(quality, np.ndarray) or quality.dtype != np.uint8 or quality.shape != want:
        got = (getattr(quality, "dtype", type(quality).__name__), getattr(quality, "shape", None))
        raise ClusterError(
            f"tile {tile_id}: quality must be a uint8 array of shape {want} (clear observations, "
            f"filled flag), got {got[0]} {got[1]}"
        )
    nodata = classes == NODATA
    if not all(np.array_equal(band == NODATA, nodata) for band in quality):
        raise ClusterError(
            f"tile {tile_id}: quality must be {NODATA} exactly where the class is {NODATA} "
            "(nodata), in both bands"
        )
    if (quality[1][~nodata] > 1).any():
        raise ClusterError(f"tile {tile_id}: the filled flag (quality band 2) must be 0 or 1")
