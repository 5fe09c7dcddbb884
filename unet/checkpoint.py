"""Checkpoints: everything prediction needs, in a file that loads without
executing code.

The format is a single safetensors file (a JSON header and raw little-endian
tensors; no pickle). The header's ``__metadata__`` holds one key,
``statemap``, whose value is a JSON document:

```
{
  "format": "statemap.checkpoint", "format_version": 1,
  "architecture": {"in_bands": 4, "num_classes": 4, "base_width": 16,
                   "depth": 3, "batch_norm": true},
  "bands": ["blue", "green", "red", "nir"],        # order of the input channels
  "periods": ["spring", "summer"],                  # a stack: channels = periods x bands
  "normalization": {"mean": [...], "std": [...]},   # per channel, in reflectance
  "classes": [{"value": 0, "name": "water", "color": "#2c7fb8"}, ...],
  "resolution": 10.0,                               # metres per pixel expected
  "extra": {...}                                    # free-form: metrics, training config
}
```

The tensors are the model's ``state_dict`` under their usual names. A
checkpoint is identified by the SHA-256 of its bytes (``checkpoint_hash``).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from unet.errors import UNetError
from unet.model import UNet, UNetConfig

FORMAT = "statemap.checkpoint"
FORMAT_VERSION = 1
UNITS = ("reflectance", "dn")


@dataclass(frozen=True)
class ModelCard:
    """What a model expects of its input and what its outputs mean."""

    config: UNetConfig
    bands: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    class_colors: tuple[str, ...]
    resolution: float
    # What the inputs are: "reflectance" (scale and offset applied) or "dn" (values as
    # stored). Files from before this field were all trained on reflectance.
    units: str = "reflectance"
    # Sub-periods of a multi-temporal stack, in channel order (layer-major: every band
    # of the first, then of the next); empty: one layer. How each layer is made is
    # the input recipe in ``extra["recipe"]["time"]``.
    periods: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        n = len(self.bands) * max(1, len(self.periods))
        if n != self.config.in_bands or len(self.mean) != n or len(self.std) != n:
            layers = f" x {len(self.periods)} periods" if self.periods else ""
            raise UNetError(
                f"model card lists {len(self.bands)} bands {list(self.bands)}{layers}, "
                f"{len(self.mean)} means and {len(self.std)} stds for a U-Net of "
                f"{self.config.in_bands} input channels: give one band name per band, one "
                "mean and std per channel"
            )
        if len(self.class_names) != self.config.num_classes or len(self.class_colors) != len(
            self.class_names
        ):
            raise UNetError(
                f"model card lists {len(self.class_names)} class names and "
                f"{len(self.class_colors)} colours for {self.config.num_classes} classes"
            )
        if self.units not in UNITS:
            raise UNetError(f"model card units {self.units!r}: use one of {list(UNITS)}")
        if any(s <= 0 for s in self.std):
            raise UNetError(f"normalisation std must be > 0 for every band, got {self.std}")

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "architecture": self.config.to_dict(),
            "bands": list(self.bands),
            "normalization": {"mean": list(self.mean), "std": list(self.std)},
            "classes": [
                {"value": i, "name": n, "color": c}
                for i, (n, c) in enumerate(zip(self.class_names, self.class_colors, strict=True))
            ],
            "resolution": self.resolution,
            "units": self.units,
            **({"periods": list(self.periods)} if self.periods else {}),
            "extra": self.extra,
        }

    @property
    def channels(self) -> tuple[str, ...]:
        """Input channel names: ``period:band`` for a stack."""
        if not self.periods:
            return self.bands
        return tuple(f"{p}:{b}" for p in self.periods for b in self.bands)

    @classmethod
    def from_json(cls, doc: dict[str, Any], source: str = "checkpoint") -> ModelCard:
        if doc.get("format") != FORMAT or doc.get("format_version") != FORMAT_VERSION:
            raise UNetError(
                f"{source} is not a {FORMAT} v{FORMAT_VERSION} file "
                f"(format={doc.get('format')!r}, version={doc.get('format_version')!r})"
            )
        try:
            classes = sorted(doc["classes"], key=lambda c: c["value"])
            return cls(
                config=UNetConfig.from_dict(doc["architecture"]),
                bands=tuple(doc["bands"]),
                mean=tuple(float(v) for v in doc["normalization"]["mean"]),
                std=tuple(float(v) for v in doc["normalization"]["std"]),
                class_names=tuple(c["name"] for c in classes),
                class_colors=tuple(c["color"] for c in classes),
                resolution=float(doc["resolution"]),
                units=str(doc.get("units", "reflectance")),
                periods=tuple(doc.get("periods", ())),
                extra=dict(doc.get("extra", {})),
            )
        except (KeyError, TypeError) as exc:
            raise UNetError(f"{source}: metadata lacks or mistypes {exc}; re-save it") from exc


def checkpoint_bytes(model: UNet, card: ModelCard) -> bytes:
    if model.config != card.config:
        raise UNetError(f"model architecture {model.config} differs from the card's {card.config}")
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    meta = {"statemap": json.dumps(card.to_json(), sort_keys=True)}
    return st_save(tensors, metadata=meta)


def save_checkpoint(path: str | os.PathLike[str], model: UNet, card: ModelCard) -> str:
    """Write atomically (temp file + rename); returns the checkpoint hash."""
    data = checkpoint_bytes(model, card)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return hashlib.sha256(data).hexdigest()


def card_from_bytes(data: bytes, source: str = "checkpoint") -> ModelCard:
    """The model card from a checkpoint's JSON header; the tensors are not read."""
    header_len = int.from_bytes(data[:8], "little") if len(data) >= 8 else 0
    try:
        if not 0 < header_len <= len(data) - 8:
            raise ValueError(f"header length {header_len} does not fit a {len(data)}-byte file")
        header = json.loads(data[8 : 8 + header_len])
    except ValueError as exc:
        raise UNetError(f"{source} is not a readable safetensors checkpoint: {exc}") from exc
    raw = header.get("__metadata__", {}).get("statemap") if isinstance(header, dict) else None
    if raw is None:
        raise UNetError(f"{source} has no 'statemap' metadata: it was not written by statemap")
    return ModelCard.from_json(json.loads(raw), source)


def parse_checkpoint(data: bytes, source: str = "checkpoint") -> tuple[UNet, ModelCard]:
    """Rebuild the model from checkpoint bytes, wherever they were read from."""
    card = card_from_bytes(data, source)
    try:
        tensors = st_load(data)
    except (SafetensorError, ValueError) as exc:
        raise UNetError(f"{source} is not a readable safetensors checkpoint: {exc}") from exc
    model = UNet(card.config)
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise UNetError(f"{source}: weights do not fit the architecture {card.config}") from exc
    model.eval()
    return model, card


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[UNet, ModelCard]:
    path = Path(path)
    if not path.is_file():
        raise UNetError(f"checkpoint {path} does not exist: train one with `statemap train`")
    return parse_checkpoint(path.read_bytes(), str(path))


def checkpoint_hash(path: str | os.PathLike[str]) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()
