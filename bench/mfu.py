"""The U-Net alone, at its FLOP rate: megapixels/s and model FLOP utilisation.

The U-Net a state is mapped with (base width 64, depth 4) on 512-px tiles
with a 64-px halo (the window it is given is 2**depth px less: moved onto its
lattice), as the predictor runs it: bf16 autocast and channels_last
on CUDA (float32 on the CPU), a fixed batch (``--batch-size auto``: as many
tiles as the GPU's memory takes, measured as a run measures it), softmax and
the winning class, timed over ``--seconds`` after a warm-up. FLOPs are
counted by torch's own counter on one forward pass (multiply-adds count two);
MFU is achieved FLOP/s over the device's dense bf16 peak (a table of
data-centre GPUs, or ``--peak-tflops``). Megapixels are the tiles' mapped
cores, not their halos.

    python bench/mfu.py [--width 64] [--depth 4] [--tile-size 512] [--batch-size auto]
                        [--compile] [--seconds 20] [--peak-tflops T]

Last line: ``mpx_s=<a> tflops=<b> mfu=<c|n/a> batch=<n> device=<cpu|cuda>``.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from unet.fit import fit_batch
from unet.model import UNet, UNetConfig, autocast, model_input, pick_device, prepare_for_device

# Dense bf16 tensor-core peaks (TFLOP/s), from the vendors' data sheets (SXM parts).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "L4": 121.0,
                    "A10G": 70.0, "A10": 125.0}  # fmt: skip


def peak_tflops(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def forward(model: torch.nn.Module, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    with torch.inference_mode(), autocast(device):
        return torch.softmax(model(x).float(), dim=1).max(dim=1)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--depth", type=int, default=4)
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--halo", type=int, default=64)
    parser.add_argument("--bands", type=int, default=4)
    parser.add_argument("--batch-size", default="auto", help="tiles per batch, or auto")
    parser.add_argument("--compile", action="store_true", help="torch.compile the U-Net")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--peak-tflops", type=float, help="the device's peak, if not in the table")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()

    device = pick_device(args.device)
    torch.manual_seed(0)
    config = UNetConfig(in_bands=args.bands, num_classes=6, base_width=args.width, depth=args.depth)
    model = prepare_for_device(UNet(config), device).eval()
    side = args.tile_size + 2 * args.halo - config.multiple
    shape = (args.bands, side, side)
    batch = fit_batch(model, shape, device) if args.batch_size == "auto" else int(args.batch_size)
    x = model_input(torch.randn((batch, *shape)), device)
    with FlopCounterMode(display=False) as counter:
        forward(model, x[:1], device)
    flops_per_tile = counter.get_total_flops()
    if args.compile:
        model = torch.compile(model)
    for _ in range(3):  # warm-up: cuDNN's algorithm search, the compiler
        forward(model, x, device).cpu()
    tiles, start = 0, time.perf_counter()
    while tiles == 0 or time.perf_counter() - start < args.seconds:
        forward(model, x, device).cpu()
        tiles += batch
    seconds = time.perf_counter() - start
    tflops = flops_per_tile * tiles / seconds / 1e12
    mpx_s = tiles * args.tile_size**2 / seconds / 1e6
    peak = args.peak_tflops or peak_tflops(device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"{name}: {tiles} tiles of {side} px in {seconds:.1f} s, batch {batch}, "
          f"{flops_per_tile / side**2 / 1e6:.2f} MFLOP per input px")  # fmt: skip
    mfu = f"{tflops / peak:.3f}" if peak else "n/a"
    print(f"mpx_s={mpx_s:.2f} tflops={tflops:.3f} mfu={mfu} batch={batch} device={device.type}")


if __name__ == "__main__":
    main()
