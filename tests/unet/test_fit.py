"""The batch a GPU takes: the arithmetic everywhere, the measurement where CUDA is."""

from __future__ import annotations

import pytest
import torch

from unet.errors import UNetError
from unet.fit import CPU_BATCH, HEADROOM, MAX_BATCH, batch_for_memory, fit_batch
from unet.model import UNet, UNetConfig, autocast, pick_device, prepare_for_device

MIB = 2**20


def test_batch_is_what_the_headroom_of_free_memory_holds():
    free, fixed, per_tile = 10_000 * MIB, 500 * MIB, 300 * MIB
    n = batch_for_memory(free, fixed, per_tile)
    assert n == int((free * HEADROOM - fixed) // per_tile) == 21
    assert fixed + n * per_tile <= free * HEADROOM < fixed + (n + 1) * per_tile


def test_batch_is_capped_and_refused_when_one_tile_does_not_fit():
    assert batch_for_memory(80_000 * MIB, 0, 10 * MIB) == MAX_BATCH
    with pytest.raises(UNetError, match=r"one tile needs 1200 MiB on the GPU, of 1000 MiB free"):
        batch_for_memory(1000 * MIB, 200 * MIB, 1000 * MIB)
    with pytest.raises(UNetError, match="measurement failed"):
        batch_for_memory(1000 * MIB, 0, 0)


def test_cpu_keeps_its_batch():
    model = UNet(UNetConfig(in_bands=4, num_classes=3, base_width=4, depth=2))
    assert fit_batch(model, (4, 64, 64), torch.device("cpu")) == CPU_BATCH


@pytest.mark.gpu
def test_fitted_batch_runs_on_the_gpu():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    cuda = pick_device("cuda")
    model = prepare_for_device(UNet(UNetConfig(4, 6, base_width=64, depth=4)), cuda).eval()
    n = fit_batch(model, (4, 576, 576), cuda)
    assert 1 <= n <= MAX_BATCH
    x = torch.zeros((n, 4, 576, 576), device=cuda).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast(cuda):
        assert model(x).shape == (n, 6, 576, 576)
