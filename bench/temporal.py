"""One summer date against a summer median and a three-season stack, on the
phenology sample: the same U-Net, the same chips' places, split and budget.

The phenology sample (cluster.sample.phenology) has four forest classes that
share one summer spectrum two by two: spruce and larch (fine crowns), beech
and pine (coarse crowns); larch and beech lose their leaves in spring and
autumn. So one summer date separates crown textures only, the three-season
stack everything. Its least cloudy summer scene (the one a ``first`` mosaic
reads first) carries haze its scene classification misses, which a median of
the summer's scenes leaves out.

Each variant is trained from the catalog and the stands (catalog path, same
steps and seconds cap), scored on its test blocks, then the region is mapped
and the map scored on the test blocks where that scene is hazy. Last, the
read cost: every tile of the region read with each recipe, timed.

    python bench/temporal.py [--size 768] [--steps 600] [--seconds 300]

Last line: ``single_miou=<a> median_miou=<b> stack_miou=<c> read_mpx_s_per_date=<r>``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

from cluster.imagery.catalog import Catalog
from cluster.imagery.composite import read_stack
from cluster.imagery.temporal import run_year
from cluster.predict.driver import RunSpec, run_predict
from cluster.predict.setup import read_card, time_recipe
from cluster.predict.store import TileStore
from cluster.sample.scene import SampleSpec
from cluster.tiles.grid import iter_tiles
from cluster.tiles.region import load_region
from cluster.training.parity import map_scores
from cluster.training.train import train_from_catalog
from jobs.config import load_predict_config
from jobs.sample import TIME_VARIANTS, write_phenology_sample
from jobs.trainconfig import load_train_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=768)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--seconds", type=float, default=300.0, help="cap per model")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="keep outputs here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="statemap-bench-") as tmp:
        out = args.out or Path(tmp)
        spec = SampleSpec(seed=args.seed, width=args.size, height=args.size)
        t0 = time.perf_counter()
        paths = write_phenology_sample(out, spec, args.seconds, args.steps, tuple(TIME_VARIANTS))
        print(f"phenology sample {args.size} px written in {time.perf_counter() - t0:.1f} s")
        miou, reads = {}, {}
        for name, (train_yaml, predict_yaml) in paths.items():
            train_spec = load_train_config(train_yaml)
            result = train_from_catalog(train_spec, progress=False, log=lambda _: None)
            miou[name] = result.scores.miou
            run = load_predict_config(predict_yaml)
            summary = run_predict(run, progress=False)
            hazy = _on_map(out / "sample" / "haze.tif", summary.store)
            _, map_miou = map_scores(summary.store, train_spec.output)
            haze_scores, haze_miou = map_scores(summary.store, train_spec.output, hazy)
            print(
                f"{name:>6}: test mIoU {result.scores.miou:.4f} (map {map_miou:.4f}) after "
                f"{result.steps} steps, {result.seconds:.0f} s; hazy test px OA "
                f"{haze_scores.overall_accuracy:.4f} mIoU {haze_miou:.4f} "
                f"({int(haze_scores.confusion.sum()):,} px)"
            )
            reads[name] = _read_cost(run)
            tiles, seconds, dates = reads[name]
            print(
                f"{name:>6}: read {tiles} tiles in {seconds:.2f} s ({seconds / tiles * 1e3:.0f} "
                f"ms/tile), {dates / tiles:.1f} dates/tile"
            )
        px = spec_tile_px(paths["stack"][1])
        tiles, seconds, dates = reads["stack"]
        rate = px * dates / seconds / 1e6
        print(
            f"single_miou={miou['single']:.4f} median_miou={miou['median']:.4f} "
            f"stack_miou={miou['stack']:.4f} read_mpx_s_per_date={rate:.2f}"
        )


def spec_tile_px(predict_yaml: Path) -> int:
    grid = load_predict_config(predict_yaml).setup.grid
    return (grid.tile_size + 2 * grid.halo) ** 2


def _on_map(mask_path: Path, store_uri: str) -> np.ndarray:
    """A mask raster (1 = inside) placed on the map's array (the region's origin is the
    grid's, so the offset is whole pixels)."""
    store = TileStore.open(store_uri)
    shape = store.array("class").shape
    with rasterio.open(mask_path) as src:
        mask = src.read(1) == 1
        col, row = ~store.layout.transform * (src.transform.c, src.transform.f)
    out = np.zeros(shape, dtype=bool)
    r, c = round(row), round(col)
    out[r : r + mask.shape[0], c : c + mask.shape[1]] = mask[: shape[0] - r, : shape[1] - c]
    return out


def _read_cost(run: RunSpec) -> tuple[int, float, int]:
    """Every tile of the run's region read as its checkpoint's recipe says, in this
    process: tiles, seconds, and dates read (items per layer, summed over tiles)."""
    setup = run.setup
    card = read_card(setup.checkpoint)
    recipe = time_recipe(card, setup, setup.checkpoint)
    region = load_region(setup.region, setup.grid.crs)
    catalog = Catalog.open(setup.catalog, card.bands, setup.grid.crs, start=setup.start,
                           end=setup.end, region=region)  # fmt: skip
    grid, year = setup.grid, run_year(setup.start, setup.end)
    tiles = dates = 0
    start = time.perf_counter()
    for tile in iter_tiles(grid, region):
        bounds = grid.tile_bounds(tile, halo=True)
        stack = read_stack(catalog.items_for(bounds), bounds, grid.tile_shape(halo=True),
                           grid.crs, recipe, year, n_bands=len(card.bands))  # fmt: skip
        tiles += 1
        dates += sum(len(items) for items in stack.layer_items)
    return tiles, time.perf_counter() - start, dates


if __name__ == "__main__":
    main()
