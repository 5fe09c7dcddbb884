"""Each augmentation mode draws from exactly its symmetry group, image and
labels together, reproducibly for a seed."""

from typing import get_args

import numpy as np
import pytest
import torch

from jobs.errors import ConfigError
from jobs.trainconfig import TrainingSection, load_train_config
from unet.augment import AUGMENTATIONS, augment
from unet.data import ChipSampler, Split
from unet.errors import UNetError

# A chip without any symmetry: every transform gives a different array.
IMAGE = np.arange(2 * 5 * 5, dtype=np.float32).reshape(2, 5, 5)
LABELS = np.arange(25, dtype=np.uint8).reshape(5, 5)


def _outputs(mode: str, draws: int = 200, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return [augment(IMAGE, LABELS, mode, rng) for _ in range(draws)]


def _d4() -> list[np.ndarray]:
    turns = [np.rot90(LABELS, k) for k in range(4)]
    return turns + [t[:, ::-1] for t in turns]


GROUPS = {
    "d4": _d4(),
    "flips": [LABELS, LABELS[:, ::-1], LABELS[::-1, :], LABELS[::-1, ::-1]],
    "rot90": [np.rot90(LABELS, k) for k in range(4)],
    "none": [LABELS],
}


@pytest.mark.parametrize("mode", AUGMENTATIONS)
def test_each_mode_yields_exactly_its_group(mode):
    seen = {y.tobytes() for _, y in _outputs(mode)}
    group = {g.tobytes() for g in GROUPS[mode]}
    assert len(group) == {"d4": 8, "flips": 4, "rot90": 4, "none": 1}[mode]
    assert seen == group


def test_flips_hold_no_quarter_turn_and_rot90_no_mirror():
    """The group that matters for orientation classes: a mirror maps a 45° row
    pattern onto 135°, a quarter turn does too; a half turn does not."""
    flips = {y.tobytes() for _, y in _outputs("flips")}
    rot90 = {y.tobytes() for _, y in _outputs("rot90")}
    assert np.rot90(LABELS).tobytes() not in flips
    assert LABELS[:, ::-1].tobytes() not in rot90
    assert LABELS[::-1, ::-1].tobytes() in flips & rot90


@pytest.mark.parametrize("mode", AUGMENTATIONS)
def test_image_and_labels_are_transformed_together(mode):
    """Every band gets the labels' transform: band b of the image is the labels
    scaled and offset as in IMAGE, so it must stay so after the transform."""
    image = np.stack([LABELS * 3.0 + 1, LABELS * -2.0]).astype(np.float32)
    rng = np.random.default_rng(1)
    for _ in range(50):
        x, y = augment(image, LABELS, mode, rng)
        np.testing.assert_array_equal(x[0], y * 3.0 + 1)
        np.testing.assert_array_equal(x[1], y * -2.0)


@pytest.mark.parametrize("mode", AUGMENTATIONS)
def test_outputs_are_contiguous_and_keep_types(mode):
    for x, y in _outputs(mode, draws=20):
        assert x.flags.c_contiguous and y.flags.c_contiguous
        assert x.dtype == np.float32 and y.dtype == np.uint8
        assert x.shape == IMAGE.shape and y.shape == LABELS.shape
        torch.from_numpy(x)  # refuses negative strides


@pytest.mark.parametrize("mode", AUGMENTATIONS)
def test_same_seed_same_draws(mode):
    a, b = _outputs(mode, draws=30, seed=7), _outputs(mode, draws=30, seed=7)
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)


def test_every_mode_draws_alike_so_chips_do_not_depend_on_the_mode():
    """A seed's chip positions are the same whatever the augmentation."""
    states = []
    for mode in AUGMENTATIONS:
        rng = np.random.default_rng(3)
        for _ in range(10):
            augment(IMAGE, LABELS, mode, rng)
        states.append(rng.integers(1 << 62))
    assert len(set(states)) == 1


def test_d4_draws_as_the_sampler_did_before_the_modes():
    """Rotation first, then a flip: old seeds give the same training chips."""
    rng, old = np.random.default_rng(11), np.random.default_rng(11)
    for _ in range(40):
        _, y = augment(IMAGE, LABELS, "d4", rng)
        k = int(old.integers(4))
        expected = np.rot90(LABELS, k)
        if old.integers(2):
            expected = expected[:, ::-1]
        np.testing.assert_array_equal(y, expected)


def test_unknown_mode_is_named_with_the_choices():
    with pytest.raises(UNetError, match=r"unknown augmentation 'd8': use one of \['d4', 'flips'"):
        augment(IMAGE, LABELS, "d8", np.random.default_rng(0))


@pytest.mark.parametrize("mode", ["d4", "rot90"])
def test_turning_a_non_square_chip_is_refused(mode):
    image, labels = np.zeros((2, 4, 6), np.float32), np.zeros((4, 6), np.uint8)
    with pytest.raises(UNetError, match=rf"augmentation '{mode}' turns chips .* a 4x6 chip"):
        augment(image, labels, mode, np.random.default_rng(0))


@pytest.mark.parametrize("mode", ["flips", "none"])
def test_non_square_chips_may_be_flipped(mode):
    image = np.arange(2 * 4 * 6, dtype=np.float32).reshape(2, 4, 6)
    labels = np.arange(24, dtype=np.uint8).reshape(4, 6)
    x, y = augment(image, labels, mode, np.random.default_rng(0))
    assert x.shape == (2, 4, 6) and y.shape == (4, 6)


def test_mismatched_chips_are_refused():
    with pytest.raises(UNetError, match=r"image chip \(2, 5, 5\) and label chip \(4, 4\)"):
        augment(IMAGE, LABELS[:4, :4], "none", np.random.default_rng(0))


def test_sampler_uses_the_mode_and_refuses_an_unknown_one():
    image = np.arange(3 * 32 * 32, dtype=np.float32).reshape(3, 32, 32)
    labels = (np.arange(32 * 32) % 7).astype(np.uint8).reshape(32, 32)
    split = Split(holdout=(0, 32, 30, 32), gap=0)
    plain = ChipSampler(image, labels, split, 8, seed=0, augmentation="none")
    x, y = plain.batch(16)
    for xi, yi in zip(x.numpy(), y.numpy(), strict=True):
        # Unaugmented chips are windows of the image: rows increase by 32, columns by 1.
        assert (np.diff(xi[0], axis=0) == 32).all() and (np.diff(xi[0], axis=1) == 1).all()
        assert yi.dtype == np.int64
    with pytest.raises(UNetError, match="unknown augmentation 'mirror'"):
        ChipSampler(image, labels, split, 8, seed=0, augmentation="mirror")


def test_config_offers_exactly_the_modes():
    field = TrainingSection.model_fields["augmentation"]
    assert get_args(field.annotation) == AUGMENTATIONS
    assert field.default == "d4"


def test_config_passes_the_mode_on_and_names_a_wrong_one(tmp_path):
    doc = (
        "image: i.tif\nlabels: l.tif\noutput: m\nbands: [a, b]\n"
        "classes: [{name: x, color: '#000000'}, {name: y, color: '#ffffff'}]\n"
    )
    path = tmp_path / "train.yaml"
    path.write_text(doc)
    assert load_train_config(path).augmentation == "d4"
    path.write_text(doc + "training: {augmentation: none}\n")
    assert load_train_config(path).augmentation == "none"
    path.write_text(doc + "training: {augmentation: mirror}\n")
    with pytest.raises(ConfigError, match=r"training\.augmentation: Input should be 'd4'"):
        load_train_config(path)
