"""What a prediction run is made of, shared by the driver, its actors and their readers:
the setup an actor starts from (URIs and small specs, no data), a tile's result, and
the checks and recipe read from the checkpoint. Nothing here loads a model."""

from __future__ import annotations

from dataclasses import dataclass, replace

from cluster.errors import ClusterError
from cluster.imagery.catalog import MOSAIC, Catalog
from cluster.imagery.providers import NO_OVERRIDES, Overrides
from cluster.imagery.temporal import TimeRecipe, TimeSettings, run_recipe, run_year
from cluster.storage import objstore
from cluster.tiles.grid import Grid
from cluster.tiles.region import Region
from unet.checkpoint import ModelCard, card_from_bytes
from unet.context import halo_needed, recorded_radius

NODATA = 255


@dataclass(frozen=True)
class PredictorSetup:
    """What an actor needs to start: URIs and small specs, no data."""

    checkpoint: str
    catalog: str
    collections: tuple[str, ...] | None
    start: str | None
    end: str | None
    max_cloud_cover: float | None
    region: str
    grid: Grid
    store: str
    batch_size: int  # 0: fitted to the GPU's memory (run.batch_size: auto)
    device: str = "auto"
    threads: int = 0  # torch intra-op threads; 0 = all the actor's CPUs
    overrides: Overrides = NO_OVERRIDES  # the config's word on bands, units, masks
    accept_input_shift: bool = False  # input-check findings only logged, not refused
    check_items: bool = True  # every item's overviews checked before the run (run.check_items)
    time: TimeSettings = ()  # the config's time settings; the rest from the checkpoint
    readers: int = 0  # reader processes beside the actor on its node; 0: it reads itself
    queued: int = 1  # batches an actor holds at once (its calls in flight): its input slots
    compile: bool = False  # torch.compile the U-Net (run.compile)
    null_model: bool = False  # bench/feed.py: the U-Net skipped, everything else as run
    tiles_in_flight: int = 8  # tiles a reader process reads at once (run.tiles_in_flight)
    requests_in_flight: int = 32  # its file reads in flight at most (run.requests_in_flight)
    handles_per_file: int = 2  # open datasets per file in a reader (run.handles_per_file)

    @property
    def year(self) -> int | None:
        """The year a stack's relative sub-periods are placed in."""
        return run_year(self.start, self.end)


@dataclass(frozen=True)
class TileResult:
    """What the driver learns of a tile: written (ok) or why not."""

    tile_id: str
    ok: bool
    error: str = ""
    read_s: float = 0.0
    fatal: bool = False  # the inputs are wrong, not just this tile: stop the run
    gap_px: int = 0  # mapped pixels left nodata for want of a sub-period
    filled_px: int = 0  # mapped pixels with a sub-period filled from its neighbour
    # Object storage in the reader's process since its previous tile (throttle.take):
    retries: int = 0  # requests retried
    throttled: int = 0  # of them answered 429/503 (slow down)
    slowed: int = 0  # times the requests in flight were halved for it


def input_shape(card: ModelCard, grid: Grid) -> tuple[int, int, int]:
    """(channels, height, width) of one tile's input as read: its bands, haloed."""
    return (card.config.in_bands, *grid.tile_shape(halo=True))


def model_shape(card: ModelCard, grid: Grid) -> tuple[int, int, int]:
    """(channels, height, width) of what the U-Net is given of a tile: the read input
    less 2**depth px, the window moved onto the model's lattice (unet.context)."""
    m = card.config.multiple
    channels, height, width = input_shape(card, grid)
    return (channels, height - m, width - m)


def checkpoint_bytes(uri: str) -> bytes:
    """A checkpoint from a local path or s3://; each actor reads its own copy."""
    data = objstore.read_bytes(uri)
    if data is None:
        raise ClusterError(f"checkpoint {uri} does not exist: check the path or train one")
    return data


def read_card(uri: str) -> ModelCard:
    """A checkpoint's model card, reading only its JSON header when the file is local
    (the weights may be hundreds of MB; a plan needs the bands and resolution)."""
    if objstore.is_s3(uri):
        return card_from_bytes(checkpoint_bytes(uri), uri)
    path = objstore.local_path(uri)
    try:
        with path.open("rb") as f:
            head = f.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else 0
            data = head + f.read(min(length, path.stat().st_size))  # a garbage length: EOF
    except FileNotFoundError:
        msg = f"checkpoint {uri} does not exist: check the path or train one"
        raise ClusterError(msg) from None
    return card_from_bytes(data, uri)


def time_recipe(card: ModelCard, setup: PredictorSetup, source: str) -> TimeRecipe:
    """How the run makes its inputs over time: the checkpoint's recipe (the mosaic for
    checkpoints without one), with the run's own ``fill``."""
    recipe = card.extra.get("recipe") or {}
    trained = TimeRecipe.from_dict(recipe.get("time"))
    if "time" not in recipe and recipe.get("compositing", "first") != "first":
        raise ClusterError(f"checkpoint {source}: compositing {recipe['compositing']!r} "
                           "without its time recipe; retrain it")  # fmt: skip
    if trained.names != card.periods:
        raise ClusterError(f"checkpoint {source}: its periods {list(card.periods)} differ from "
                           f"its recipe's {list(trained.names)}; retrain it")  # fmt: skip
    return run_recipe(trained, setup.time, source)


def least_halo(card: ModelCard, tile_size: int) -> int:
    """The least halo a run of ``card``'s checkpoint on ``tile_size`` tiles may have:
    its context and lattice (``unet.context.halo_needed``), rounded up so that tile
    and halo make whole multiples of 2**depth."""
    needed = halo_needed(card.config, recorded_radius(card.config, card.extra))
    return needed + (-(tile_size + 2 * needed) % card.config.multiple) // 2


def check_card(card: ModelCard, grid: Grid, source: str) -> None:
    """Refuse a grid the checkpoint cannot predict on (other pixel size, or tiles the
    U-Net's down- and up-sampling cannot halve evenly), and inputs mosaicked otherwise
    than the checkpoint's input recipe says its training inputs were."""
    if abs(card.resolution - grid.resolution) > 1e-6 * card.resolution:
        raise ClusterError(
            f"checkpoint {source} expects {card.resolution:g} m pixels but the grid "
            f"is {grid.resolution:g} m: set grid.resolution to {card.resolution:g}"
        )
    recipe = card.extra.get("recipe") or {}  # absent: trained from a raster
    if "mosaic" in recipe and recipe["mosaic"] != MOSAIC:
        raise ClusterError(
            f"checkpoint {source} was trained on inputs made by mosaic {recipe['mosaic']!r}, "
            f"and this run makes them by {MOSAIC!r}: a model maps only pixels made as it "
            "learnt them. Use a checkpoint trained with this run's recipe, or retrain"
        )
    multiple = card.config.multiple
    if (grid.tile_size + 2 * grid.halo) % multiple:
        raise ClusterError(
            f"tile_size {grid.tile_size} + 2 x halo {grid.halo} must be a multiple of {multiple} "
            f"for this checkpoint's U-Net (depth {card.config.depth})"
        )
    radius = recorded_radius(card.config, card.extra)
    if grid.halo < halo_needed(card.config, radius):
        least = least_halo(card, grid.tile_size)
        measured = "measured" if "context" in card.extra else "its architecture's (not measured)"
        raise ClusterError(
            f"grid.halo {grid.halo} px is less than checkpoint {source} needs: its context "
            f"radius is {radius} px ({measured}), and windows moved onto its U-Net's "
            f"{multiple}-px lattice take up to {multiple} px more; with less, the map would "
            f"change where tile borders fall. Set grid.halo to at least {least}"
        )


def open_catalog(setup: PredictorSetup, card: ModelCard, region: Region) -> Catalog:
    """The run's catalog as the driver checks it and every actor reads it, its masks
    widened as the checkpoint's training inputs were."""
    dilate_m = mask_dilation(card, setup.overrides.dilate_m, setup.checkpoint)
    overrides = replace(setup.overrides, dilate_m=dilate_m)
    return Catalog.open(
        setup.catalog, card.bands, setup.grid.crs, collections=setup.collections,
        start=setup.start, end=setup.end, max_cloud_cover=setup.max_cloud_cover,
        region=region, overrides=overrides, units=card.units,
    )  # fmt: skip


def mask_dilation(card: ModelCard, asked: float | None, source: str) -> float:
    """The checkpoint's ``mask.dilate_m`` (0 where it records none); a run asking for
    another is refused: the model learnt pixels masked its way."""
    recipe = card.extra.get("recipe") or {}
    trained = float((recipe.get("overrides") or {}).get("dilate_m") or 0.0)
    if asked is not None and abs(asked - trained) > 1e-9:
        raise ClusterError(
            f"mask.dilate_m {asked:g} differs from the {trained:g} m checkpoint {source} was "
            "trained with: a model maps only pixels masked as it learnt them. Leave "
            f"mask.dilate_m out of the run's config (or set {trained:g})"
        )
    return trained
