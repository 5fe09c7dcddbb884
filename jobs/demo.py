"""``statemap demo``: the whole chain on a generated region.

Generates the sample region, trains the U-Net from its STAC catalog and the
stands' polygons (chips read by the run's reader, split by spatial blocks) and
the per-pixel random forest on the same chips' pixels, compares them on the
test blocks, then maps the region from its Sentinel-2 scenes with the U-Net on
Ray actors into one Zarr store, scores that map against the generated ground
truth, and checks it on the test blocks against what training reported.
It ends as a mapping team's accuracy assessment does: a stratified random
sample drawn from the map (``statemap sample-design``), labelled from the
region's ground truth (standing in for photo interpretation), and the
design-based estimates of accuracy and class areas (``statemap assess``).
``--phenology`` does the same on the phenology sample (a year of dated scenes,
tree species that one date cannot tell apart) with a stack of three seasons'
median composites.
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path
from types import ModuleType

import rasterio
import yaml

from cluster.accuracy.designfile import DESIGN_FILE
from cluster.accuracy.htmlreport import REPORT_FILE
from cluster.accuracy.samplefile import SAMPLES_CSV
from cluster.maps.viewer.site import link_report
from cluster.predict.driver import run_predict
from cluster.predict.setup import least_halo, read_card
from cluster.predict.store import TileStore
from cluster.sample.scene import NODATA_CLASS, SampleSpec
from cluster.training.parity import map_scores
from jobs import assess, sampledesign
from jobs.compare import compare
from jobs.compile import REPORT, compile_to, links_from_config
from jobs.config import load_predict_config
from jobs.sample import write_phenology_sample, write_sample
from jobs.trainconfig import load_train_config
from unet.metrics import score_map


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("demo-out"), help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="seed of the generated region")
    parser.add_argument("--size", type=int, default=1024, help="region width and height, px")
    parser.add_argument("--seconds", type=float, default=150.0, help="U-Net training budget")
    parser.add_argument(
        "--steps", type=int, default=None, help="U-Net training steps (ends first if reached)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.add_argument(
        "--phenology", action="store_true", help="the phenology sample, mapped with a stack"
    )


def run(args: argparse.Namespace) -> int:
    spec = SampleSpec(seed=args.seed, width=args.size, height=args.size)
    print(
        f"generating the sample region ({args.size}x{args.size} px, seed {args.seed}) in {args.out}"
    )
    if args.phenology:
        config_path, predict_yaml = write_phenology_sample(
            args.out, spec, train_seconds=args.seconds, train_steps=args.steps
        )["stack"]
    else:
        config_path = write_sample(args.out, spec, args.seconds, args.steps)
        predict_yaml = args.out / "predict.yaml"
    train_spec = load_train_config(config_path)
    result = compare(train_spec, progress=not args.quiet)
    print()
    print(result.table())
    print()
    print(f"checkpoint:   {result.unet.checkpoint} (sha256 {result.unet.checkpoint_hash[:12]})")
    print(f"metrics:      {train_spec.output / 'metrics.json'}")
    print(
        f"figures:      {train_spec.output}/training_curve.png, confusion_unet.png, "
        "confusion_forest.png"
    )
    print(f"STAC catalog: {args.out / 'sample' / 'catalog.json'}")
    widen_halo(predict_yaml, str(result.unet.checkpoint))
    print()
    print("mapping the region from its Sentinel-2 scenes on Ray actors")
    summary = run_predict(load_predict_config(predict_yaml), progress=not args.quiet)
    for line in summary.lines():
        print(line)
    whole = truth_scores(summary.store, args.out / "sample" / "labels.tif",
                         train_spec.chips.class_names)  # fmt: skip
    _, test_miou = map_scores(summary.store, train_spec.output)
    trained = result.unet.scores.miou
    print(
        f"map against ground truth: whole region OA {whole[0]:.3f} mIoU {whole[1]:.3f}; "
        f"test blocks mIoU {test_miou:.3f} (training reported {trained:.3f}, "
        f"parity_delta={abs(test_miou - trained):.4f})"
    )
    outputs = compile_to(summary.store, str(args.out / "maps"), links_from_config(predict_yaml))
    print(
        f"maps: {len(outputs)} files in {args.out / 'maps'}: cloud-optimized GeoTIFFs, "
        "collection.json (STAC), quicklook.png"
    )
    print()
    assess_map(summary.store, args.out / "accuracy", args.out / "sample" / "labels.tif",
               train_spec.chips.class_names)  # fmt: skip
    maps_report = args.out / "maps" / REPORT  # the report opens from the map's viewer
    maps_report.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(args.out / "accuracy" / REPORT_FILE, maps_report)
    link_report(str(args.out / "maps"), REPORT)
    print(f"\nlook at the map in a browser: statemap view {args.out / 'maps'}")
    return 1 if summary.failed else 0


def widen_halo(predict_yaml: Path, checkpoint: str) -> None:
    """The demo trains for seconds, not steps, so its model's context varies a few px
    with the machine: give its run the halo the checkpoint needs, if more than the
    config's (a run would refuse it, naming that halo)."""
    doc = yaml.safe_load(predict_yaml.read_text())
    card = read_card(checkpoint)
    least = least_halo(card, doc["grid"]["tile_size"])
    if doc["grid"]["halo"] < least:
        print(f"halo {doc['grid']['halo']} -> {least} px: the trained model's context is "
              f"{card.extra['context']['radius_px']} px")  # fmt: skip
        doc["grid"]["halo"] = least
        predict_yaml.write_text(yaml.safe_dump(doc, sort_keys=False))


def assess_map(store: str, out: Path, labels: Path, class_names: tuple[str, ...]) -> None:
    """Sample the map, label the sample from the ground truth, estimate, as a team would
    (with photo interpretation for the labels): the two commands, as typed."""
    print("accuracy assessment: a stratified random sample of the map, labelled from truth")
    _command(sampledesign, store, "--out", str(out), "--target-se", "0.02",
             "--expected-users", "0.8", "--allocation", "proportional-min",
             "--min-per-stratum", "30", "--overwrite")  # fmt: skip
    labelled = out / "samples_labelled.csv"
    label_from_truth(out / SAMPLES_CSV, labels, class_names, labelled)
    print(f"labelled from {labels}: {labelled}")
    _command(assess, store, str(labelled), "--design", str(out / DESIGN_FILE))


def _command(module: ModuleType, *argv: str) -> None:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    module.run(parser.parse_args(argv))


def label_from_truth(samples: Path, labels: Path, class_names: tuple[str, ...], out: Path) -> None:
    """The sample's ``reference`` column filled with the ground truth's class at each
    point (its map coordinates; the label raster is on the map's grid)."""
    with samples.open(newline="") as f:
        rows = list(csv.DictReader(f))
    with rasterio.open(labels) as src:
        codes = [int(v[0]) for v in src.sample([(float(r["x"]), float(r["y"])) for r in rows])]
    with out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        for row, code in zip(rows, codes, strict=True):
            known = code != NODATA_CLASS and code < len(class_names)
            writer.writerow({**row, "reference": class_names[code] if known else ""})


def truth_scores(store_uri: str, labels: Path, class_names: tuple[str, ...]) -> tuple[float, float]:
    """Overall accuracy and mIoU of the stored map against the label raster over the
    whole region. A labelled pixel the map left as nodata counts as wrong (an extra
    "no class" prediction)."""
    store = TileStore.open(store_uri)
    with rasterio.open(labels) as src:
        truth = src.read(1)
        col, row = ~store.layout.transform * (src.transform.c, src.transform.f)
    r, c = round(row), round(col)
    mapped = store.array("class")[r : r + truth.shape[0], c : c + truth.shape[1]]
    scores = score_map(truth, mapped, class_names, NODATA_CLASS)
    return scores.overall_accuracy, scores.class_miou
