import json

import numpy as np
import pytest
import torch

from tests.conftest import TINY, write_pair
from unet.checkpoint import load_checkpoint
from unet.data import read_labelled_image
from unet.errors import UNetError
from unet.train import TrainSpec, train


def _spec(tmp_path, image, labels, class_table, **kw) -> TrainSpec:
    names, colors = class_table
    base = dict(
        image=image,
        labels=labels,
        output=tmp_path / "model",
        bands=("blue", "green", "red", "nir"),
        class_names=names,
        class_colors=colors,
        base_width=8,
        depth=2,
        chip_size=64,
        batch_size=4,
        max_seconds=1e6,  # by steps: a time budget depends on the machine's load
        max_steps=40,
        evaluations=1,
        gap=8,
    )
    return TrainSpec(**(base | kw))


def test_a_few_steps_lower_the_loss_and_write_everything(tmp_path, tiny_pair, class_table):
    result = train(_spec(tmp_path, *tiny_pair, class_table), progress=False, log=lambda _: None)
    losses = [h["loss"] for h in result.history if "loss" in h]
    assert result.steps == 40 == len(losses)
    assert np.mean(losses[-8:]) < 0.7 * np.mean(losses[:8])
    out = tmp_path / "model"
    for name in (
        "checkpoint.safetensors",
        "metrics.json",
        "training_curve.png",
        "confusion_unet.png",
    ):
        assert (out / name).stat().st_size > 0, name
    assert (out / "training_curve.png").read_bytes()[:4] == b"\x89PNG"
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["unet"]["miou"] <= 1
    assert np.array(metrics["unet"]["confusion"]).shape == (4, 4)
    _, card = load_checkpoint(result.checkpoint)
    assert card.bands == ("blue", "green", "red", "nir") and card.resolution == TINY.resolution
    assert card.extra["heldout"]["miou"] == pytest.approx(result.scores.miou)


def test_training_is_deterministic_for_a_seed(tmp_path, tiny_pair, class_table):
    """With a step budget (a time budget depends on the machine's speed)."""
    weights = []
    for run in ("a", "b"):
        spec = _spec(
            tmp_path / run, *tiny_pair, class_table, max_steps=5, max_seconds=1e6, evaluations=0
        )
        result = train(spec, progress=False, log=lambda _: None)
        weights.append(load_checkpoint(result.checkpoint)[0].state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_wrong_band_count_is_a_clear_error(tmp_path, tiny_scene, class_table):
    img, lab = write_pair(tmp_path, tiny_scene.reflectance[:3], tiny_scene.labels)
    with pytest.raises(UNetError, match=r"image.tif has 3 bands .* asks for 4 bands"):
        train(_spec(tmp_path, img, lab, class_table), progress=False, log=lambda _: None)


def test_empty_label_raster_is_a_clear_error(tmp_path, tiny_scene, class_table):
    img, lab = write_pair(tmp_path, tiny_scene.reflectance, np.full_like(tiny_scene.labels, 255))
    with pytest.raises(UNetError, match=r"labels.tif is empty: every pixel is nodata"):
        read_labelled_image(img, lab, ("blue", "green", "red", "nir"), class_table[0])


def test_label_outside_the_class_list_is_a_clear_error(tmp_path, tiny_scene, class_table):
    labels = tiny_scene.labels.copy()
    labels[10:20, 10:20] = 7
    img, lab = write_pair(tmp_path, tiny_scene.reflectance, labels)
    with pytest.raises(UNetError, match=r"holds values \[7\] outside the class list"):
        train(_spec(tmp_path, img, lab, class_table), progress=False, log=lambda _: None)


def test_misnamed_bands_are_refused(tmp_path, tiny_scene, class_table):
    img, lab = write_pair(
        tmp_path, tiny_scene.reflectance, tiny_scene.labels, bands=("red", "green", "blue", "nir")
    )
    with pytest.raises(UNetError, match=r"band names .* differ"):
        read_labelled_image(img, lab, ("blue", "green", "red", "nir"), class_table[0])


def test_raster_scale_and_offset_are_applied_and_dn_refused(tmp_path, tiny_scene, class_table):
    """Training reads a raster as prediction reads a catalog: its own scale/offset
    applied; digital numbers refused when the config says reflectance."""
    import rasterio

    dn = np.rint((tiny_scene.reflectance + 0.1) / 1e-4).astype(np.float32)
    img, lab = write_pair(tmp_path, dn, tiny_scene.labels)
    names = class_table[0]
    with pytest.raises(UNetError, match=r"image.tif band blue: values around \d+ .* digital"):
        read_labelled_image(img, lab, ("blue", "green", "red", "nir"), names)
    raw = read_labelled_image(img, lab, ("blue", "green", "red", "nir"), names, units="dn")
    np.testing.assert_array_equal(raw.image, dn)
    with rasterio.open(img, "r+") as dst:  # the raster states its scale and offset
        dst.scales, dst.offsets = (1e-4,) * 4, (-0.1,) * 4
    data = read_labelled_image(img, lab, ("blue", "green", "red", "nir"), names)
    np.testing.assert_allclose(data.image, tiny_scene.reflectance, atol=6e-5)


def test_checkpoint_records_the_units(tmp_path, tiny_scene, class_table):
    dn = np.rint((tiny_scene.reflectance + 0.1) / 1e-4).astype(np.float32)
    img, lab = write_pair(tmp_path, dn, tiny_scene.labels)
    spec = _spec(tmp_path, img, lab, class_table, max_steps=2, evaluations=0, units="dn")
    result = train(spec, progress=False, log=lambda _: None)
    assert load_checkpoint(result.checkpoint)[1].units == "dn"
