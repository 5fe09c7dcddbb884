"""The U-Net of Ronneberger et al. (2015), with same-padding.

Same-padding keeps the output the size of the input, which tiling depends on:
a tile read with a halo of context pixels is predicted whole and the halo is
cropped off. The input size must be divisible by ``2**depth`` so that every
max-pool halves it exactly and every transposed convolution restores it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from unet.errors import UNetError


@dataclass(frozen=True)
class UNetConfig:
    """Architecture of a U-Net; stored in every checkpoint."""

    in_bands: int
    num_classes: int
    base_width: int = 16
    depth: int = 3
    batch_norm: bool = True

    def __post_init__(self) -> None:
        for name in ("in_bands", "num_classes", "base_width", "depth"):
            if getattr(self, name) < 1:
                raise UNetError(f"UNetConfig.{name} must be >= 1, got {getattr(self, name)}")

    @property
    def multiple(self) -> int:
        """Input height and width must be multiples of this."""
        return 2**self.depth

    @property
    def receptive_radius(self) -> int:
        """Pixels on each side of an output pixel that can change it, at the worst
        alignment against the pools: 7 * 2**depth - 5 (each 3x3 conv reaches its
        stride, each 2x2 pool and transposed conv up to its stride on one side; checked
        against gradients in the tests). A halo or a split buffer this wide makes a
        pixel independent of what lies beyond."""
        return 7 * 2**self.depth - 5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        return cls(**data)


def _double_conv(cin: int, cout: int, batch_norm: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    for c in (cin, cout):
        layers.append(nn.Conv2d(c, cout, kernel_size=3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """Encoder of double 3x3 convs and 2x2 max-pools, decoder of 2x2 transposed
    convs with skip concatenation, and a 1x1 head giving per-class logits."""

    def __init__(self, config: UNetConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.base_width * 2**i for i in range(config.depth + 1)]
        self.down = nn.ModuleList()
        cin = config.in_bands
        for w in widths[:-1]:
            self.down.append(_double_conv(cin, w, config.batch_norm))
            cin = w
        self.pool = nn.MaxPool2d(2)
        self.bottom = _double_conv(widths[-2], widths[-1], config.batch_norm)
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for w_low, w in zip(reversed(widths[1:]), reversed(widths[:-1]), strict=True):
            self.up.append(nn.ConvTranspose2d(w_low, w, kernel_size=2, stride=2))
            self.up_conv.append(_double_conv(2 * w, w, config.batch_norm))
        self.head = nn.Conv2d(widths[0], config.num_classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.config.in_bands:
            raise UNetError(
                f"U-Net expects input (batch, {self.config.in_bands} bands, height, width), "
                f"got shape {tuple(x.shape)}: check the bands read against the checkpoint's"
            )
        m = self.config.multiple
        if x.shape[2] % m or x.shape[3] % m:
            raise UNetError(
                f"input size {x.shape[2]}x{x.shape[3]} is not a multiple of {m} "
                f"(2**depth, depth={self.config.depth}): pad or crop it to a multiple"
            )
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for up, conv, skip in zip(self.up, self.up_conv, reversed(skips), strict=True):
            x = conv(torch.cat([skip, up(x)], dim=1))
        return self.head(x)


def prepare_for_device(model: UNet, device: torch.device) -> UNet:
    """Move to ``device``; on CUDA also switch to channels_last, which speeds
    convolutions there and changes nothing on the CPU."""
    model = model.to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model


def model_input(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A batch where :func:`prepare_for_device`'s model wants it: on ``device``, and
    channels_last on CUDA (copied without blocking where ``x`` is pinned)."""
    x = x.to(device, non_blocking=True)
    if device.type == "cuda":
        x = x.contiguous(memory_format=torch.channels_last)
    return x


def autocast(device: torch.device) -> torch.autocast:
    """bf16 autocast on CUDA; a disabled context elsewhere (CPU stays float32)."""
    return torch.autocast(
        device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"
    )


def pick_device(requested: str = "auto") -> torch.device:
    """``auto`` takes CUDA when present, else the CPU."""
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UNetError(f"device {requested!r} asked for but no CUDA device is visible: use 'cpu'")
    return device
