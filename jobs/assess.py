"""``statemap assess RUN_OR_STORE SAMPLES``: accuracy and area of a run's map from a
labelled sample, by good practice (Olofsson et al. 2014; Stehman 2014).

SAMPLES is the GeoPackage or CSV that ``statemap sample-design`` wrote, with
its ``reference`` column labelled (design.json beside it, or ``--design``),
or, with ``--post-stratified``, any point file of a systematic or simple
random sample (an inventory grid) with coordinates and reference labels.
Labels are class names, or the reference data's codes mapped to classes by
``--labels mapping.yaml``. Prints the error matrix in counts and in estimated
area proportions, overall, user's and producer's accuracy and F1 with SEs and
95% intervals, and each class's area in ha with its interval beside its
pixel-count area; writes all of it to assessment.json and, beside it, a
self-contained report.html (``--no-report``: not; it reads the store's
confidence once more, block by block, for its histogram).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict

from cluster.accuracy.assessing import AssessSpec, assess_samples
from cluster.accuracy.designfile import DESIGN_FILE, SampleDesign
from cluster.accuracy.errors import AccuracyError
from cluster.accuracy.htmlreport import REPORT_FILE, html_report
from cluster.accuracy.intervals import INTERVALS
from cluster.accuracy.labels import LabelMapping
from cluster.accuracy.report import assessment_document, text_report
from cluster.accuracy.samplefile import read_samples
from cluster.accuracy.storechunks import DEFAULT_BLOCK_PX, StoreMap
from cluster.maps.viewer.site import link_report
from cluster.storage import objstore
from cluster.storage.redact import redact
from jobs.runrecord import RECORD
from jobs.sampledesign import resolve_run

ASSESSMENT_FILE = "assessment.json"
RUN_ACCURACY = "accuracy"  # in a run's maps folder, when a run (not a bare store) is assessed


def beside(uri: str, name: str) -> str:
    """``name`` in the folder (or under the prefix) that holds ``uri``."""
    if objstore.is_s3(uri):
        return f"{uri.rstrip('/').rsplit('/', 1)[0]}/{name}"
    return str(objstore.local_path(uri).parent / name)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "target",
        metavar="RUN_OR_STORE",
        help="the run's Zarr store (path or s3://), or its maps folder / run.json",
    )
    parser.add_argument(
        "samples",
        metavar="SAMPLES",
        help="the labelled sample: GeoPackage (or other OGR points) or CSV",
    )
    parser.add_argument("--design", help=f"the sample's {DESIGN_FILE} (default: beside SAMPLES)")
    parser.add_argument(
        "--labels",
        metavar="MAPPING",
        help="YAML/JSON mapping of the reference data's codes to class names",
    )
    parser.add_argument(
        "--reference-column",
        default="reference",
        help="the column holding the reference labels (default: reference)",
    )
    parser.add_argument(
        "--post-stratified",
        action="store_true",
        help="a systematic or simple random sample, post-stratified by map class",
    )
    parser.add_argument(
        "--interval",
        choices=INTERVALS,
        default="wald",
        help="95%% intervals: Wald clamped to [0, 1] (default) or Wilson",
    )
    parser.add_argument(
        "--no-fpc",
        action="store_true",
        help="leave out the finite population correction (Olofsson's formulas)",
    )
    parser.add_argument("--layer", help="the layer of a GeoPackage with several")
    parser.add_argument("--out", help=f"where to write {ASSESSMENT_FILE} (default: beside SAMPLES)")
    parser.add_argument(
        "--no-report",
        action="store_true",
        help=f"write no {REPORT_FILE} (the HTML report beside {ASSESSMENT_FILE})",
    )
    parser.add_argument(
        "--block-px",
        type=int,
        default=DEFAULT_BLOCK_PX,
        help="pixels per side of the blocks read from the store",
    )


def run(args: argparse.Namespace) -> int:
    store, record = resolve_run(args.target)
    source = StoreMap.open(store, block_px=args.block_px)
    samples = read_samples(args.samples, layer=args.layer)
    design, design_uri = None, None
    if not args.post_stratified:
        design_uri = args.design or beside(args.samples, DESIGN_FILE)
        design = SampleDesign.read(design_uri)
        if design is None and args.design:
            raise AccuracyError(f"design {args.design} does not exist; check the path")
        if design is None:
            design_uri = None
    mapping = None if args.labels is None else LabelMapping.load(args.labels, source.class_names)
    spec = AssessSpec(
        reference_column=args.reference_column,
        post_stratified=args.post_stratified,
        fpc=not args.no_fpc,
        interval=args.interval,
    )
    assessed = assess_samples(
        source, samples, design=design, design_uri=design_uri, mapping=mapping, spec=spec
    )
    document = assessment_document(
        assessed,
        source,
        record=None if record is None else asdict(record),
        mapping=mapping,
        reference_column=args.reference_column,
    )
    out = args.out or beside(args.samples, ASSESSMENT_FILE)
    body = json.dumps(document, indent=2, allow_nan=False) + "\n"
    objstore.write_bytes_atomic(out, redact(body).encode())
    print(text_report(assessed, source))
    print(redact(out))
    page = None if args.no_report else html_report(document, source).encode()
    if page is not None:
        report = beside(out, REPORT_FILE)
        objstore.write_bytes_atomic(report, page)
        print(redact(report))
    if record is not None:  # a run's assessment travels with its maps (and their viewer)
        folder = objstore.join(run_folder(args.target), RUN_ACCURACY)
        objstore.write_bytes_atomic(objstore.join(folder, ASSESSMENT_FILE), redact(body).encode())
        if page is not None:
            objstore.write_bytes_atomic(objstore.join(folder, REPORT_FILE), page)
        if page is not None and link_report(
            run_folder(args.target), f"{RUN_ACCURACY}/{REPORT_FILE}"
        ):
            print("the run's viewer links the report")
        print(f"published with run {record.run_id}: {redact(folder)}")
    return 0


def run_folder(target: str) -> str:
    """The run's maps folder, given it or its run.json."""
    target = target.rstrip("/")
    if target == RECORD:
        return "."
    return target[: -len(RECORD) - 1] if target.endswith(f"/{RECORD}") else target
