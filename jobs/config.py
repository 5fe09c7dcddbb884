"""Job configs: the boundary where user YAML is validated.

Everything past this module works on frozen dataclasses; here each field is
checked once, and an error names the field, the file and the fix.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from cluster.errors import ClusterError
from cluster.imagery.providers import BandOverride, CollectionOverrides, MaskOverride, Overrides
from cluster.imagery.temporal import SubPeriod, TimeRecipe, TimeSettings
from cluster.predict.driver import RunSpec
from cluster.predict.setup import PredictorSetup
from cluster.storage import objstore
from cluster.storage.gdalenv import bucket_var
from cluster.tiles.grid import Grid
from cluster.tiles.region import load_region
from jobs.errors import ConfigError
from jobs.period import Period

_M = TypeVar("_M", bound=BaseModel)
_SECRET_WORDS = ("key", "secret", "token", "password", "credential")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PeriodSection(_Strict):
    start: str | None = None  # ISO date or datetime, inclusive
    end: str | None = None

    @field_validator("start", "end", mode="before")
    @classmethod
    def _iso(cls, v: Any) -> Any:
        """YAML reads an unquoted 2026-06-01 as a date: take it as written."""
        return v.isoformat() if isinstance(v, dt.date) else v

    @model_validator(mode="after")
    def _ordered(self) -> PeriodSection:
        try:
            self.resolved()
        except ConfigError as exc:
            raise ValueError(str(exc)) from None
        return self

    def resolved(self) -> Period:
        return Period.of(self.start, self.end)


class GridSection(_Strict):
    crs: str
    resolution: Annotated[float, Field(gt=0)]
    tile_size: Annotated[int, Field(ge=16, le=8192)] = 256
    halo: Annotated[int, Field(ge=0)] = 56
    origin: tuple[float, float] | None = None  # default: snapped north-west of the region


class RunSection(_Strict):
    # auto: as many tiles as the GPU's memory takes (measured at the start), 4 on CPUs
    batch_size: Annotated[int, Field(ge=1, le=256)] | Literal["auto"] = 4
    compile: bool = False  # torch.compile the U-Net: faster on some GPUs, minutes to start
    actors: Annotated[int, Field(ge=0)] = 0
    device: str = "auto"
    run_id: str = ""
    flush_seconds: Annotated[float, Field(ge=0)] = 5.0
    # Inputs far from the training statistics are refused; true: only logged.
    accept_input_shift: bool = False
    # Every item's overviews checked before the run (seconds for hundreds of items);
    # false skips it, e.g. rerunning a catalog already checked.
    check_items: bool = True
    # An actor that dies (its node lost) is replaced this often, then the run stops.
    actor_replacements: Annotated[int, Field(ge=0)] = 3
    # Per reader process: tiles read at once, and file reads (HTTP requests) in flight.
    # Imagery 20-100 ms away needs many of both; local disks are served by few.
    tiles_in_flight: Annotated[int, Field(ge=1, le=256)] = 8
    requests_in_flight: Annotated[int, Field(ge=1, le=1024)] = 32
    # Open datasets per file and reader: each fetches and decodes blocks on its own.
    handles_per_file: Annotated[int, Field(ge=1, le=64)] = 2


def _refuse_credentials(data: Any) -> Any:
    if isinstance(data, dict):
        secret = sorted(k for k in data if any(w in k.lower() for w in _SECRET_WORDS))
        if secret:
            raise ValueError(
                f"{secret}: credentials are not read from configs; set AWS_ACCESS_KEY_ID "
                "and AWS_SECRET_ACCESS_KEY (for a bucket of its own: STATEMAP_BUCKET_<NAME>_"
                "ACCESS_KEY_ID and ..._SECRET_ACCESS_KEY) in the environment of the driver "
                "and the workers"
            )
    return data


class BucketSection(_Strict):
    """One bucket on its own S3 service."""

    endpoint_url: Annotated[str, Field(pattern=r"^https?://[^/@\s]+$")]
    region: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _no_credentials(cls, data: Any) -> Any:
        return _refuse_credentials(data)


class StorageSection(_Strict):
    """Where s3:// URIs point. Credentials are never read from a config (configs
    get copied, logged and committed): they come from the environment."""

    endpoint_url: str | None = None  # e.g. http://127.0.0.1:8333 for SeaweedFS/MinIO
    region: str | None = None
    # Buckets on another S3 service than the run's (e.g. the Copernicus Data Space's
    # eodata, whose endpoint statemap knows): their keys come from the environment,
    # STATEMAP_BUCKET_<NAME>_ACCESS_KEY_ID and STATEMAP_BUCKET_<NAME>_SECRET_ACCESS_KEY.
    buckets: dict[str, BucketSection] = {}

    @model_validator(mode="before")
    @classmethod
    def _no_credentials(cls, data: Any) -> Any:
        return _refuse_credentials(data)

    def environment(self) -> dict[str, str]:
        env = {"AWS_ENDPOINT_URL": self.endpoint_url, "AWS_REGION": self.region}
        for name, bucket in self.buckets.items():
            env[bucket_var(name, "ENDPOINT_URL")] = bucket.endpoint_url
            env[bucket_var(name, "REGION")] = bucket.region
        return {k: v for k, v in env.items() if v}


class BandOverrideSection(_Strict):
    """Where one model band is in a collection's items, and its units; unset fields
    are found as for any catalog."""

    asset: Annotated[str, Field(min_length=1)] | None = None
    band: Annotated[int, Field(ge=1)] | None = None  # 1-based, in a multiband asset
    scale: float | None = None
    offset: float | None = None
    nodata: float | None = None

    @field_validator("scale")
    @classmethod
    def _nonzero(cls, v: float | None) -> float | None:
        if v is not None and (v == 0 or not math.isfinite(v)):
            raise ValueError(f"scale {v!r} must be a finite, non-zero number")
        return v

    def to_spec(self) -> BandOverride:
        return BandOverride(self.asset, self.band, self.scale, self.offset, self.nodata)


class MaskOverrideSection(_Strict):
    asset: Annotated[str, Field(min_length=1)]
    invalid: Annotated[list[int], Field(min_length=1)]  # the asset's values that are unusable
    dilate: list[int] | None = None  # of them, those mask.dilate_m widens (default: all)


class CollectionAssetsSection(_Strict):
    """How to read one collection statemap does not know (or reads wrongly)."""

    bands: dict[str, BandOverrideSection] = {}
    mask: MaskOverrideSection | None = None

    def to_spec(self) -> CollectionOverrides:
        mask = None
        if self.mask:
            dilate = None if self.mask.dilate is None else tuple(self.mask.dilate)
            mask = MaskOverride(self.mask.asset, tuple(self.mask.invalid), dilate)
        bands = tuple((name, b.to_spec()) for name, b in sorted(self.bands.items()))
        return CollectionOverrides(bands, mask)


class MaskSection(_Strict):
    # Cloud and shadow widened by this many metres (the haze at their rims). A run
    # reads as its checkpoint was trained: left out, the checkpoint's; else the same.
    dilate_m: Annotated[float, Field(ge=0, le=5000)] | None = None


class SubPeriodSection(_Strict):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]+$")]
    start: str  # MM-DD (in the run's year) or YYYY-MM-DD, inclusive
    end: str

    @field_validator("start", "end", mode="before")
    @classmethod
    def _iso(cls, v: Any) -> Any:
        return v.isoformat() if isinstance(v, dt.date) else v


class TimeSection(_Strict):
    """How the period's items become input pixels (cluster.imagery.temporal). In a
    training config unset fields take the defaults (the single-period mosaic); in a
    run they come from the checkpoint, and one set otherwise is refused, except
    ``fill``, the run's choice for pixels a sub-period cannot cover."""

    compositing: Literal["first", "median", "mean", "percentile"] | None = None
    percentile: Annotated[float, Field(ge=0, le=100)] | None = None
    min_clear: Annotated[int, Field(ge=1)] | None = None
    periods: list[SubPeriodSection] | None = None
    fill: Literal["nodata", "neighbour"] | None = None

    @model_validator(mode="after")
    def _valid(self) -> TimeSection:
        try:
            self.recipe()
        except ClusterError as exc:
            raise ValueError(str(exc)) from None
        return self

    def settings(self) -> TimeSettings:
        """The fields set, as the run compares them with its checkpoint's recipe."""
        periods = None
        if self.periods is not None:
            periods = tuple(SubPeriod(p.name, p.start, p.end) for p in self.periods)
        values = {"compositing": self.compositing, "percentile": self.percentile,
                  "min_clear": self.min_clear, "periods": periods, "fill": self.fill}  # fmt: skip
        return tuple((k, v) for k, v in values.items() if v is not None)

    def recipe(self) -> TimeRecipe:
        return TimeRecipe(**dict(self.settings()))


class _CatalogInputs(_Strict):
    """What imagery is read and how: shared by prediction, region and training configs."""

    # Where the relative paths below start: a folder (itself relative to the config
    # file's) or an s3:// prefix; default: the config file's folder. ``--set base=...``
    # points a config at data elsewhere, e.g. from a Ray job's working-dir copy.
    base: str | None = None
    catalog: str
    collections: list[str] | None = None
    period: PeriodSection = PeriodSection()
    max_cloud_cover: Annotated[float, Field(ge=0, le=100)] | None = None
    storage: StorageSection = StorageSection()
    # Per collection id ("*": any other), overriding how bands, units and masks are found.
    assets: dict[str, CollectionAssetsSection] = {}
    # Compositing over the period, or a stack of sub-periods (cluster.imagery.temporal).
    time: TimeSection = TimeSection()
    mask: MaskSection = MaskSection()

    def overrides(self) -> Overrides:
        collections = tuple((cid, c.to_spec()) for cid, c in sorted(self.assets.items()))
        return Overrides(collections, self.mask.dilate_m)

    def root(self, config_path: str | Path) -> str:
        """The folder (or s3:// prefix) relative paths are taken from."""
        folder = Path(config_path).resolve().parent
        return resolve_uri(self.base, folder) if self.base else str(folder)

    def apply_storage(self) -> None:
        """The config's object-storage endpoint and region into this process's
        environment: set once at the entry point, before Ray starts local workers
        (which inherit it) and before any s3:// URI is read."""
        env = self.storage.environment()
        if "AWS_ENDPOINT_URL" in env:  # the config's endpoint wins over narrower variables
            for narrower in ("AWS_S3_ENDPOINT", "AWS_ENDPOINT_URL_S3", "AWS_HTTPS"):
                os.environ.pop(narrower, None)
        os.environ.update(env)


class _RunInputs(_CatalogInputs):
    """What a prediction run reads, shared by prediction and region configs."""

    region: str
    checkpoint: str
    grid: GridSection
    run: RunSection = RunSection()

    def run_spec(
        self, base: str | Path, store: str, period: Period | None = None, run_id: str = ""
    ) -> RunSpec:
        """Paths relative to ``base`` (see ``root``); ``period`` (e.g. a schedule's)
        replaces the config's own."""
        region = resolve_uri(self.region, base)
        g = self.grid
        if g.origin is None:
            bounds = load_region(region, g.crs).bounds
            grid = Grid.covering(g.crs, bounds, g.resolution, g.tile_size, g.halo)
        else:
            grid = Grid(g.crs, g.origin, g.resolution, g.tile_size, g.halo)
        start, end = (
            (period.start_iso, period.end_iso) if period else (self.period.start, self.period.end)
        )
        setup = PredictorSetup(
            checkpoint=resolve_uri(self.checkpoint, base),
            catalog=resolve_uri(self.catalog, base),
            collections=tuple(self.collections) if self.collections else None,
            start=start,
            end=end,
            max_cloud_cover=self.max_cloud_cover,
            region=region,
            grid=grid,
            store=resolve_uri(store, base),
            batch_size=0 if self.run.batch_size == "auto" else self.run.batch_size,
            device=self.run.device,
            compile=self.run.compile,
            overrides=self.overrides(),
            accept_input_shift=self.run.accept_input_shift,
            check_items=self.run.check_items,
            time=self.time.settings(),
            tiles_in_flight=self.run.tiles_in_flight,
            requests_in_flight=self.run.requests_in_flight,
            handles_per_file=self.run.handles_per_file,
        )
        return RunSpec(
            setup=setup,
            run_id=run_id or self.run.run_id,
            actors=self.run.actors,
            flush_s=self.run.flush_seconds,
            actor_replacements=self.run.actor_replacements,
        )


class PredictConfig(_RunInputs):
    store: str

    def to_spec(self, base: str | Path) -> RunSpec:
        return self.run_spec(base, self.store)


class OutputSection(_Strict):
    """Where a regional run writes. Each run gets its own store and maps folder,
    named by its run id, so runs of other periods or checkpoints never mix."""

    stores: str  # <stores>/<run id>.zarr: intermediate (the bucket's lifecycle may expire them)
    maps: str  # <maps>/<run id>/: COGs, STAC collection, quicklook, config, run record
    compression: Literal["DEFLATE", "ZSTD", "LZW"] = "DEFLATE"
    max_part_px: Annotated[int, Field(ge=512)] = 40_000


class PlanSection(_Strict):
    """The throughput ``statemap plan`` turns into GPU-hours: measured, not guessed."""

    tiles_per_gpu_second: Annotated[float, Field(gt=0)]
    measured: str = ""  # how and where, e.g. "bench/pipeline.py, 512 px tiles, H100"


class RegionConfig(_RunInputs):
    """One region's production run: ``python -m jobs.run --config <this>``."""

    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")]
    description: str = ""
    output: OutputSection
    plan: PlanSection | None = None  # absent: `statemap plan` measures on its own device


def resolve_uri(uri: str, base: str | Path) -> str:
    """A relative path is taken from ``base`` (a folder or an s3:// prefix); URIs
    and absolute paths are left alone."""
    if "://" in uri:
        return uri.removeprefix("file://")
    if objstore.is_s3(base):
        return objstore.join(str(base), uri)
    return str((Path(base) / uri).resolve())


def _describe(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid config"]
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
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
    except (yaml.YAMLError, ValueError) as exc:  # ValueError: e.g. a date like 2026-02-30
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path} must hold a mapping of fields, got {type(doc).__name__}")
    return doc


def _load(model: type[_M], path: str | Path) -> _M:
    try:
        return model.model_validate(read_yaml(path))
    except ValidationError as exc:
        raise ConfigError(_describe(exc, str(path))) from exc


def load_predict_config(path: str | Path) -> RunSpec:
    """The run, with the config's storage settings applied (see ``apply_storage``)."""
    config = _load(PredictConfig, path)
    config.apply_storage()
    return config.to_spec(config.root(path))


def load_region_config(path: str | Path, overrides: Sequence[str] = ()) -> RegionConfig:
    """``overrides`` are ``dotted.field=value`` (value parsed as YAML), applied
    before validation: the same config pointed at other data, as the tests do."""
    doc = apply_overrides(read_yaml(path), overrides)
    try:
        return RegionConfig.model_validate(doc)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, str(path))) from exc


def apply_overrides(doc: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """``dotted.field=value`` items (value parsed as YAML) set into ``doc``, in place."""
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r}: write field=value, e.g. output.maps=/data/maps")
        *parents, leaf = key.split(".")
        node = doc
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part} is not a section")
            node = child
        try:
            node[leaf] = yaml.safe_load(value)
        except (yaml.YAMLError, ValueError) as exc:
            raise ConfigError(f"override {item!r}: {exc}") from exc
    return doc
