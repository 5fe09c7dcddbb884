import pytest
import torch

from unet.errors import UNetError
from unet.model import UNet, UNetConfig


@pytest.mark.parametrize(
    ("depth", "size"),
    [(1, (2, 2)), (2, (8, 12)), (3, (64, 64)), (3, (40, 96)), (4, (48, 80)), (4, (320, 320))],
)
def test_output_has_input_size(depth, size):
    model = UNet(UNetConfig(in_bands=4, num_classes=5, base_width=4, depth=depth)).eval()
    x = torch.randn(2, 4, *size)
    with torch.inference_mode():
        y = model(x)
    assert y.shape == (2, 5, *size)


def test_without_batch_norm_and_other_bands():
    model = UNet(UNetConfig(in_bands=7, num_classes=2, base_width=3, depth=2, batch_norm=False))
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    assert model(torch.randn(1, 7, 16, 16)).shape == (1, 2, 16, 16)


def test_architecture_is_the_papers():
    """Two 3x3 convs per level, 2x2 pools down, 2x2 transposed convs up, 1x1 head."""
    model = UNet(UNetConfig(in_bands=4, num_classes=3, base_width=8, depth=3))
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    ups = [m for m in model.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [m.kernel_size for m in convs[:-1]] == [(3, 3)] * (2 * 3 + 2 + 2 * 3)
    assert convs[-1].kernel_size == (1, 1) and convs[-1].out_channels == 3
    assert [(m.kernel_size, m.stride) for m in ups] == [((2, 2), (2, 2))] * 3
    # skip concatenation doubles the decoder convs' input width
    assert [m.in_channels for m in model.up_conv.modules() if isinstance(m, torch.nn.Conv2d)][
        ::2
    ] == [64, 32, 16]


def test_wrong_band_count_is_refused():
    model = UNet(UNetConfig(in_bands=4, num_classes=3, base_width=4, depth=2))
    with pytest.raises(UNetError, match=r"expects input .* 4 bands.*got shape \(1, 3, 16, 16\)"):
        model(torch.randn(1, 3, 16, 16))


def test_size_not_a_multiple_is_refused():
    model = UNet(UNetConfig(in_bands=4, num_classes=3, base_width=4, depth=3))
    with pytest.raises(UNetError, match="not a multiple of 8"):
        model(torch.randn(1, 4, 20, 16))


def test_config_rejects_nonsense():
    with pytest.raises(UNetError, match="num_classes"):
        UNetConfig(in_bands=4, num_classes=0)


@pytest.mark.parametrize("depth", [1, 2, 3])  # 4: 7 * 16 - 5 = 107, 35 s to check
def test_receptive_radius_is_what_the_gradient_sees(depth):
    """The input pixels an output pixel depends on reach exactly receptive_radius
    (measured at every alignment of the output pixel against the pools)."""
    config = UNetConfig(in_bands=1, num_classes=1, base_width=2, depth=depth, batch_norm=False)
    model = UNet(config).double()
    for p in model.parameters():  # all weights positive: no gradient cancels out
        torch.nn.init.uniform_(p, 0.1, 1.0)
    size = 4 * config.receptive_radius + 4 * config.multiple
    size += -size % config.multiple
    widest = 0
    for offset in range(config.multiple):
        x = torch.zeros(1, 1, size, size, dtype=torch.float64, requires_grad=True)
        centre = size // 2 + offset
        model(x)[0, 0, centre, centre].backward()
        ys, xs = torch.nonzero(x.grad[0, 0]).T
        widest = max(widest, int((centre - ys).abs().max()), int((centre - xs).abs().max()))
    assert widest == config.receptive_radius
