import numpy as np
import pytest

from unet.metrics import score


def test_scores_by_hand():
    truth = np.array([[0, 0, 1, 1], [2, 2, 255, 1]], dtype=np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 1]], dtype=np.uint8)
    s = score(truth, pred, ("a", "b", "c"))
    assert s.confusion.tolist() == [[1, 1, 0], [0, 3, 0], [1, 0, 1]]
    assert s.overall_accuracy == pytest.approx(5 / 7)
    assert s.iou.tolist() == pytest.approx([1 / 3, 3 / 4, 1 / 2])
    assert s.miou == pytest.approx((1 / 3 + 3 / 4 + 1 / 2) / 3)


def test_absent_class_is_left_out_of_the_mean():
    truth = np.zeros((3, 3), np.uint8)
    s = score(truth, truth, ("a", "b"))
    assert np.isnan(s.iou[1]) and s.miou == 1.0
    assert s.to_dict()["iou"] == {"a": 1.0, "b": None}


def test_precision_recall_f1_by_hand():
    """The confusion of test_scores_by_hand: rows truth [2, 3, 2], columns
    predicted [2, 4, 1], diagonal [1, 3, 1]."""
    truth = np.array([[0, 0, 1, 1], [2, 2, 255, 1]], dtype=np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 1]], dtype=np.uint8)
    s = score(truth, pred, ("a", "b", "c"))
    assert s.precision.tolist() == pytest.approx([1 / 2, 3 / 4, 1 / 1])
    assert s.recall.tolist() == pytest.approx([1 / 2, 3 / 3, 1 / 2])
    assert s.f1.tolist() == pytest.approx([2 / 4, 6 / 7, 2 / 3])
    p, r = s.precision, s.recall
    np.testing.assert_allclose(s.f1, 2 * p * r / (p + r))
    d = s.to_dict()
    assert d["precision"] == pytest.approx({"a": 0.5, "b": 0.75, "c": 1.0})
    assert d["recall"] == pytest.approx({"a": 0.5, "b": 1.0, "c": 0.5})
    assert d["f1"] == pytest.approx({"a": 0.5, "b": 6 / 7, "c": 2 / 3})


def test_undefined_precision_recall_f1_are_nan():
    """b is true once and never predicted: no precision, recall 0 and F1 0 (a
    miss, not an unknown). c is in neither: nothing is defined."""
    truth = np.array([[0, 0, 1]], dtype=np.uint8)
    pred = np.array([[0, 0, 0]], dtype=np.uint8)
    s = score(truth, pred, ("a", "b", "c"))
    assert np.isnan(s.precision[1]) and s.recall[1] == 0 and s.f1[1] == 0
    assert np.isnan([s.precision[2], s.recall[2], s.f1[2], s.iou[2]]).all()
    assert s.precision[0] == pytest.approx(2 / 3) and s.recall[0] == 1
    d = s.to_dict()
    assert d["precision"] == {"a": pytest.approx(2 / 3), "b": None, "c": None}
    assert d["recall"] == {"a": 1.0, "b": 0.0, "c": None}
    assert d["f1"] == {"a": pytest.approx(0.8), "b": 0.0, "c": None}


def test_to_dict_keeps_its_keys():
    """metrics.json and checkpoint cards are read by other code: only additions."""
    s = score(np.zeros((2, 2), np.uint8), np.zeros((2, 2), np.uint8), ("a", "b"))
    assert set(s.to_dict()) == {
        "overall_accuracy",
        "miou",
        "iou",
        "precision",
        "recall",
        "f1",
        "confusion",
        "class_names",
    }


def test_table_lists_every_measure_and_keeps_the_summary_lines():
    truth = np.array([[0, 0, 1, 1], [2, 2, 255, 1]], dtype=np.uint8)
    pred = np.array([[0, 1, 1, 1], [2, 0, 2, 1]], dtype=np.uint8)
    lines = score(truth, pred, ("a", "b", "c")).table().splitlines()
    assert lines[0].split() == ["class", "IoU", "precision", "recall", "F1"]
    assert lines[2].split() == ["b", "0.750", "0.750", "1.000", "0.857"]
    assert lines[-2] == f"{'mean IoU':<14}{(1 / 3 + 3 / 4 + 1 / 2) / 3:>7.3f}"
    assert lines[-1] == f"{'overall acc.':<14}{5 / 7:>7.3f}"
    assert len(lines) == 1 + 3 + 2
