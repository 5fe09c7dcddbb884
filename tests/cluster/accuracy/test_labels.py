"""Reference labels: class names, or the reference data's codes through a mapping file."""

from __future__ import annotations

import json

import pytest

from cluster.accuracy.errors import AccuracyError
from cluster.accuracy.labels import LabelMapping, resolve_labels

CLASSES = ("water", "open land", "broadleaf", "conifer")


def test_names_and_case():
    labels = ["water", "Open Land", " conifer ", "broadleaf"]
    where = [f"point id {i}" for i in range(4)]
    assert resolve_labels(labels, where, CLASSES, None, "s.csv") == [
        "water",
        "open land",
        "conifer",
        "broadleaf",
    ]


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_codes_several_to_one_class(tmp_path, suffix):
    doc = {"10": "broadleaf", "11": "broadleaf", "20": "conifer", "30": "water"}
    path = tmp_path / f"codes{suffix}"
    if suffix == ".json":
        path.write_text(json.dumps(doc))
    else:
        path.write_text("labels:\n  10: broadleaf\n  11: broadleaf\n  20: conifer\n  30: water\n")
    mapping = LabelMapping.load(str(path), CLASSES)
    assert dict(mapping.codes) == doc
    got = resolve_labels(
        ["10", "11", "20", "open land"], ["a", "b", "c", "d"], CLASSES, mapping, "s.csv"
    )
    assert got == ["broadleaf", "broadleaf", "conifer", "open land"]


def test_refusals(tmp_path):
    where = ["point id 1", "point id 2", "point id 3"]
    with pytest.raises(
        AccuracyError,
        match=r"s.csv: 2 of 3 points have no reference label "
        r"\(point id 1, point id 3\)",
    ):
        resolve_labels([None, "water", None], where, CLASSES, None, "s.csv")
    with pytest.raises(
        AccuracyError,
        match=r"s.csv, point id 2: reference label 'beech' is not "
        "a class of the map.*--labels",
    ):
        resolve_labels(["water", "beech", "water"], where, CLASSES, None, "s.csv")
    bad = tmp_path / "bad.yaml"
    bad.write_text("10: beech\n")
    with pytest.raises(AccuracyError, match=r"code 10 -> 'beech': 'beech' is not a class"):
        LabelMapping.load(str(bad), CLASSES)
    bad.write_text("- 10\n- 11\n")
    with pytest.raises(AccuracyError, match="is not a mapping of codes"):
        LabelMapping.load(str(bad), CLASSES)
    with pytest.raises(AccuracyError, match="does not exist"):
        LabelMapping.load(str(tmp_path / "absent.yaml"), CLASSES)
    twice = LabelMapping.build({"10": "water"}, CLASSES, "m.yaml")
    with pytest.raises(AccuracyError, match=r"'99'.*map its code in m.yaml"):
        resolve_labels(["10", "99", "10"], where, CLASSES, twice, "s.csv")
    with pytest.raises(AccuracyError, match="code '10' is mapped to both"):
        LabelMapping.build({10: "water", "10": "conifer"}, CLASSES, "m.yaml")
