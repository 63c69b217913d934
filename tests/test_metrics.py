"""Metrics: hand-worked cases for each, torch/numpy agreement, accumulators, pycocotools cross-check."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from steelscan.core.errors import SteelscanError
from steelscan.metrics import (
    DetectionMeter,
    SegmentationMeter,
    accuracy,
    average_precision,
    box_iou,
    classification_metrics,
    coco_map,
    confusion_matrix,
    dice_per_class,
    dice_per_pair,
    evaluate_detection,
    iou_per_pair,
    macro_f1,
    severstal_dice,
    to_jsonable,
    voc_map,
)

# ------------------------------------------------------------------ segmentation


def seg_case():
    """2 images x 2 classes of 2x2 masks. By hand (I = intersection, P = |pred|, T = |truth|):
    img0 c0: truth 1100, pred 1000: I1 P1 T2 -> Dice 2/3, IoU 1/2
    img0 c1: empty / empty              -> Dice 1,   IoU 1   (the Kaggle rule)
    img1 c0: truth empty, pred 1000     -> Dice 0,   IoU 0
    img1 c1: truth 1111, pred 1100: I2 P2 T4 -> Dice 2/3, IoU 1/2
    Kaggle Dice = (2/3 + 1 + 0 + 2/3) / 4 = 7/12; per class (1/3, 5/6); mean IoU = 2/4 = 1/2.
    Pooled over images: c0 I1 P2 T2 -> Dice 1/2, IoU 1/3; c1 I2 P2 T4 -> Dice 2/3, IoU 1/2.
    (torchmetrics' Dice would drop the empty/empty pair and report 4/9 here, not 7/12.)
    """
    truth = np.zeros((2, 2, 2, 2), np.uint8)
    pred = np.zeros_like(truth)
    truth[0, 0, 0, :] = 1
    pred[0, 0, 0, 0] = 1
    pred[1, 0, 0, 0] = 1
    truth[1, 1] = 1
    pred[1, 1, 0, :] = 1
    return pred, truth


def test_severstal_dice_hand_worked():
    pred, truth = seg_case()
    np.testing.assert_allclose(dice_per_pair(pred, truth), [[2 / 3, 1], [0, 2 / 3]])
    np.testing.assert_allclose(iou_per_pair(pred, truth), [[0.5, 1], [0, 0.5]])
    assert severstal_dice(pred, truth) == pytest.approx(7 / 12)
    np.testing.assert_allclose(dice_per_class(pred, truth), [1 / 3, 5 / 6])


def test_segmentation_accepts_torch_bool_and_0_255_alike():
    pred, truth = seg_case()
    ref = dice_per_pair(pred, truth)
    np.testing.assert_allclose(dice_per_pair(torch.from_numpy(pred), torch.from_numpy(truth)), ref)
    np.testing.assert_allclose(dice_per_pair(pred.astype(bool), truth.astype(bool)), ref)
    np.testing.assert_allclose(dice_per_pair(pred * 255, torch.from_numpy(truth).float()), ref)


def test_device_counting_path_agrees():
    # The on-device branch (used for CUDA tensors) run on CPU tensors: same counts as the numpy path.
    from steelscan.metrics.segmentation import _torch_counts, pair_counts

    rng = np.random.default_rng(1)
    pred, truth = rng.random((3, 4, 8, 20)) > 0.6, (rng.random((3, 4, 8, 20)) > 0.7).astype(np.float32)
    for a, b in zip(_torch_counts(torch.from_numpy(pred), torch.from_numpy(truth)), pair_counts(pred, truth)):
        np.testing.assert_array_equal(a, b)


def test_segmentation_meter_matches_one_shot_and_pools():
    pred, truth = seg_case()
    meter = SegmentationMeter()
    meter.update(pred[:1], truth[:1])
    meter.update(torch.from_numpy(pred[1:]), torch.from_numpy(truth[1:]))
    r = meter.compute()
    assert r["n_images"] == 2
    assert r["dice"] == pytest.approx(7 / 12)
    assert r["dice_per_class"] == pytest.approx([1 / 3, 5 / 6])
    assert r["iou"] == pytest.approx(0.5)
    assert r["pooled_dice_per_class"] == pytest.approx([0.5, 2 / 3])
    assert r["pooled_iou_per_class"] == pytest.approx([1 / 3, 0.5])
    json.dumps(r)  # plain Python throughout


def test_segmentation_random_against_a_direct_loop():
    rng = np.random.default_rng(0)
    pred = rng.random((5, 4, 16, 40)) > 0.7
    truth = rng.random((5, 4, 16, 40)) > 0.8
    pred[0, 2] = truth[0, 2] = False  # an empty/empty pair
    truth[1, 3] = False  # empty truth, non-empty prediction
    expected = np.empty((5, 4))
    for i in range(5):
        for k in range(4):
            p, t = pred[i, k], truth[i, k]
            s = p.sum() + t.sum()
            expected[i, k] = 1.0 if s == 0 else 2 * (p & t).sum() / s
    np.testing.assert_allclose(dice_per_pair(pred, truth), expected)
    assert expected[0, 2] == 1 and expected[1, 3] == 0


def test_segmentation_bad_input():
    with pytest.raises(SteelscanError, match=r"\[N, K, H, W\].*got shape \(4, 4\)"):
        severstal_dice(np.zeros((4, 4)), np.zeros((4, 4)))
    with pytest.raises(SteelscanError, match="same shape"):
        severstal_dice(np.zeros((1, 4, 2, 2)), np.zeros((1, 3, 2, 2)))
    meter = SegmentationMeter()
    with pytest.raises(SteelscanError, match="no data"):
        meter.compute()
    meter.update(np.zeros((1, 4, 2, 2)), np.zeros((1, 4, 2, 2)))
    with pytest.raises(SteelscanError, match="4 classes"):
        meter.update(np.zeros((1, 3, 2, 2)), np.zeros((1, 3, 2, 2)))


# ------------------------------------------------------------------ classification

# 3 classes, 9 samples. Confusion matrix by hand (rows truth, columns prediction):
#   true 0: predicted 0, 0, 1       -> [2, 1, 0]
#   true 1: predicted 1, 1          -> [0, 2, 0]
#   true 2: predicted 2, 2, 0, 1    -> [1, 1, 2]
# accuracy 6/9; precision = diagonal / column sums = 2/3, 2/4, 2/2; recall = diagonal / row sums = 2/3, 1, 2/4;
# F1 = 2/3, 2*(.5*1)/1.5 = 2/3, 2*(1*.5)/1.5 = 2/3 -> macro-F1 2/3.
Y_TRUE = [0, 0, 0, 1, 1, 2, 2, 2, 2]
Y_PRED = [0, 0, 1, 1, 1, 2, 2, 0, 1]


def test_classification_hand_worked():
    r = classification_metrics(Y_TRUE, Y_PRED, class_names=["crazing", "inclusion", "patches"])
    assert r["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [1, 1, 2]]
    assert r["accuracy"] == pytest.approx(6 / 9)
    assert r["macro_f1"] == pytest.approx(2 / 3)
    assert r["per_class"]["inclusion"] == pytest.approx({"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 2})
    assert r["per_class"]["patches"]["precision"] == 1.0 and r["per_class"]["patches"]["recall"] == 0.5
    assert r["macro_precision"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    json.dumps(r)
    assert accuracy(np.array(Y_TRUE), torch.tensor(Y_PRED)) == pytest.approx(6 / 9)
    assert confusion_matrix(Y_TRUE, Y_PRED).tolist() == r["confusion_matrix"]


def test_classification_absent_class_counts_zero_in_the_macro_mean():
    # A 4th class never present nor predicted: precision/recall/F1 0 (zero_division=0), macro-F1 (3 * 2/3 + 0) / 4.
    assert macro_f1(Y_TRUE, Y_PRED, num_classes=4) == pytest.approx(0.5)
    assert confusion_matrix(Y_TRUE, Y_PRED, num_classes=4).shape == (4, 4)


def test_classification_bad_input():
    with pytest.raises(SteelscanError, match="argmax"):
        accuracy([0, 1], np.zeros((2, 3)))
    with pytest.raises(SteelscanError, match="same length"):
        accuracy([0, 1], [0])
    with pytest.raises(SteelscanError, match=r"in \[0, 3\)"):
        macro_f1([0, 1, 3], [0, 1, 2], num_classes=3)
    with pytest.raises(SteelscanError, match="integer class indices"):
        accuracy([0.5, 1.0], [0, 1])
    with pytest.raises(SteelscanError, match="integer class indices"):
        accuracy(["a", "b"], [0, 1])
    with pytest.raises(SteelscanError, match="at least one sample"):
        classification_metrics([], [], num_classes=2)
    with pytest.raises(SteelscanError, match="num_classes=2"):
        classification_metrics([0], [0], num_classes=2, class_names=["a", "b", "c"])


# ------------------------------------------------------------------ detection

A, B = [0, 0, 10, 10], [20, 20, 30, 30]


def det_case():
    """One image, one class, truths A and B; predictions (score order): A 0.9 (TP), a miss 0.8 (FP), B 0.7 (TP).
    precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1. All-point AP = 1/2 * 1 + 1/2 * 2/3 = 0.8333.
    COCO's 101 points: recall 0..0.50 (51 points) at precision 1, 0.51..1 (50 points) at 2/3:
    (51 + 50 * 2/3) / 101 = 0.83498. Boxes are exact, so every IoU threshold gives the same AP.
    """
    preds = [{"boxes": [A, [50, 50, 60, 60], B], "scores": [0.9, 0.8, 0.7], "labels": [0, 0, 0]}]
    truths = [{"boxes": [A, B], "labels": [0, 0]}]
    return preds, truths


def test_voc_ap_hand_worked():
    preds, truths = det_case()
    r = voc_map(preds, truths, num_classes=1)
    assert r["map"] == pytest.approx(0.8333, abs=1e-4)
    assert r["map"] == pytest.approx(5 / 6)
    np.testing.assert_allclose(r["pr_curves"][0]["precision"], [1, 0.5, 2 / 3])
    np.testing.assert_allclose(r["pr_curves"][0]["recall"], [0.5, 0.5, 1])
    np.testing.assert_allclose(r["pr_curves"][0]["scores"], [0.9, 0.8, 0.7])
    assert voc_map(preds, truths, 1, interpolation="101")["map"] == pytest.approx((51 + 50 * 2 / 3) / 101)


def test_coco_map_hand_worked():
    preds, truths = det_case()
    r = coco_map(preds, truths, num_classes=1)
    assert r["map50"] == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-9)
    assert r["map50_95"] == pytest.approx(r["map50"], abs=1e-9)


def test_images_without_truth():
    preds, truths = det_case()
    # An image with neither truth nor predictions changes nothing.
    empty_p = {"boxes": np.zeros((0, 4)), "scores": np.zeros(0), "labels": np.zeros(0, int)}
    empty_t = {"boxes": np.zeros((0, 4)), "labels": np.zeros(0, int)}
    r = evaluate_detection(preds + [empty_p], truths + [empty_t], num_classes=1)
    assert r["map50"] == pytest.approx(5 / 6)
    assert r["coco_map50"] == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-9)
    # An image with no truth but a prediction at score 0.75 adds a false positive between the miss and B:
    # TP, FP, FP, TP -> precision 1, 1/2, 1/3, 1/2 at recall 1/2, 1/2, 1/2, 1 -> AP = 1/2 + 1/2 * 1/2 = 0.75.
    fp = {"boxes": [A], "scores": [0.75], "labels": [0]}
    r = evaluate_detection(preds + [fp], truths + [empty_t], num_classes=1)
    assert r["map50"] == pytest.approx(0.75)
    assert r["coco_map50"] == pytest.approx((51 + 50 * 0.5) / 101, abs=1e-9)  # pycocotools counts it too


def test_class_without_truth_is_nan_and_excluded():
    preds, truths = det_case()
    preds[0]["labels"] = [0, 2, 0]  # the miss now predicts class 2, which has no truth; class 1 has nothing
    r = evaluate_detection(preds, truths, num_classes=3)
    assert r["ap50_per_class"][0] == pytest.approx(1.0)
    assert math.isnan(r["ap50_per_class"][1]) and math.isnan(r["ap50_per_class"][2])
    assert r["map50"] == pytest.approx(1.0)  # the mean over classes that have truth
    assert math.isnan(r["ap50_95_per_class"][2]) and r["map50_95"] == pytest.approx(1.0)
    assert r["n_truth_per_class"] == [2, 0, 0] and r["n_pred_per_class"] == [2, 0, 1]
    text = json.dumps(to_jsonable(r), allow_nan=False)  # NaN -> null, arrays -> lists
    assert json.loads(text)["ap50_per_class"][1] is None


def test_each_truth_is_matched_once_and_misses_score_zero():
    # Two predictions on the same truth: the higher score is the TP, the duplicate a FP.
    preds = [{"boxes": [A, A], "scores": [0.6, 0.9], "labels": [0, 0]}]
    truths = [{"boxes": [A, B], "labels": [0, 0]}]
    r = voc_map(preds, truths, 1)
    np.testing.assert_allclose(r["pr_curves"][0]["precision"], [1, 0.5])
    assert r["map"] == pytest.approx(0.5)
    none = [{"boxes": np.zeros((0, 4)), "scores": [], "labels": []}]
    assert voc_map(none, truths, 1)["map"] == 0.0
    assert coco_map(none, truths, 1)["map50"] == 0.0


def test_iou_threshold_and_box_iou():
    # [0,0,10,10] vs [5,0,15,10]: intersection 50, union 150 -> IoU 1/3
    assert box_iou([A], [[5, 0, 15, 10]])[0, 0] == pytest.approx(1 / 3)
    preds = [{"boxes": [[5, 0, 15, 10]], "scores": [0.9], "labels": [0]}]
    truths = [{"boxes": [A], "labels": [0]}]
    assert voc_map(preds, truths, 1, iou_threshold=0.5)["map"] == 0.0
    assert voc_map(preds, truths, 1, iou_threshold=0.3)["map"] == 1.0


def random_detection_case(seed: int, n_images: int = 12, num_classes: int = 3):
    """Truths on a grid of disjoint cells (so VOC's and COCO's matching rules agree); predictions are
    jittered truths, random boxes and dropped truths, with distinct scores (no tie-order differences)."""
    rng = np.random.default_rng(seed)
    preds, truths = [], []
    for _ in range(n_images):
        cells = rng.choice(16, size=rng.integers(0, 6), replace=False)
        tb = np.array([[c % 4 * 50 + 5, c // 4 * 50 + 5, c % 4 * 50 + 40, c // 4 * 50 + 40] for c in cells], float)
        tb = tb.reshape(-1, 4)
        tl = rng.integers(0, num_classes, len(cells))
        keep = rng.random(len(cells)) > 0.2
        pb = tb[keep] + rng.normal(0, 4, (int(keep.sum()), 4))
        pl = np.where(rng.random(int(keep.sum())) < 0.85, tl[keep], rng.integers(0, num_classes, int(keep.sum())))
        extra = rng.integers(0, 4)
        xy = rng.uniform(0, 160, (extra, 2))
        pb = np.concatenate([pb, np.hstack([xy, xy + rng.uniform(5, 40, (extra, 2))])]).reshape(-1, 4)
        pl = np.concatenate([pl, rng.integers(0, num_classes, extra)])
        pb[:, 2:] = np.maximum(pb[:, 2:], pb[:, :2])
        preds.append({"boxes": pb, "scores": rng.random(len(pb)), "labels": pl})
        truths.append({"boxes": tb.reshape(-1, 4), "labels": tl})
    return preds, truths


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_voc_101_point_matches_pycocotools_ap50(seed):
    # Same matching and the same 101-point interpolation -> pycocotools' AP50 exactly. (The all-point VOC
    # AP differs from it by the interpolation alone, typically in the 2nd-3rd decimal.)
    preds, truths = random_detection_case(seed)
    voc101 = voc_map(preds, truths, 3, interpolation="101")
    coco = coco_map(preds, truths, 3)
    np.testing.assert_allclose(voc101["ap_per_class"], coco["ap50_per_class"], atol=1e-9)
    assert voc101["map"] == pytest.approx(coco["map50"], abs=1e-9)
    assert coco["map50_95"] <= coco["map50"]


def test_torch_inputs_and_meter():
    preds, truths = det_case()
    tp = [{k: torch.tensor(v) for k, v in d.items()} for d in preds]
    tt = [{k: torch.tensor(v) for k, v in d.items()} for d in truths]
    meter = DetectionMeter(num_classes=1)
    meter.update(tp, tt)
    meter.update([{"boxes": torch.zeros(0, 4), "scores": torch.zeros(0), "labels": torch.zeros(0)}],
                 [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0)}])  # fmt: skip
    r = meter.compute()
    assert r["map50"] == pytest.approx(5 / 6)
    assert set(r) >= {"map50", "map50_95", "ap50_per_class", "ap50_95_per_class", "pr_curves", "coco_map50"}


def test_average_precision_edges():
    assert average_precision(np.array([]), np.array([])) == 0.0
    assert average_precision([0.5, 1.0], [1.0, 1.0]) == 1.0
    with pytest.raises(SteelscanError, match="interpolation"):
        average_precision([1.0], [1.0], interpolation="11")


@pytest.mark.parametrize(
    ("preds", "truths", "message"),
    [
        ([{"boxes": [A], "labels": [0]}], [{"boxes": [A], "labels": [0]}], r"lacks keys \['scores'\]"),
        ([{"boxes": [A], "scores": [1.0, 0.5], "labels": [0]}], [{"boxes": [A], "labels": [0]}], "scores"),
        ([{"boxes": [[10, 0, 0, 10]], "scores": [1.0], "labels": [0]}], [{"boxes": [A], "labels": [0]}], "x2 >= x1"),
        ([{"boxes": [A], "scores": [1.0], "labels": [5]}], [{"boxes": [A], "labels": [0]}], r"in \[0, 2\)"),
        ([], [{"boxes": [A], "labels": [0]}], "same images"),
    ],
)
def test_detection_bad_input(preds, truths, message):
    with pytest.raises(SteelscanError, match=message):
        voc_map(preds, truths, num_classes=2)
