"""assessment.json and the printout: stable keys, no NaN, undefined estimates as null."""

from __future__ import annotations

import json

import numpy as np

from cluster.accuracy.assessing import assess_samples
from cluster.accuracy.report import SCHEMA, assessment_document, text_report
from cluster.accuracy.samplefile import read_samples
from cluster.accuracy.sampling import DesignSpec, draw_design
from cluster.accuracy.storechunks import StoreMap
from tests.cluster.accuracy.storemaps import CLASS_NAMES, known_map, pixel, write_store


def test_a_class_the_map_never_shows_gets_null_users_and_a_real_area(tmp_path):
    classes, confidence, truth = known_map()
    classes = np.where(classes == 0, 1, classes).astype(np.uint8)  # water mapped as open land
    write_store(tmp_path / "map.zarr", classes, confidence)
    source = StoreMap.open(str(tmp_path / "map.zarr"))
    drawn = draw_design(source, DesignSpec(seed=1, n=60))
    path = tmp_path / "s.csv"
    rows = ["id,x,y,reference"] + [
        f"{i},{float(x)!r},{float(y)!r},{CLASS_NAMES[truth[pixel(x, y)]]}"
        for i, x, y in zip(drawn.points.ids, drawn.points.x, drawn.points.y, strict=True)
    ]
    path.write_text("\n".join(rows) + "\n")
    assessed = assess_samples(source, read_samples(str(path)), design=drawn.design)
    doc = assessment_document(assessed, source)
    text = json.dumps(doc, allow_nan=False)  # raises on NaN
    assert json.loads(text)["schema"] == SCHEMA
    water = doc["per_class"][0]
    assert water["class"] == "water" and water["mapped_pixels"] == 0
    assert water["users"] == {"value": None, "se": None, "low": None, "high": None}
    assert water["area_ha"]["value"] > 0 and water["sample_mapped"] == 0
    assert "water" not in {s["name"] for s in doc["design"]["strata"]}
    printed = text_report(assessed, source)
    water = [line for line in printed.splitlines() if line.startswith("water ")]
    assert water[0].split()[1:] == ["0"] * 5  # the count matrix's row
    assert water[2].split()[1] == "n/a"  # user's accuracy, in the estimates table
    assert printed.splitlines()[0].startswith("assessment of run run-acc")
