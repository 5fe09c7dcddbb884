"""The measured context of a U-Net, and the lattice its windows are put on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unet.context import (
    context_radius,
    halo_needed,
    lattice_offset,
    recorded_radius,
    window_side,
)
from unet.model import UNet, UNetConfig


def _model(depth: int, seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(UNetConfig(in_bands=3, num_classes=4, base_width=4, depth=depth)).eval()


@pytest.mark.parametrize("depth", [2, 3])
def test_margin_is_within_the_architectures_and_grows_as_the_tolerance_tightens(depth):
    model = _model(depth)
    config = model.config
    loose, tight = context_radius(model, tolerance=1e-3), context_radius(model, tolerance=1e-6)
    assert 0 < loose < tight < config.receptive_radius  # a cut well inside the reach does


def test_the_margin_is_what_a_cut_window_needs():
    """What the margin promises, checked by cutting windows here: with it, every class
    probability of the block is within the tolerance of the uncut prediction; with one
    lattice step less, not."""
    model = _model(3, seed=1)
    side, m = window_side(model.config), model.config.multiple
    x = np.random.default_rng(3).normal(size=(2, 3, side, side)).astype(np.float32)
    r = context_radius(model, x, tolerance=1e-4)
    lo, hi = side // 2 - 3 * m // 2, side // 2 + 3 * m // 2

    def worst(margin: int) -> float:
        a, b = lo - margin, hi + margin
        assert a % m == 0 and (b - a) % m == 0  # on the lattice, as a run cuts windows
        with torch.inference_mode():
            full = model(torch.from_numpy(x)).softmax(1)[:, :, lo:hi, lo:hi]
            cut = model(torch.from_numpy(x[:, :, a:b, a:b])).softmax(1)
        return float((cut[:, :, margin : margin + hi - lo, margin : margin + hi - lo] - full)
                     .abs().max())  # fmt: skip

    assert worst(r) <= 1e-4 < worst(r - m)


def test_margin_from_samples_of_other_sizes():
    """Samples of another size are centre-cropped or padded; constant inputs give a
    margin too (not an error)."""
    model = _model(2)
    big = np.random.default_rng(0).normal(size=(2, 3, 200, 200)).astype(np.float32)
    small = np.zeros((1, 3, 20, 20), np.float32)
    assert 0 < context_radius(model, big) <= model.config.receptive_radius
    assert 0 <= context_radius(model, small) <= model.config.receptive_radius


def test_recorded_radius_falls_back_to_the_architectures():
    config = UNetConfig(in_bands=3, num_classes=4, depth=3)
    assert recorded_radius(config, {"context": {"radius_px": 30, "method": "truncation"}}) == 30
    assert recorded_radius(config, {}) == config.receptive_radius == 51
    # measured by the gradient on training chips (under by half at depth 4): not trusted
    assert recorded_radius(config, {"context": {"radius_px": 30, "share": 1e-3}}) == 51
    assert halo_needed(config, 30) == 38


def test_lattice_offset_puts_windows_on_the_lattice():
    for row, col in [(0, 0), (-48, 13), (1000, -1), (7, 8)]:
        dy, dx = lattice_offset((row, col), 16)
        assert 0 <= dy < 16 and 0 <= dx < 16
        assert (row + dy) % 16 == 0 and (col + dx) % 16 == 0
