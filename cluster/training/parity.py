"""Parity: the map a run makes, scored on the test chips training was judged on.

Training reports its test score from the test chips' cores, each predicted
from its haloed window; a run predicts the same pixels from its own tiles.
With one data path the two scores agree (within what tile edges and halo sizes
move), and a gap says the map differs from what training measured: another
reader, mosaic, unit or grid. The map's nodata on a labelled pixel counts as a
wrong class.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from cluster.errors import ClusterError
from cluster.predict.store import NODATA, TileStore
from cluster.training.chipstore import ChipStore
from unet.metrics import NO_CLASS, Scores, score_map

__all__ = ["map_scores"]


def map_scores(
    run_store: str, model_dir: str | Path, within: np.ndarray | None = None
) -> tuple[Scores, float]:
    """Scores of the map in ``run_store`` on the test chips recorded in
    ``model_dir/metrics.json`` by catalog training (with a "(no class)" column for
    nodata), and the mIoU over the model's classes. ``within`` (bool, the map's
    shape) narrows them to an area, e.g. where a scene is hazy."""
    metrics_path = Path(model_dir) / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    if "test_chips" not in metrics:
        raise ClusterError(
            f"{metrics_path} records no test chips: parity needs a model trained from a catalog"
        )
    chips = ChipStore.open(metrics["chip_store"])
    store = TileStore.open(run_store)
    names = chips.class_names
    if tuple(store.attrs.class_names) != names:
        raise ClusterError(f"map {run_store} has classes {store.attrs.class_names}, not {names}")
    mapped = store.array("class")
    t = store.layout.transform
    res = store.layout.grid.resolution
    g, n = chips.grid, len(names)
    confusion = np.zeros((n + 1, n + 1), dtype=np.int64)
    scored = metrics["test_chips"].get("labels")  # absent: a model from before stands
    test_labels = np.load(Path(model_dir) / scored)["labels"] if scored else None
    for k, index in enumerate(metrics["test_chips"]["indexes"]):
        x0, _, _, y1 = g.tile_bounds(chips.tile(index))
        col, row = (x0 - t.c) / res, (t.f - y1) / res
        if abs(col - round(col)) > 1e-6 or abs(row - round(row)) > 1e-6:
            raise ClusterError(
                f"map {run_store} is not on the chips' pixel lattice (offset {col % 1:.3f}, "
                f"{row % 1:.3f} px): give the run and the training the same grid origin"
            )
        r, c = round(row), round(col)
        if r < 0 or c < 0 or r + g.tile_size > mapped.shape[0] or c + g.tile_size > mapped.shape[1]:
            raise ClusterError(f"map {run_store} does not cover test chip {index}: map the region")
        label = (chips.label[index][g.halo : g.halo + g.tile_size, g.halo : g.halo + g.tile_size]
                 if test_labels is None else test_labels[k])  # fmt: skip
        pred = mapped[r : r + g.tile_size, c : c + g.tile_size]
        if within is not None:
            label = np.where(within[r : r + g.tile_size, c : c + g.tile_size], label, NODATA)
        confusion += score_map(label, pred, names, NODATA).confusion
    scores = Scores(confusion=confusion, class_names=(*names, NO_CLASS))
    return scores, scores.class_miou
