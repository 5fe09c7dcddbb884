"""CUDA paths: bf16 autocast and channels_last. Run where a GPU is (`pytest -m gpu`);
CI machines have none and deselect them."""

import copy

import pytest
import torch

from unet.model import UNet, UNetConfig, autocast, pick_device, prepare_for_device

pytestmark = pytest.mark.gpu


@pytest.fixture
def cuda() -> torch.device:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    return pick_device("cuda")


def test_bf16_channels_last_agrees_with_float32_cpu(cuda):
    torch.manual_seed(0)
    model = UNet(UNetConfig(in_bands=4, num_classes=4, base_width=16, depth=3)).eval()
    x = torch.randn(2, 4, 128, 128)
    with torch.inference_mode():
        reference = model(x)
        fast = prepare_for_device(copy.deepcopy(model), cuda)
        with autocast(cuda):
            out = fast(x.to(cuda).contiguous(memory_format=torch.channels_last)).float().cpu()
    assert out.shape == reference.shape
    rel = (out - reference).norm() / reference.norm()
    assert rel < 2e-2, rel
    assert (out.argmax(1) == reference.argmax(1)).float().mean() > 0.98


def test_training_step_on_cuda_lowers_the_loss(cuda):
    torch.manual_seed(0)
    model = prepare_for_device(
        UNet(UNetConfig(in_bands=4, num_classes=2, base_width=8, depth=2)), cuda
    )
    x = torch.randn(8, 4, 64, 64, device=cuda).contiguous(memory_format=torch.channels_last)
    y = (x[:, 0] > 0).long()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        with autocast(cuda):
            loss = torch.nn.functional.cross_entropy(model(x).float(), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_compiled_model_agrees_with_eager(cuda):
    """run.compile: the fused kernels map what the eager model maps."""
    torch.manual_seed(0)
    model = prepare_for_device(UNet(UNetConfig(4, 4, base_width=16, depth=3)), cuda).eval()
    x = torch.randn(2, 4, 128, 128, device=cuda).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), autocast(cuda):
        eager = model(x).float()
        compiled = torch.compile(model)(x).float()
    assert (compiled.argmax(1) == eager.argmax(1)).float().mean() > 0.99
