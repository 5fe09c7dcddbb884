"""The measured context of a U-Net, and the lattice its windows are put on."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from unet.context import context_radius, halo_needed, lattice_offset, recorded_radius
from unet.model import UNet, UNetConfig


def _model(depth: int, seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    return UNet(UNetConfig(in_bands=3, num_classes=4, base_width=4, depth=depth)).eval()


@pytest.mark.parametrize("depth", [2, 3])
def test_radius_is_within_the_architectures_and_grows_with_the_share_kept(depth):
    model = _model(depth)
    config = model.config
    loose, tight = context_radius(model, share=1e-2), context_radius(model, share=1e-5)
    assert 0 < loose <= tight <= config.receptive_radius
    assert loose < config.receptive_radius  # gradients fade well before the edge


def test_perturbing_beyond_the_radius_barely_moves_the_output():
    """What the radius promises: inputs changed farther than it from a pixel move that
    pixel's log-probabilities by a small fraction of what changing the near ones does."""
    model = _model(3, seed=1)
    r = context_radius(model, share=1e-3)
    side, m = 128, model.config.multiple
    gen = torch.Generator().manual_seed(2)
    x = torch.randn((1, 3, side, side), generator=gen)
    centre = side // 2 - m // 2 + 3
    yy, xx = np.indices((side, side))
    far = torch.from_numpy(np.maximum(abs(yy - centre), abs(xx - centre)) > r)
    noise = torch.randn((1, 3, side, side), generator=gen)
    with torch.inference_mode():
        base = torch.log_softmax(model(x), 1)[0, :, centre, centre]
        moved_far = torch.log_softmax(model(x + noise * far), 1)[0, :, centre, centre]
        moved_near = torch.log_softmax(model(x + noise * ~far), 1)[0, :, centre, centre]
    far_change = (moved_far - base).abs().max().item()
    near_change = (moved_near - base).abs().max().item()
    assert far_change < 0.05 * near_change, (far_change, near_change)


def test_radius_from_samples_uses_them():
    """Samples of another size are centre-cropped or padded; constant inputs give a
    radius too (not an error)."""
    model = _model(2)
    big = np.random.default_rng(0).normal(size=(2, 3, 200, 200)).astype(np.float32)
    small = np.zeros((1, 3, 20, 20), np.float32)
    assert 0 < context_radius(model, big) <= model.config.receptive_radius
    assert 0 <= context_radius(model, small) <= model.config.receptive_radius


def test_recorded_radius_falls_back_to_the_architectures():
    config = UNetConfig(in_bands=3, num_classes=4, depth=3)
    assert recorded_radius(config, {"context": {"radius_px": 30}}) == 30
    assert recorded_radius(config, {}) == config.receptive_radius == 51
    assert halo_needed(config, 30) == 38


def test_lattice_offset_puts_windows_on_the_lattice():
    for row, col in [(0, 0), (-48, 13), (1000, -1), (7, 8)]:
        dy, dx = lattice_offset((row, col), 16)
        assert 0 <= dy < 16 and 0 <= dx < 16
        assert (row + dy) % 16 == 0 and (col + dx) % 16 == 0
