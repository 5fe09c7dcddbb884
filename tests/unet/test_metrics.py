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
