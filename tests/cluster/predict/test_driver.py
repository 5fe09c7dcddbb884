"""The prediction run end to end on a real local Ray instance: seamless,
resumable after SIGKILL, surviving a killed actor, refusing bad input."""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import ray
import torch
import yaml
import zarr

from cluster.errors import ClusterError
from cluster.imagery.catalog import Catalog
from cluster.imagery.reader import read_window
from cluster.predict.driver import RunSpec, run_predict
from cluster.predict.store import TileStore
from jobs.config import load_predict_config
from tests.conftest import SAMPLE_SPEC as SPEC
from tests.conftest import predict_config as _config
from tests.conftest import store_tree
from unet.checkpoint import load_checkpoint, save_checkpoint
from unet.data import normalize

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _predictor_pids() -> list[int]:
    """Worker processes of live Predictor actors (Ray titles them ``ray::Predictor``)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        if cmdline.startswith(b"ray::Predictor"):
            pids.append(int(proc.name))
    return pids


@pytest.fixture(scope="module")
def reference(trained_sample, local_ray, tmp_path_factory) -> tuple[RunSpec, Path]:
    """An uninterrupted run: what every other run must equal byte for byte."""
    folder = tmp_path_factory.mktemp("reference")
    spec = load_predict_config(_config(trained_sample, folder))
    summary = run_predict(spec, progress=False)
    assert summary.done == 36 and not summary.failed and summary.skipped == 0
    return spec, folder / "map.zarr"


def test_map_is_accurate_and_nodata_outside(reference, trained_sample):
    _, store_path = reference
    store = TileStore.open(str(store_path))
    with rasterio.open(trained_sample / "sample" / "labels.tif") as src:
        truth = src.read(1)
    classes = _whole(store)
    assert classes.shape == truth.shape
    mapped = truth != 255
    assert (classes[~mapped] == 255).all()  # outside the region: nodata
    agree = (classes[mapped] == truth[mapped]).mean()
    assert agree > 0.8, agree


def _whole(store: TileStore) -> np.ndarray:
    return zarr.open_group(store.uri, mode="r")["class"][:]


# The U-Net of these tests (depth 3) sees 46 px each way (3x3 convs at four
# scales, down and up again); a halo at least that wide gives each tile all the
# context the whole image gives it, so the two differ by float rounding only.
SEAM_HALO = 48
# Probabilities from float32 convolutions over differently sized inputs differ in
# their last bits (measured here: ~1e-6); a seam (a shifted window, a halo cropped
# wrong, a pixel from the wrong item) moves them by far more.
SEAM_TOL = 1e-4


def test_tiles_are_seamless(trained_sample, local_ray, tmp_path):
    """The tiled map equals one whole-image prediction wherever the answer is not a
    tie within float rounding, and its confidence everywhere to rounding."""
    spec = load_predict_config(_config(trained_sample, tmp_path, halo=SEAM_HALO))
    assert run_predict(spec, progress=False).done == 36
    setup, grid, h = spec.setup, spec.setup.grid, SEAM_HALO
    model, card = load_checkpoint(setup.checkpoint)
    catalog = Catalog.open(setup.catalog, card.bands, grid.crs, collections=setup.collections)
    x0, y0 = grid.origin
    n, res = SPEC.width, grid.resolution
    bounds = (x0 - h * res, y0 - (n + h) * res, x0 + (n + h) * res, y0 + h * res)
    raw = read_window(catalog.items_for(bounds), bounds, (n + 2 * h, n + 2 * h), grid.crs)
    x = torch.from_numpy(normalize(raw, np.array(card.mean), np.array(card.std))[None])
    with torch.inference_mode():
        probs = torch.softmax(model(x).float(), dim=1)[0, :, h : h + n, h : h + n].numpy()
    top2 = np.sort(probs, axis=0)[-2:]
    store = TileStore.open(setup.store)
    classes, confidence = (store.array(a)[:n, :n] for a in ("class", "confidence"))
    valid = classes != 255
    assert valid.sum() > 0.5 * n * n
    # Stored confidence is rint(254 p): off by at most half a step plus the float error.
    off = np.abs(confidence[valid].astype(np.float64) - 254 * top2[1][valid].astype(np.float64))
    decided = valid & (top2[1] - top2[0] > 2 * SEAM_TOL)
    differ = (classes != probs.argmax(axis=0)) & decided
    print(
        f"seamless: {valid.sum()} px, confidence off by <= {off.max():.4f} steps, "
        f"{(valid & ~decided).sum()} ties within {2 * SEAM_TOL:g}, {differ.sum()} differ"
    )
    assert off.max() <= 0.5 + 254 * SEAM_TOL
    assert differ.sum() == 0


def test_killed_run_resumes_to_identical_store(trained_sample, local_ray, tmp_path):
    """SIGKILL the whole predict process group midway, rerun: only the
    unfinished tiles are computed and the store equals an uninterrupted run."""
    ref_dir = tmp_path / "ref"
    ref_spec = load_predict_config(
        _config(trained_sample, ref_dir, tile_size=56, halo=52, batch_size=2)
    )
    total = run_predict(ref_spec, progress=False).done
    assert total == 49

    cut = tmp_path / "cut"
    config = _config(trained_sample, cut, tile_size=56, halo=52, batch_size=2)
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    log_path = tmp_path / "predict.log"
    with log_path.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jobs.predict", "--config", str(config), "--quiet"],
            start_new_session=True,
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    before = 0
    deadline = time.monotonic() + 180
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                before = len(TileStore.open(str(cut / "map.zarr")).done_tiles())
            except ClusterError:  # not created yet, or being created
                before = 0
            if before >= 6:
                break
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    log = log_path.read_text(errors="replace")[-3000:]
    before = len(TileStore.open(str(cut / "map.zarr")).done_tiles())
    assert 6 <= before < total, f"the run was not caught midway ({before} of {total} done)\n{log}"

    computed = []
    summary = run_predict(
        load_predict_config(config), progress=False, on_result=lambda r: computed.append(r.tile_id)
    )
    assert summary.skipped == before and summary.done == total - before == len(computed)
    assert store_tree(cut / "map.zarr") == store_tree(ref_dir / "map.zarr")


def test_killed_actor_is_survived(reference, trained_sample, tmp_path):
    _, ref_store = reference
    killed: list[int] = []

    def kill_once(result) -> None:
        if not killed:
            pids = _predictor_pids()
            assert pids, "no Predictor actor process found"
            os.kill(pids[0], signal.SIGKILL)
            killed.append(pids[0])

    spec = load_predict_config(_config(trained_sample, tmp_path))
    summary = run_predict(spec, progress=False, on_result=kill_once)
    assert killed and not summary.failed and summary.done == 36
    assert store_tree(tmp_path / "map.zarr") == store_tree(ref_store)


def test_reader_processes_map_what_the_actor_reading_itself_maps(
    reference, trained_sample, tmp_path
):
    """The GPU actor's path on the CPU: two reader processes handing inputs through
    shared-memory slots and writing the maps, batches grouped per reader, and
    ``run.batch_size: auto`` (4 on a CPU); the store equals the reference byte for byte."""
    _, ref_store = reference
    spec = load_predict_config(_config(trained_sample, tmp_path, batch_size="auto"))
    assert spec.setup.batch_size == 0

    def segments() -> set[str]:
        return {p.name for p in Path("/dev/shm").iterdir() if p.name.startswith("psm_")}

    before = segments()
    summary = run_predict(dataclasses.replace(spec, readers=2), progress=False)
    assert summary.done == 36 and not summary.failed
    assert store_tree(tmp_path / "map.zarr") == store_tree(ref_store)
    assert segments() <= before, "the actor's input slots outlived the run"


@pytest.mark.gpu
def test_gpu_run_maps_what_the_cpu_run_maps(reference, trained_sample, tmp_path):
    """The GPU path whole: readers beside the actor, bf16 and channels_last, batches
    copied on their own stream from several threads, the batch fitted to the GPU."""
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    _, ref_store = reference
    config = _config(trained_sample, tmp_path, device="cuda", batch_size="auto")
    summary = run_predict(load_predict_config(config), progress=False)
    assert summary.done == 36 and not summary.failed
    cpu, gpu = (_whole(TileStore.open(str(p))) for p in (ref_store, tmp_path / "map.zarr"))
    assert ((cpu == 255) == (gpu == 255)).all()
    assert (cpu == gpu).mean() > 0.98  # bf16 moves the few pixels near a tie


def test_checkpoint_bands_missing_from_catalog_are_refused_first(
    trained_sample, local_ray, tmp_path
):
    model, card = load_checkpoint(trained_sample / "model" / "checkpoint.safetensors")
    odd = dataclasses.replace(card, bands=("blue", "green", "red", "swir22"))
    save_checkpoint(tmp_path / "odd.safetensors", model, odd)
    config = _config(trained_sample, tmp_path)
    doc = yaml.safe_load(config.read_text())
    doc["checkpoint"] = str(tmp_path / "odd.safetensors")
    config.write_text(yaml.safe_dump(doc))
    with pytest.raises(ClusterError, match="swir22"):
        run_predict(load_predict_config(config), progress=False)
    assert not (tmp_path / "map.zarr").exists()  # refused before any store or actor


def test_corrupt_asset_fails_only_its_tiles_then_rerun_retries_them(
    trained_sample, local_ray, tmp_path
):
    copy = tmp_path / "copy"
    shutil.copytree(trained_sample, copy)
    config = _config(copy, tmp_path / "run")
    red = sorted((copy / "sample").rglob("B04.tif"))[0]  # a red band
    good = red.read_bytes()
    red.write_bytes(good[:2000])  # truncated: a broken upload
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    run = subprocess.run(
        [sys.executable, "-m", "jobs.predict", "--config", str(config), "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert run.returncode != 0
    failed_lines = [line for line in run.stdout.splitlines() if line.startswith("FAILED")]
    assert failed_lines and all(str(red) in line for line in failed_lines), run.stdout
    item_id = red.parent.name
    assert all(item_id in line for line in failed_lines)
    store = TileStore.open(str(tmp_path / "run" / "map.zarr"))
    done_before = len(store.done_tiles())
    assert done_before + len(failed_lines) == 36 and done_before > 0

    red.write_bytes(good)
    summary = run_predict(load_predict_config(config), progress=False)
    assert summary.done == len(failed_lines) and summary.skipped == done_before
    assert not summary.failed


def test_actors_one_per_gpu_even_before_the_autoscaler_adds_them(local_ray):
    """On a CPU-only cluster a run asks for CPU actors; a config that says cuda
    asks for GPU actors anyway, which an autoscaling GPU worker group provides."""
    from cluster.predict.driver import actor_options

    assert actor_options(0, "auto") == (1, {"num_gpus": 0, "num_cpus": 2})
    assert actor_options(0, "cuda") == (1, {"num_gpus": 1, "num_cpus": 1})
    assert actor_options(8, "cuda") == (8, {"num_gpus": 1, "num_cpus": 1})
