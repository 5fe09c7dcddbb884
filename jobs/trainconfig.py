"""Training configs, validated at the boundary: from a labelled raster, or from a
STAC catalog and reference labels (``catalog:`` + ``labels:``) through the run's reader.

``load_train_config`` tells the two apart by their fields and gives the spec the
matching trainer takes (``unet.train.TrainSpec`` or
``cluster.training.train.CatalogTrainSpec``).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator

from cluster.imagery.temporal import run_year
from cluster.tiles.grid import Grid
from cluster.training.chips import ChipSpec
from cluster.training.labels import LabelSpec, open_labels
from cluster.training.split import SplitSpec
from cluster.training.train import CatalogTrainSpec
from jobs.config import GridSection, _CatalogInputs, _load, _Strict, read_yaml, resolve_uri
from unet.model import UNetConfig
from unet.train import Budget, TrainSpec

_COLOR = re.compile(r"^#[0-9a-fA-F]{6}$")


def _unique(bands: list[str]) -> list[str]:
    dup = sorted({b for b in bands if bands.count(b) > 1})
    if dup:
        raise ValueError(f"band(s) {dup} listed twice")
    return bands


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
    # Random symmetries of the training chips (unet.augment): "none" where
    # orientation is part of a class (rows, terraces, wind-thrown stands).
    augmentation: Literal["d4", "flips", "rot90", "none"] = "d4"


class HoldoutSection(_Strict):
    east_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.3
    gap_px: Annotated[int, Field(ge=0)] = 16


class TrainConfig(_Strict):
    image: Path
    labels: Path
    output: Path
    bands: Annotated[list[str], Field(min_length=1)]
    # The image's units once its own scale/offset are applied; "dn" trains on raw
    # digital numbers on purpose (prediction then expects them too).
    units: Literal["reflectance", "dn"] = "reflectance"
    classes: Annotated[list[ClassEntry], Field(min_length=2, max_length=255)]
    model: ModelSection = ModelSection()
    training: TrainingSection = TrainingSection()
    holdout: HoldoutSection = HoldoutSection()

    @field_validator("bands")
    @classmethod
    def _unique_bands(cls, v: list[str]) -> list[str]:
        return _unique(v)

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
            units=self.units,
            augmentation=t.augmentation,
        )


class SplitSection(_Strict):
    """Whole stands in spatial blocks (``kind: stands``, what ``auto`` picks for vector
    labels), spatial blocks (``kind: blocks``, for rasters) or the eastern strip."""

    kind: Literal["auto", "stands", "blocks", "east"] = "auto"
    block_px: Annotated[int, Field(ge=16)] = 512
    buffer_px: Annotated[int, Field(ge=0)] = 64  # >= the U-Net's receptive radius
    fractions: tuple[float, float, float] = (0.7, 0.1, 0.2)  # train, validation, test
    seed: int = 0
    east_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.3

    def to_spec(self) -> SplitSpec:
        return SplitSpec(self.kind, self.block_px, self.buffer_px, self.fractions, self.seed,
                         self.east_fraction)  # fmt: skip


class PointsSection(_Strict):
    """What a point label covers: a square of ``size`` metres a side, or a disc."""

    shape: Literal["square", "disc"] = "square"
    size: Annotated[float, Field(gt=0)] = 30.0


class CatalogTrainingSection(TrainingSection):
    loader_workers: Annotated[int, Field(ge=0, le=64)] = 0  # processes reading chips ahead
    chip_workers: Annotated[int, Field(ge=0)] = 0  # chip makers on Ray (0: one per CPU)
    # Share of the chips holding labels that may fail to be made (an unreadable file);
    # more stops training: fix the inputs and rerun (only the failed ones are remade).
    max_failed_chips: Annotated[float, Field(ge=0, le=1)] = 0.01


class CatalogTrainConfig(_CatalogInputs):
    """Training chips read from the catalog where the labels are, as a run reads tiles."""

    grid: GridSection  # the run's grid: CRS, resolution, halo (and origin, if it has one)
    labels: str  # vector (GeoPackage, GeoJSON, FlatGeobuf, GeoParquet) or raster, any CRS
    label_field: str | None = None  # vector: the attribute with the class name or value
    label_layer: str | None = None  # vector: a layer of a multi-layer file
    points: PointsSection = PointsSection()
    inner_buffer: Annotated[float, Field(ge=0)] = 0.0  # metres off polygon edges, unlabelled
    chips: str | None = None  # the chip store; default <output>/chips.zarr
    output: Path
    bands: Annotated[list[str], Field(min_length=1)]
    units: Literal["reflectance", "dn"] = "reflectance"
    classes: Annotated[list[ClassEntry], Field(min_length=2, max_length=254)]
    model: ModelSection = ModelSection()
    training: CatalogTrainingSection = CatalogTrainingSection()
    split: SplitSection = SplitSection()

    @field_validator("bands")
    @classmethod
    def _unique_bands(cls, v: list[str]) -> list[str]:
        return _unique(v)

    def to_spec(self, base: str) -> CatalogTrainSpec:
        t, m, g = self.training, self.model, self.grid
        names = tuple(c.name for c in self.classes)
        labels = LabelSpec(resolve_uri(self.labels, base), self.label_field, self.label_layer,
                           self.points.size, self.points.shape, self.inner_buffer)  # fmt: skip
        if g.origin is not None:
            grid = Grid(g.crs, g.origin, g.resolution, t.chip_size, g.halo)
        else:  # snapped to whole chip spans: on the lattice of any snapped run grid
            bounds = open_labels(labels, names, g.crs).bounds(g.crs)
            grid = Grid.covering(g.crs, bounds, g.resolution, t.chip_size, g.halo)
        chips = ChipSpec(
            catalog=resolve_uri(self.catalog, base), grid=grid, bands=tuple(self.bands),
            class_names=names, labels=labels,
            collections=tuple(self.collections) if self.collections else None,
            start=self.period.start, end=self.period.end, max_cloud_cover=self.max_cloud_cover,
            overrides=self.overrides(), units=self.units, time=self.time.recipe(),
        )  # fmt: skip
        year = run_year(chips.start, chips.end)
        chips.time.windows(year)  # a relative stack needs the period's year
        chips.time.check_within(year, chips.start, chips.end)
        output = Path(resolve_uri(str(self.output), base))
        return CatalogTrainSpec(
            chips=chips,
            chip_store=resolve_uri(self.chips, base) if self.chips else str(output / "chips.zarr"),
            split=self.split.to_spec(),
            output=output,
            class_colors=tuple(c.color for c in self.classes),
            model=UNetConfig(len(chips.channels), len(names), m.base_width, m.depth,
                             m.batch_norm),
            budget=Budget(t.max_seconds, t.max_steps, t.batch_size, t.lr, t.evaluations),
            augmentation=t.augmentation, seed=t.seed, device=t.device,
            loader_workers=t.loader_workers, chip_workers=t.chip_workers,
            max_failed_chips=t.max_failed_chips,
        )  # fmt: skip


def load_train_config(path: str | Path) -> TrainSpec | CatalogTrainSpec:
    """A training config of either kind: ``catalog:`` trains from the catalog."""
    if "catalog" in read_yaml(path):
        config = _load(CatalogTrainConfig, path)
        config.apply_storage()
        return config.to_spec(config.root(path))
    return _load(TrainConfig, path).to_spec(Path(path).resolve().parent)
