"""Every item a run will read, checked before it writes anything.

The sample-tile check (``cluster.predict.inputcheck.precheck``) sees the few
items under six tiles; a state's period has hundreds, from several processing
baselines and mirrors, and one wrongly scaled among them would pass every later
per-tile check unless it is off by orders of magnitude: a missing harmonisation
offset (+0.1 in every band) is not. So each item is read once, small: the mask
and each band file whole at its coarsest overview of at least
``OVERVIEW_PIXELS`` pixels, converted by the reader's own code (the item's
scale, offset and nodata), masked by its quality classes, and each band's
median over the clear pixels is held against the checkpoint's statistics as
the sample-tile check holds them (``PRECHECK_SIGMA``, ``PRECHECK_RMS``). Every
item out of range is named in one refusal. Items are read ``THREADS`` at a time,
through the readers' request threads and dataset handles.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from affine import Affine

from cluster.imagery.catalog import Catalog
from cluster.imagery.inflight import enter_env
from cluster.imagery.reader import AssetReadError, band_files, read_overview
from cluster.imagery.resample import MASK_OUTSIDE
from cluster.imagery.stacitem import ItemRef
from cluster.imagery.temporal import TimeRecipe
from cluster.predict.inputcheck import (
    MIN_PIXELS,
    PRECHECK_RMS,
    PRECHECK_SIGMA,
    InputCheckError,
    ItemValues,
    judge,
    layer_of,
)
from unet.checkpoint import ModelCard

__all__ = ["OVERVIEW_PIXELS", "ItemsChecked", "check_items"]

log = logging.getLogger(__name__)

OVERVIEW_PIXELS = 16_384  # at least 128 x 128 px of an item: a median of thousands clear
THREADS = 16  # items read at once: 20-100 ms a request to object storage


@dataclass(frozen=True)
class ItemsChecked:
    """What the check of every item found, and what it cost."""

    items: int  # read (those in a sub-period of the recipe)
    judged: int  # with enough clear pixels to judge
    seconds: float
    problems: tuple[str, ...] = ()

    def line(self) -> str:
        return (
            f"input check: {self.items} items read at their overviews in {self.seconds:.1f} s, "
            f"{self.judged} with enough clear pixels to judge, {len(self.problems)} out of range"
        )


def check_items(
    catalog: Catalog,
    card: ModelCard,
    checkpoint: str,
    *,
    accept: bool,
    recipe: TimeRecipe = TimeRecipe(),  # noqa: B008 (frozen)
    year: int | None = None,
) -> ItemsChecked:
    """Judge every item of ``catalog`` the recipe reads; raise InputCheckError naming
    each one out of range (with ``accept``: log them and go on)."""
    start = time.perf_counter()
    windows = recipe.windows(year)
    jobs = [
        (item, layer) for item in catalog.items if (layer := layer_of(item, windows)) is not None
    ]
    with ThreadPoolExecutor(THREADS, "statemap-itemcheck", initializer=enter_env) as pool:
        found = list(pool.map(lambda job: overview_values(*job), jobs))
    problems = tuple(
        problem
        for values in found
        if values is not None
        and (problem := judge(values, card, checkpoint, PRECHECK_SIGMA, PRECHECK_RMS))
    )
    judged = sum(v is not None and v.count >= MIN_PIXELS for v in found)
    checked = ItemsChecked(len(jobs), judged, time.perf_counter() - start, problems)
    if len(problems) == 1 and not accept:
        raise InputCheckError(problems[0])
    if problems and not accept:
        raise InputCheckError(
            f"input check: {len(problems)} of {len(jobs)} items do not look like checkpoint "
            f"{checkpoint}'s training data (each band's median over the clear pixels of its "
            "smallest overviews); nothing was written:\n" + "\n".join(f"- {p}" for p in problems)
        )
    for problem in problems:
        log.warning("%s", problem)
    return checked


def overview_values(item: ItemRef, layer: int) -> ItemValues | None:
    """Clear values of each band of ``item`` at its overviews; None when it cannot be
    judged this way (a file unreadable: that fails its own tiles later, named there;
    a mask on another CRS than the bands)."""
    try:
        mask = read_overview(item, None, OVERVIEW_PIXELS) if item.mask else None
        per_band: list[list[np.ndarray]] = [[] for _ in item.bands]
        for positions in band_files(item):
            data, transform, crs = read_overview(
                item, [item.bands[p] for p in positions], OVERVIEW_PIXELS
            )
            keep = np.isfinite(data).all(axis=0)
            if mask is not None:
                classes, mask_transform, mask_crs = mask
                if mask_crs != crs:
                    return None
                keep &= _clear_at(classes[0], mask_transform, item, transform, keep.shape)
            for k, p in enumerate(positions):
                per_band[p].append(data[k][keep])
    except AssetReadError as exc:
        log.warning("input check skips %s", exc)
        return None
    return ItemValues(item, values=per_band, tiles=1, layer=layer, where="its overviews")


def _clear_at(
    classes: np.ndarray, classes_at: Affine, item: ItemRef, at: Affine, shape: tuple[int, int]
) -> np.ndarray:
    """bool ``shape``: whether the mask pixel under each pixel centre of the grid ``at``
    is clear (not an invalid class, inside the mask)."""
    assert item.mask is not None
    h, w = shape
    cols = np.floor((at.c + (np.arange(w) + 0.5) * at.a - classes_at.c) / classes_at.a)
    rows = np.floor((at.f + (np.arange(h) + 0.5) * at.e - classes_at.f) / classes_at.e)
    cols, rows = cols.astype(np.int64), rows.astype(np.int64)
    inside_c = (cols >= 0) & (cols < classes.shape[1])
    inside_r = (rows >= 0) & (rows < classes.shape[0])
    usable = (classes != MASK_OUTSIDE) & ~np.isin(classes, item.mask.invalid)
    out = np.zeros(shape, dtype=bool)
    out[np.ix_(inside_r, inside_c)] = usable[np.ix_(rows[inside_r], cols[inside_c])]
    return out
