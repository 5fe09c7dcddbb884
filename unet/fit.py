"""How many tiles a GPU takes at once: measured on the device, not guessed.

A batch too small leaves the GPU's cores idle between kernel launches; one
too large fails with out-of-memory halfway through a state. What a tile
costs depends on the U-Net's width and depth, the tile's side, the dtype
autocast picks and the convolution algorithms cuDNN chooses, so it is
measured: the peak memory of a forward pass of one tile and of two, whose
difference is the cost of each further tile.
"""

from __future__ import annotations

import torch

from unet.errors import UNetError
from unet.model import UNet, autocast, model_input

CPU_BATCH = 4  # the CPU gains nothing from larger batches: its threads split each image
MAX_BATCH = 64  # beyond this a GPU is busy anyway, and the read-ahead memory grows with it
HEADROOM = 0.7  # of the free memory: cuDNN workspaces and the allocator's fragmentation


def batch_for_memory(free: int, fixed: int, per_tile: int, cap: int = MAX_BATCH) -> int:
    """The most tiles whose forward pass fits ``HEADROOM`` of ``free`` bytes, given
    the pass's ``fixed`` cost and each tile's; at least 1, at most ``cap``."""
    if per_tile <= 0:
        raise UNetError(f"a tile's measured cost is {per_tile} bytes: the measurement failed")
    budget = int(free * HEADROOM) - fixed
    if budget < per_tile:
        raise UNetError(
            f"one tile needs {(fixed + per_tile) / 2**20:.0f} MiB on the GPU, of "
            f"{free / 2**20:.0f} MiB free: use smaller tiles (grid.tile_size) or a GPU "
            "with more memory"
        )
    return max(1, min(cap, budget // per_tile))


def _peak(model: UNet, n: int, shape: tuple[int, int, int], device: torch.device) -> int:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    x = model_input(torch.zeros((n, *shape)), device)
    with torch.inference_mode(), autocast(device):
        torch.softmax(model(x).float(), dim=1).max(dim=1)
    torch.cuda.synchronize(device)
    return torch.cuda.max_memory_allocated(device) - base


def fit_batch(model: UNet, shape: tuple[int, int, int], device: torch.device) -> int:
    """The batch size for tiles of ``shape`` (channels, haloed height, width) on
    ``device``: measured on CUDA, :data:`CPU_BATCH` elsewhere."""
    if device.type != "cuda":
        return CPU_BATCH
    one, two = _peak(model, 1, shape, device), _peak(model, 2, shape, device)
    free, _ = torch.cuda.mem_get_info(device)
    return batch_for_memory(free, max(one - (two - one), 0), two - one)
