"""Random symmetries of training chips, chosen per training run.

Flips and 90° rotations multiply the training data for free when the classes
look the same in every orientation, as crowns, fields and lakes seen from
above do. They are wrong when orientation *is* the class: a flip turns rows
planted at 45° into rows at 135°, so under "d4" or "flips" the model is
taught that the two are one class. Hence a setting, not a fixed choice.

Every mode draws the same random numbers per chip (a rotation, then a flip)
and uses what its group needs, so a seed samples the same chips in the same
order whatever the mode: comparing modes compares augmentation alone.
"""

from __future__ import annotations

import numpy as np

from unet.errors import UNetError

AUGMENTATIONS: tuple[str, ...] = ("d4", "flips", "rot90", "none")

# Modes whose group holds a quarter turn: a non-square chip would change shape.
_TURNING = ("d4", "rot90")


def check_augmentation(mode: str) -> str:
    """``mode`` if it is one of ``AUGMENTATIONS``; raised before training starts,
    not at the first chip."""
    if mode not in AUGMENTATIONS:
        raise UNetError(
            f"unknown augmentation {mode!r}: use one of {list(AUGMENTATIONS)} "
            "('none' where orientation tells classes apart)"
        )
    return mode


def augment(
    image: np.ndarray, labels: np.ndarray, mode: str, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """One transform of ``mode``'s group, drawn uniformly, applied to an image
    chip (bands, h, w) and its label chip (h, w) alike, returned contiguous
    (``torch.from_numpy`` and ``np.stack`` need no further copy).

    - d4: the 8 symmetries of the square (4 rotations, each with or without a
      left-right flip)
    - flips: identity, left-right, up-down, both (= a half turn)
    - rot90: the 4 rotations by multiples of 90°
    - none: identity
    """
    check_augmentation(mode)
    if image.ndim != 3 or labels.ndim != 2 or image.shape[1:] != labels.shape:
        raise UNetError(
            f"image chip {image.shape} and label chip {labels.shape} do not match: "
            "give (bands, h, w) and (h, w) of the same place"
        )
    h, w = labels.shape
    if mode in _TURNING and h != w:
        raise UNetError(
            f"augmentation {mode!r} turns chips by 90°, which a {h}x{w} chip does not "
            "survive: use square chips or augmentation 'flips' or 'none'"
        )
    # Both numbers are drawn in every mode (see the module docstring); this is
    # also the order ChipSampler drew them in before the modes existed.
    k = int(rng.integers(4))
    flip = bool(rng.integers(2))
    if mode == "d4":
        image, labels = np.rot90(image, k, axes=(1, 2)), np.rot90(labels, k)
        if flip:
            image, labels = image[:, :, ::-1], labels[:, ::-1]
    elif mode == "rot90":
        image, labels = np.rot90(image, k, axes=(1, 2)), np.rot90(labels, k)
    elif mode == "flips":
        if k & 1:
            image, labels = image[:, :, ::-1], labels[:, ::-1]
        if k & 2:
            image, labels = image[:, ::-1, :], labels[::-1, :]
    return np.ascontiguousarray(image), np.ascontiguousarray(labels)
