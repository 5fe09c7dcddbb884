"""``statemap sample-design RUN_OR_STORE --out DIR``: a stratified random sample of a
run's map for an accuracy assessment by good practice (Olofsson et al. 2014).

Strata are the map classes, or class x confidence band (``--confidence-bands
0.6,0.8``); the sample size is given (``--n``) or follows from a target SE of
overall accuracy and expected user's accuracies (``--target-se 0.01
--expected-users 0.8,water=0.95``); allocation proportional, equal, Neyman or
proportional with a minimum per stratum; seeded. The store is read chunk by
chunk, twice (stratum sizes, then the draw). Writes ``samples.gpkg`` (QGIS),
``samples.csv`` (Collect Earth) with an empty ``reference`` column, and
``design.json``, which ``statemap assess`` reads back.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from cluster.accuracy.designfile import DESIGN_FILE, SampleDesign
from cluster.accuracy.samplefile import SAMPLES_CSV, SAMPLES_GPKG, write_csv, write_gpkg
from cluster.accuracy.sampling import ALLOCATIONS, DEFAULT_MINIMUM, DesignSpec, draw_design
from cluster.accuracy.storechunks import DEFAULT_BLOCK_PX, StoreMap
from cluster.storage import objstore
from cluster.storage.redact import redact
from jobs.errors import ConfigError
from jobs.runrecord import RECORD, RunRecord, load_record, record_uri


def resolve_run(target: str) -> tuple[str, RunRecord | None]:
    """The store URI of a store, or of a run's maps folder or run.json (with its record)."""
    if objstore.exists(objstore.join(target, "zarr.json")):
        return _absolute(target), None
    uri = target if target.rstrip("/").endswith(f"/{RECORD}") or target == RECORD else None
    record = load_record(uri or record_uri(target))
    if record is None:
        raise ConfigError(
            f"{target} is neither a statemap store (no zarr.json) nor a run's maps folder or "
            f"{RECORD}; give the run's store (the 'store' of its predict config) or its maps"
        )
    store = record.store
    relative = not objstore.is_s3(store) and not Path(store).is_absolute()
    if relative and not objstore.is_s3(target) and not Path(store).exists():
        folder = Path(uri).parent if uri else Path(target)  # relative to the record's folder
        if (folder / store).exists():
            store = str(folder / store)
    return _absolute(store), record


def _absolute(uri: str) -> str:
    """A plain local path made absolute, so design.json names the store from anywhere."""
    return uri if "://" in uri else str(Path(uri).resolve())


def parse_users(text: str | None) -> tuple[dict[str, float], float | None]:
    """``0.8,water=0.95`` -> ({"water": 0.95}, 0.8): per-class values and a default."""
    users: dict[str, float] = {}
    default = None
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, _, value = item.rpartition("=")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(
                f"--expected-users: {item.strip()!r} is not 'class=value' or a value; give e.g. "
                "'0.8,water=0.95' (0.8 for every class not named)"
            ) from None
        if name.strip():
            users[name.strip()] = number
        else:
            default = number
    return users, default


def parse_bands(text: str | None) -> tuple[float, ...]:
    if not text:
        return ()
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ConfigError(
            f"--confidence-bands {text!r} is not a list of numbers; give e.g. 0.6,0.8"
        ) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        metavar="RUN_OR_STORE",
        help="the run's Zarr store (path or s3://), or its maps folder / run.json",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="folder (or s3:// prefix) for samples.gpkg, samples.csv, design.json",
    )
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--n", type=int, help="total sample size")
    size.add_argument(
        "--target-se",
        type=float,
        help="sample size for this SE of overall accuracy (Olofsson 2014 eq. 13)",
    )
    parser.add_argument(
        "--expected-users",
        metavar="SPEC",
        help="expected user's accuracies, e.g. '0.8,water=0.95' (a bare value "
        "for every class not named); for --target-se and neyman",
    )
    parser.add_argument("--allocation", choices=ALLOCATIONS, default="proportional")
    parser.add_argument(
        "--min-per-stratum",
        type=int,
        help=f"at least this many units per stratum (default {DEFAULT_MINIMUM} "
        "for proportional-min, else 0)",
    )
    parser.add_argument(
        "--confidence-bands",
        metavar="EDGES",
        help="strata = class x confidence band, band edges e.g. 0.6,0.8",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace samples already in --out (their labels are lost)",
    )
    parser.add_argument(
        "--block-px",
        type=int,
        default=DEFAULT_BLOCK_PX,
        help="pixels per side of the blocks read from the store",
    )


def run(args: argparse.Namespace) -> int:
    store, _ = resolve_run(args.target)
    users, default = parse_users(args.expected_users)
    spec = DesignSpec(
        seed=args.seed,
        n=args.n,
        target_se=args.target_se,
        expected_users=users,
        default_users=default,
        allocation=args.allocation,
        minimum=args.min_per_stratum,
        confidence_bands=parse_bands(args.confidence_bands),
    )
    targets = [objstore.join(args.out, name) for name in (SAMPLES_GPKG, SAMPLES_CSV, DESIGN_FILE)]
    existing = [t for t in targets if objstore.exists(t)]
    if existing and not args.overwrite:
        raise ConfigError(
            f"{redact(existing[0])} exists (perhaps already labelled); give another --out, or "
            "--overwrite to replace it"
        )
    source = StoreMap.open(store, block_px=args.block_px)
    drawn = draw_design(source, spec)
    design = drawn.design
    with tempfile.TemporaryDirectory(prefix="statemap-design-") as tmp:
        gpkg, table = Path(tmp) / SAMPLES_GPKG, Path(tmp) / SAMPLES_CSV
        crs = f"EPSG:{design.crs_epsg}" if design.crs_epsg else design.crs_wkt
        write_gpkg(gpkg, drawn.points, crs)
        write_csv(table, drawn.points)
        for path, target in zip((gpkg, table), targets, strict=False):
            objstore.write_bytes_atomic(target, path.read_bytes())
    design.write(targets[2])
    _print(source, design, spec)
    for target in targets:
        print(redact(target))
    return 0


def _print(source: StoreMap, design: SampleDesign, spec: DesignSpec) -> None:
    total = sum(s.pixels for s in design.strata)
    area = source.pixel_area_m2
    print(
        f"store {redact(source.uri)} (run {design.run_id}): {len(design.strata)} strata "
        f"({design.strata_kind}), {total:,} mapped pixels"
        + ("" if area is None else f", {total * area / 10_000:,.1f} ha")
    )
    how = "given" if spec.n is not None else f"for SE {spec.target_se} of overall accuracy"
    print(f"sample size n = {design.n} ({how}), allocation {design.allocation}, seed {design.seed}")
    print(f"{'stratum':<36} {'pixels':>14} {'share':>7} {'n_h':>6}")
    for s in design.strata:
        print(f"{s.name[:36]:<36} {s.pixels:>14,} {s.pixels / total:>7.4f} {s.sample:>6}")
        if s.sample == 0:
            print(
                f"  warning: stratum {s.name!r} gets no sample units, so its area and accuracy "
                "cannot be estimated; raise --n or set --min-per-stratum"
            )
