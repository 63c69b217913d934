"""Detection metrics: VOC mAP@0.5 (all-point interpolation) and COCO mAP@[.5:.95] via pycocotools.

Shape convention, one entry per image (torchvision's detection dicts; numpy, torch or lists):
    preds[i]  = {"boxes": [M, 4] xyxy, "scores": [M], "labels": [M]}
    truths[i] = {"boxes": [G, 4] xyxy, "labels": [G]}
Boxes are continuous pixel coordinates (x1, y1, x2, y2), area (x2 - x1) * (y2 - y1): no VOC-devkit "+1".
Labels are class indices in [0, num_classes). A torchvision detector's labels 1..K with 0 = background
work as they are with num_classes = K + 1: class 0 has no truth and drops out of the mean.

Classes with no truth get AP = NaN and are excluded from every mean (mAP is over classes that have
truth); predictions of such a class therefore change no reported number. Images with
neither truth nor predictions change nothing; an image with predictions but no truth adds false
positives and lowers AP. There are no `difficult` flags.

VOC matching (the devkit's rule): per class, predictions in descending score order each take the truth
box of their image with the highest IoU; IoU >= threshold and that truth not yet taken -> true positive,
otherwise false positive (a prediction whose best truth is taken does not fall back to the second best;
pycocotools does fall back, which only matters when truths overlap heavily).
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np

from steelscan.core.errors import SteelscanError
from steelscan.metrics._common import to_numpy

__all__ = ["box_iou", "average_precision", "voc_map", "coco_map", "evaluate_detection", "DetectionMeter"]

Image = tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes [M, 4] float64, scores [M], labels [M] int64


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every pair of xyxy boxes: [M, 4] x [G, 4] -> [M, G] (0 where the union is empty)."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def average_precision(recall: np.ndarray, precision: np.ndarray, interpolation: Literal["all", "101"] = "all") -> float:
    """Area under the precision envelope of a PR curve (recall ascending, in detection order).

    "all": VOC2010+ all-point interpolation, sum over recall steps of delta-recall times the envelope
    (the maximum precision at any recall >= r). "101": COCO's mean envelope precision at recall
    0, 0.01, ..., 1 (0 beyond the last recall reached), as pycocotools computes it.
    """
    r, p = np.asarray(recall, dtype=np.float64), np.asarray(precision, dtype=np.float64)
    if r.shape != p.shape or r.ndim != 1:
        raise SteelscanError(f"recall and precision must be 1-D of equal length, got {r.shape} and {p.shape}")
    if interpolation == "all":
        mrec = np.concatenate(([0.0], r, [1.0]))
        mpre = np.concatenate(([0.0], p, [0.0]))
        mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # the envelope: running max from the right
        step = np.flatnonzero(mrec[1:] != mrec[:-1])
        return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))
    if interpolation == "101":
        if r.size == 0:
            return 0.0
        env = np.maximum.accumulate(p[::-1])[::-1]
        idx = np.searchsorted(r, np.linspace(0.0, 1.0, 101), side="left")
        return float(np.sum(env[idx[idx < r.size]]) / 101.0)
    raise SteelscanError(f"interpolation must be 'all' or '101', got {interpolation!r}")


def _as_image(d: Any, i: int, kind: str, num_classes: int) -> Image:
    if not isinstance(d, Mapping):
        raise SteelscanError(f"{kind}[{i}] must be a dict with boxes/labels{'/scores' if kind == 'preds' else ''}, "
                             f"got {type(d).__name__}")  # fmt: skip
    keys = ("boxes", "scores", "labels") if kind == "preds" else ("boxes", "labels")
    missing = [k for k in keys if k not in d]
    if missing:
        raise SteelscanError(f"{kind}[{i}] lacks keys {missing}; expected {list(keys)}, got {sorted(d)}")
    boxes = to_numpy(d["boxes"], "boxes").astype(np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    labels = to_numpy(d["labels"], "labels").reshape(-1)
    m = labels.shape[0]
    scores = to_numpy(d["scores"], "scores").astype(np.float64).reshape(-1) if kind == "preds" else np.ones(m)
    if boxes.shape != (m, 4) or scores.shape != (m,):
        want = "boxes [M, 4], labels [M]" + (", scores [M]" if kind == "preds" else "")
        raise SteelscanError(f"{kind}[{i}]: expected {want}; "
                             f"got boxes {boxes.shape}, labels {labels.shape}, scores {scores.shape}")  # fmt: skip
    bad = ~np.isfinite(boxes).all(1) | (boxes[:, 2:] < boxes[:, :2]).any(1)
    if bad.any():
        raise SteelscanError(f"{kind}[{i}]: boxes must be finite xyxy with x2 >= x1 and y2 >= y1, "
                             f"got {boxes[bad][0].tolist()} at row {int(np.argmax(bad))}")  # fmt: skip
    if not np.isfinite(scores).all():
        raise SteelscanError(f"{kind}[{i}]: scores must be finite, got {scores[~np.isfinite(scores)][:3].tolist()}")
    ok = labels.dtype.kind in "iuf" and bool(np.all((np.mod(labels, 1) == 0) & (labels >= 0) & (labels < num_classes)))
    if not ok:
        raise SteelscanError(f"{kind}[{i}]: labels must be integers in [0, {num_classes}), got {labels[:20].tolist()}")
    return boxes, scores, labels.astype(np.int64)


def _prepare(preds: Sequence[Any], truths: Sequence[Any], num_classes: int) -> tuple[list[Image], list[Image]]:
    if isinstance(num_classes, bool) or not isinstance(num_classes, (int, np.integer)) or num_classes < 1:
        raise SteelscanError(f"num_classes must be a positive int, got {num_classes!r}")
    if len(preds) != len(truths):
        raise SteelscanError(f"preds and truths must list the same images, got {len(preds)} and {len(truths)}")
    return (
        [_as_image(d, i, "preds", num_classes) for i, d in enumerate(preds)],
        [_as_image(d, i, "truths", num_classes) for i, d in enumerate(truths)],
    )


def _voc_class(
    pred: list[Image], truth: list[Image], c: int, iou_threshold: float
) -> tuple[np.ndarray, np.ndarray, int]:
    """(is_tp, scores) in descending score order, and the truth count, for one class."""
    scores, best_iou, best_gt = [], [], []
    n_truth = 0
    for (pb, ps, pl), (tb, _, tl) in zip(pred, truth):
        pm, tm = pl == c, tl == c
        gt_offset, g = n_truth, int(tm.sum())
        n_truth += g
        if not pm.any():
            continue
        scores.append(ps[pm])
        if g:
            iou = box_iou(pb[pm], tb[tm])
            best_gt.append(iou.argmax(1) + gt_offset)  # truths numbered across images, so one "taken" array
            best_iou.append(iou.max(1))
        else:
            best_gt.append(np.full(int(pm.sum()), -1))
            best_iou.append(np.zeros(int(pm.sum())))
    if not scores:
        return np.zeros(0, bool), np.zeros(0), n_truth
    s, bi, bg = np.concatenate(scores), np.concatenate(best_iou), np.concatenate(best_gt)
    order = np.argsort(-s, kind="stable")  # stable: ties keep image order, so results are reproducible
    taken = np.zeros(n_truth, bool)
    tp = np.zeros(s.size, bool)
    for rank, j in enumerate(order):  # greedy in score order: each truth can be matched once
        if bi[j] >= iou_threshold and not taken[bg[j]]:
            taken[bg[j]] = tp[rank] = True
    return tp, s[order], n_truth


def voc_map(
    preds: Sequence[Any], truths: Sequence[Any], num_classes: int, iou_threshold: float = 0.5,
    interpolation: Literal["all", "101"] = "all",
) -> dict[str, Any]:  # fmt: skip
    """VOC-style mAP at one IoU threshold.

    Returns map (mean AP over classes with truth; NaN if none has), ap_per_class ([K], NaN for a class
    without truth), n_truth_per_class, n_pred_per_class, and pr_curves: per class a dict of numpy
    arrays precision, recall, scores (one point per prediction, in descending score order; empty
    arrays where the class has no predictions, recall all NaN where it has no truth).
    """
    pred, truth = _prepare(preds, truths, num_classes)
    if not 0.0 < iou_threshold <= 1.0:
        raise SteelscanError(f"iou_threshold must be in (0, 1], got {iou_threshold}")
    ap, curves, n_truth, n_pred = [], [], [], []
    for c in range(num_classes):
        tp, s, g = _voc_class(pred, truth, c, iou_threshold)
        ctp, cfp = np.cumsum(tp), np.cumsum(~tp)
        precision = ctp / np.maximum(ctp + cfp, 1)
        recall = ctp / g if g else np.full(tp.size, np.nan)
        ap.append(average_precision(recall, precision, interpolation) if g else float("nan"))
        curves.append({"precision": precision, "recall": recall, "scores": s})
        n_truth.append(int(g))
        n_pred.append(int(tp.size))
    aps = np.array(ap)
    return {
        "map": float(np.mean(aps[~np.isnan(aps)])) if (~np.isnan(aps)).any() else float("nan"),
        "ap_per_class": aps.tolist(),
        "n_truth_per_class": n_truth,
        "n_pred_per_class": n_pred,
        "pr_curves": curves,
    }


def coco_map(preds: Sequence[Any], truths: Sequence[Any], num_classes: int, max_dets: int = 100) -> dict[str, Any]:
    """COCO bbox mAP through pycocotools: map50_95, map50, map75 and per-class AP (NaN without truth).

    pycocotools quirks handled here: every image is listed in `images` even with no annotations (else
    its predictions would be ignored, not counted as false positives); annotation and image ids start
    at 1 (a matched truth id 0 reads as "unmatched"); boxes go xyxy -> xywh and `area` is w * h (COCO
    uses `area` only for the small/medium/large ranges); iscrowd is 0. It keeps the top `max_dets`
    predictions per image and uses 101-point interpolation, so its AP50 differs slightly from voc_map.
    """
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    pred, truth = _prepare(preds, truths, num_classes)
    images = [{"id": i + 1} for i in range(len(truth))]
    categories = [{"id": c + 1, "name": str(c)} for c in range(num_classes)]

    def annotations(data: list[Image], with_score: bool) -> list[dict[str, Any]]:
        out = []
        for i, (boxes, scores, labels) in enumerate(data):
            for b, s, lab in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
                w, h = b[2] - b[0], b[3] - b[1]
                ann = {"id": len(out) + 1, "image_id": i + 1, "category_id": lab + 1,
                       "bbox": [b[0], b[1], w, h], "area": w * h, "iscrowd": 0}  # fmt: skip
                if with_score:
                    ann["score"] = s
                out.append(ann)
        return out

    def build(anns: list[dict[str, Any]]) -> Any:
        coco = COCO()
        coco.dataset = {"images": images, "categories": categories, "annotations": anns}
        coco.createIndex()
        return coco

    n_truth = np.bincount(np.concatenate([t[2] for t in truth] + [np.zeros(0, np.int64)]), minlength=num_classes)
    nan = float("nan")
    empty = {"map50_95": nan, "map50": nan, "map75": nan, "ap50_95_per_class": [nan] * num_classes,
             "ap50_per_class": [nan] * num_classes}  # fmt: skip
    if not n_truth.any():
        return empty
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress and tables
        gt = build(annotations(truth, False))
        dt = build(annotations(pred, True))
        ev = COCOeval(gt, dt, iouType="bbox")
        ev.params.maxDets = [1, 10, max_dets]
        ev.evaluate()
        ev.accumulate()
    # precision: [iou thresholds (.5:.05:.95), 101 recall points, classes, area ranges, maxDets]; -1 = no truth
    prec = ev.eval["precision"][:, :, :, 0, -1]

    def ap(p: np.ndarray) -> float:
        valid = p[p > -1]
        return float(valid.mean()) if valid.size else nan

    per_class = [ap(prec[:, :, c]) for c in range(num_classes)]
    per_class50 = [ap(prec[0, :, c]) for c in range(num_classes)]
    return {
        "map50_95": ap(prec),
        "map50": ap(prec[0]),
        "map75": ap(prec[5]),
        "ap50_95_per_class": per_class,
        "ap50_per_class": per_class50,
    }


def evaluate_detection(
    preds: Sequence[Any], truths: Sequence[Any], num_classes: int, coco: bool = True
) -> dict[str, Any]:
    """VOC mAP@0.5 (all-point) and, with coco=True, COCO mAP@[.5:.95] in one dict.

    Keys: map50, ap50_per_class, n_truth_per_class, n_pred_per_class, pr_curves (from voc_map), and
    with coco: map50_95, map75, ap50_95_per_class, coco_map50 (pycocotools' 101-point AP50).
    Pass the result through `to_jsonable` before json.dump (NaN and numpy arrays).
    """
    voc = voc_map(preds, truths, num_classes, 0.5)
    out: dict[str, Any] = {
        "map50": voc["map"],
        "ap50_per_class": voc["ap_per_class"],
        "n_truth_per_class": voc["n_truth_per_class"],
        "n_pred_per_class": voc["n_pred_per_class"],
        "pr_curves": voc["pr_curves"],
    }
    if coco:
        c = coco_map(preds, truths, num_classes)
        out.update(map50_95=c["map50_95"], map75=c["map75"], ap50_95_per_class=c["ap50_95_per_class"],
                   coco_map50=c["map50"])  # fmt: skip
    return out


class DetectionMeter:
    """Collect per-image predictions and truths batch by batch; `compute()` runs evaluate_detection."""

    def __init__(self, num_classes: int, coco: bool = True) -> None:
        self.num_classes, self.coco = num_classes, coco
        self.reset()

    def reset(self) -> None:
        self._preds: list[dict[str, np.ndarray]] = []
        self._truths: list[dict[str, np.ndarray]] = []

    def update(self, preds: Sequence[Any], truths: Sequence[Any]) -> None:
        """Add one batch; tensors are copied to CPU numpy so no device memory is held."""
        p, t = _prepare(preds, truths, self.num_classes)
        self._preds += [{"boxes": b, "scores": s, "labels": lab} for b, s, lab in p]
        self._truths += [{"boxes": b, "labels": lab} for b, _, lab in t]

    def compute(self) -> dict[str, Any]:
        return evaluate_detection(self._preds, self._truths, self.num_classes, self.coco)
