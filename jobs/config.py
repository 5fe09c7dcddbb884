"""Job configs: the boundary where user YAML is validated.

Everything past this module works on frozen dataclasses; here each field is
checked once, and an error names the field, the file and the fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jobs.errors import ConfigError
from unet.train import TrainSpec

_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClassEntry(_Strict):
    name: Annotated[str, Field(min_length=1)]
    color: str

    @field_validator("color")
    @classmethod
    def _hex(cls, v: str) -> str:
        if not _COLOR.match(v):
            raise ValueError(f"colour {v!r} must be '#rrggbb'")
        return v


class ModelSection(_Strict):
    base_width: Annotated[int, Field(ge=1, le=512)] = 16
    depth: Annotated[int, Field(ge=1, le=6)] = 3
    batch_norm: bool = True


class TrainingSection(_Strict):
    chip_size: Annotated[int, Field(ge=16)] = 128
    batch_size: Annotated[int, Field(ge=1)] = 8
    max_seconds: Annotated[float, Field(gt=0)] = 150.0
    max_steps: Annotated[int, Field(ge=1)] = 1_000_000
    lr: Annotated[float, Field(gt=0, lt=1)] = 3e-3
    evaluations: Annotated[int, Field(ge=0)] = 5
    seed: int = 0
    device: str = "auto"


class HoldoutSection(_Strict):
    east_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.3
    gap_px: Annotated[int, Field(ge=0)] = 16


class TrainConfig(_Strict):
    image: Path
    labels: Path
    output: Path
    bands: Annotated[list[str], Field(min_length=1)]
    classes: Annotated[list[ClassEntry], Field(min_length=2, max_length=255)]
    model: ModelSection = ModelSection()
    training: TrainingSection = TrainingSection()
    holdout: HoldoutSection = HoldoutSection()

    @field_validator("bands")
    @classmethod
    def _unique_bands(cls, v: list[str]) -> list[str]:
        dup = sorted({b for b in v if v.count(b) > 1})
        if dup:
            raise ValueError(f"band(s) {dup} listed twice")
        return v

    def to_spec(self, base: Path) -> TrainSpec:
        """Relative paths are taken from the config file's folder."""
        t, m = self.training, self.model
        return TrainSpec(
            image=base / self.image,
            labels=base / self.labels,
            output=base / self.output,
            bands=tuple(self.bands),
            class_names=tuple(c.name for c in self.classes),
            class_colors=tuple(c.color for c in self.classes),
            base_width=m.base_width,
            depth=m.depth,
            batch_norm=m.batch_norm,
            holdout_fraction=self.holdout.east_fraction,
            gap=self.holdout.gap_px,
            chip_size=t.chip_size,
            batch_size=t.batch_size,
            max_seconds=t.max_seconds,
            max_steps=t.max_steps,
            lr=t.lr,
            evaluations=t.evaluations,
            seed=t.seed,
            device=t.device,
        )


def _describe(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid config"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown field: remove it or check its spelling"
        elif err["type"] == "missing":
            msg = "required field is missing: add it"
        lines.append(f"  {where}: {msg}")
    return "\n".join(lines)


def read_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path} must hold a mapping of fields, got {type(doc).__name__}")
    return doc


def load_train_config(path: str | Path) -> TrainSpec:
    path = Path(path)
    try:
        config = TrainConfig.model_validate(read_yaml(path))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, str(path))) from exc
    return config.to_spec(path.resolve().parent)
