"""The 2-stage pipeline of Wang 2021: a binary gate decides defect / no defect, and only the images it passes
(P(defect) >= threshold; the paper uses 0.3) go on to the detector.

Images are uint8 grey [H, W] or RGB [H, W, 3] (any size: the gate resizes to its own input, the detector
resizes itself). The gate is a `ClassifierPredictor` (or any callable images -> P(defect)), the detector a
`DetectorPredictor` (`steelscan.deploy`); detections are its dicts; a skipped image gets empty ones.
`evaluate_two_stage` says whether the gate earns its place: time per image with and without it (both paths
measured on the same images), the share skipped, and the recall / mAP@0.5 lost with it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from steelscan.tasks.detection.data import DetSample, load_split_samples
from steelscan.data.severstal import SeverstalDataset, mask_to_boxes, split_tiles
from steelscan.core.errors import SteelscanError
from steelscan.core.meta import ModelMeta
from steelscan.deploy.predictors import ClassifierPredictor, DetectorPredictor
from steelscan.metrics import box_iou, evaluate_detection, to_jsonable

DEFAULT_GATE_THRESHOLD = 0.3  # Wang 2021; also config two_stage.gate_threshold's default
Gate = ClassifierPredictor | Callable[[Sequence[np.ndarray]], np.ndarray]


def _empty() -> dict[str, np.ndarray]:
    return {"boxes": np.zeros((0, 4), np.float32), "scores": np.zeros(0, np.float32), "labels": np.zeros(0, np.int64)}


def check_threshold(threshold: float) -> float:
    """Any finite value >= 0: 0 passes every image, a value above 1 passes none (a detector-free baseline)."""
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise SteelscanError(f"gate threshold: expected a number >= 0, got {threshold!r}") from None
    if not math.isfinite(t) or t < 0:
        raise SteelscanError(f"gate threshold: expected a finite number >= 0, got {threshold!r}")
    return t


def _check_images(images: Sequence[np.ndarray]) -> None:
    for i, im in enumerate(images):
        ok = isinstance(im, np.ndarray) and im.dtype == np.uint8 and (im.ndim == 2 or (im.ndim == 3 and im.shape[2] == 3))
        if not ok:
            got = f"{getattr(im, 'shape', None)} {getattr(im, 'dtype', type(im).__name__)}"
            raise SteelscanError(f"image {i}: expected a uint8 grey [H, W] or RGB [H, W, 3] array, got {got}")


def defect_column(meta: ModelMeta) -> tuple[int, bool]:
    """Which probability column is P(defect): ("defect" column, False) or ("clean" column, True = 1 - it)."""
    if meta.task != "classification":
        raise SteelscanError(f"the gate must be a classifier, got a {meta.task} model")
    names = [str(n).lower() for n in meta.class_names]
    if "defect" in names:
        return names.index("defect"), False
    if "clean" in names:
        return names.index("clean"), True
    raise SteelscanError(f"the gate needs a 'defect' or 'clean' class to give P(defect), got classes {names}; "
                         "train one with data.binary: true")


def gate_probabilities(gate: Gate, images: Sequence[np.ndarray]) -> np.ndarray:
    """P(defect) float64 [N]. `gate`: a classifier's predictor (a binary clean/defect model) or any callable
    images -> P(defect) [N] (a classical model, a stub)."""
    _check_images(images)
    if isinstance(gate, ClassifierPredictor):
        col, complement = defect_column(gate.meta)
        p = gate.predict(images)[:, col].astype(np.float64)
        p = 1.0 - p if complement else p
    elif callable(gate):
        p = np.asarray(gate(images), dtype=np.float64).reshape(-1)
    else:
        raise SteelscanError(f"gate: expected a classifier predictor or a callable, got {type(gate).__name__}")
    if p.shape != (len(images),) or not np.all((p >= 0) & (p <= 1)):
        raise SteelscanError(f"gate: expected {len(images)} probabilities in [0, 1], got shape {p.shape}")
    return p


@dataclass
class TwoStageResult:
    """Per image: detections, P(defect) and whether the gate passed it; timing in milliseconds."""

    detections: list[dict[str, np.ndarray]]
    p_defect: np.ndarray
    passed: np.ndarray
    threshold: float
    timing: dict[str, float] = field(default_factory=dict)


def _check_detector(detector: Any) -> DetectorPredictor:
    if not isinstance(detector, DetectorPredictor):
        task = getattr(getattr(detector, "meta", None), "task", type(detector).__name__)
        raise SteelscanError(f"the second stage must be a detector, got {task}")
    return detector


def two_stage_detect(gate: Gate, detector: DetectorPredictor, images: Sequence[np.ndarray],
                     threshold: float = DEFAULT_GATE_THRESHOLD, score_threshold: float | None = None) -> TwoStageResult:
    """Gate every image; run the detector on those with P(defect) >= threshold only. `score_threshold`:
    detections kept (default: the detector's own)."""
    threshold = check_threshold(threshold)
    detector = _check_detector(detector)
    if score_threshold is not None:
        detector = detector.replace(score_threshold=float(score_threshold))
    t0 = time.perf_counter()
    p = gate_probabilities(gate, images)
    t1 = time.perf_counter()
    passed = p >= threshold
    idx = np.flatnonzero(passed)
    found = detector.predict([images[i] for i in idx]) if len(idx) else []
    t2 = time.perf_counter()
    detections = [_empty() for _ in images]
    for i, d in zip(idx, found):
        detections[i] = d
    n = max(len(images), 1)
    timing = {"gate_ms": 1000 * (t1 - t0), "detector_ms": 1000 * (t2 - t1), "total_ms": 1000 * (t2 - t0),
              "ms_per_image": 1000 * (t2 - t0) / n, "n_images": len(images), "n_passed": int(len(idx))}
    return TwoStageResult(detections, p, passed, threshold, timing)


def found_boxes(preds: Sequence[dict], truths: Sequence[dict], score_threshold: float, iou: float = 0.5,
                class_aware: bool = True) -> np.ndarray:
    """bool per truth box (all images, in order): some detection scoring >= score_threshold (of its class when
    class_aware) overlaps it with IoU >= iou. Recall = the mean; a skipped image finds nothing."""
    out = []
    for d, t in zip(preds, truths):
        keep = np.asarray(d["scores"]) >= score_threshold
        pb, pl = np.asarray(d["boxes"])[keep], np.asarray(d["labels"])[keep]
        tb, tl = np.asarray(t["boxes"]).reshape(-1, 4), np.asarray(t["labels"])
        if not len(tb):
            continue
        hit = box_iou(tb, pb) >= iou if len(pb) else np.zeros((len(tb), 0), bool)
        if class_aware:
            hit &= tl[:, None] == pl[None, :]
        out.append(hit.any(1))
    return np.concatenate(out) if out else np.zeros(0, bool)


def _detection_scores(preds, truths, num_classes: int, score_threshold: float) -> dict[str, float]:
    aware, agnostic = found_boxes(preds, truths, score_threshold), found_boxes(preds, truths, score_threshold,
                                                                               class_aware=False)
    mean = lambda a: float(a.mean()) if a.size else float("nan")  # noqa: E731
    return {"map50": evaluate_detection(preds, truths, num_classes, coco=False)["map50"],
            "recall": mean(aware), "recall_any_class": mean(agnostic), "boxes_found": int(aware.sum())}


def evaluate_two_stage(
    gate: Gate, detector: DetectorPredictor, samples: Sequence[DetSample], threshold: float = DEFAULT_GATE_THRESHOLD,
    *, score_threshold: float | None = None, batch_size: int = 8, repeats: int = 1,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Run the detector alone and gate + detector over the same labelled mix (a sample with no boxes is clean).

    Timing: the best of `repeats` runs per path, after one warm-up image. Recall: truth boxes found at the
    detector's shown score (`score_threshold`, default its own) at IoU 0.5; mAP@0.5 uses every detection.
    """
    threshold = check_threshold(threshold)
    detector = _check_detector(detector)
    if not samples:
        raise SteelscanError("evaluate_two_stage: expected at least one labelled image, got none")
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise SteelscanError(f"repeats: expected a positive integer, got {repeats!r}")
    score_threshold = float(detector.score_threshold if score_threshold is None else score_threshold)
    det_names = list(detector.class_names)
    names = list(class_names if class_names is not None else det_names)
    images, truths = [s.image for s in samples], [s.truth for s in samples]
    every = detector.replace(score_threshold=0.0, batch_size=batch_size)  # mAP needs every detection

    gate_probabilities(gate, images[:1])  # warm-up: first calls allocate
    every.predict(images[:1])
    plain_ms, gated = math.inf, None
    for _ in range(repeats):
        t0 = time.perf_counter()
        plain = every.predict(images)
        plain_ms = min(plain_ms, 1000 * (time.perf_counter() - t0))
        run = two_stage_detect(gate, every, images, threshold)
        gated = run if gated is None or run.timing["total_ms"] < gated.timing["total_ms"] else gated

    # Labels index `names`; a detector of other classes (NEU on Severstal tiles) still needs every label counted.
    labels = [d["labels"] for d in [*truths, *plain] if len(d["labels"])]
    n_cls = max([len(names), len(det_names), 1] + [int(np.max(x)) + 1 for x in labels])
    n = len(samples)
    defective = np.array([len(t["boxes"]) > 0 for t in truths])
    passed = gated.passed
    tp, fp = int((passed & defective).sum()), int((passed & ~defective).sum())
    fn, tn = int((~passed & defective).sum()), int((~passed & ~defective).sum())
    without = _detection_scores(plain, truths, n_cls, score_threshold)
    with_gate = _detection_scores(gated.detections, truths, n_cls, score_threshold)
    per_image_plain, per_image_gated = plain_ms / n, gated.timing["ms_per_image"]
    gate_ms = gated.timing["gate_ms"] / n
    det_ms = plain_ms / n
    out = {
        "n_images": n, "n_defective": int(defective.sum()), "n_clean": int((~defective).sum()),
        "n_truth_boxes": int(sum(len(t["boxes"]) for t in truths)), "gate_threshold": threshold,
        "score_threshold": score_threshold, "iou_threshold": 0.5, "class_names": names,
        "skipped_share": 1.0 - float(passed.mean()),
        "gate": {"recall": tp / (tp + fn) if tp + fn else float("nan"),
                 "precision": tp / (tp + fp) if tp + fp else float("nan"),
                 "tp": tp, "fp": fp, "fn": fn, "tn": tn,
                 "clean_skipped_share": tn / (tn + fp) if tn + fp else float("nan")},
        "time": {"ms_per_image_without_gate": per_image_plain, "ms_per_image_with_gate": per_image_gated,
                 "gate_ms_per_image": gate_ms, "time_saved_share": 1.0 - per_image_gated / per_image_plain,
                 "speedup": per_image_plain / per_image_gated,
                 # The gate pays for itself once it skips more than this share of the images.
                 "break_even_skipped_share": gate_ms / det_ms, "repeats": repeats, "threads": torch.get_num_threads(),
                 "batch_size": batch_size},
        "without_gate": without, "with_gate": with_gate,
        "recall_lost": without["recall"] - with_gate["recall"],
        "recall_any_class_lost": without["recall_any_class"] - with_gate["recall_any_class"],
        "map50_lost": without["map50"] - with_gate["map50"],
        "images": [{"name": s.name, "n_boxes": len(s.boxes), "p_defect": float(p), "passed": bool(ok)}
                   for s, p, ok in zip(samples, gated.p_defect, passed)],
    }
    return to_jsonable(out)


# -- data: a labelled mix -------------------------------------------------------------------------------------


@dataclass
class Tile(DetSample):
    """A 400x256 tile of a Severstal image: boxes in tile pixels; (x + x_offset, y) is the full-image point."""

    image_id: str = ""
    x_offset: int = 0


def severstal_tiles(dataset: SeverstalDataset, n_tiles: int = 4, min_area: int = 0,
                    limit: int | None = None) -> list[Tile]:
    """Wang 2021's Severstal preparation: each 1600x256 image -> four 400x256 tiles, masks -> boxes per tile
    (labels = ClassId - 1). A defect crossing a tile border becomes one box per tile; a tile without a mask
    pixel is clean. `limit`: the first images only (all of Severstal in memory is 5 GB of tiles)."""
    if dataset.masks_only:
        raise SteelscanError("severstal tiles need the images: expected a folder with train_images/, "
                             "got labels only")
    out = []
    for k in range(len(dataset) if limit is None else min(limit, len(dataset))):
        item = dataset[k]
        tiles, offsets = split_tiles(item["image"], n_tiles)
        masks, _ = split_tiles(item["mask"], n_tiles)
        for tile, mask, x in zip(tiles, masks, offsets):
            boxes, labels = mask_to_boxes(mask, min_area)
            out.append(Tile(f"{item['image_id']}@x{x}", np.ascontiguousarray(tile), boxes, labels,
                            item["image_id"], int(x)))
    return out


def labelled_mix(defective: str | Path, clean: str | Path | None = None, split: str = "val") -> list[DetSample]:
    """NEU-DET images (+ a folder of clean ones): their validation split by the training rule (`val`, so a gate
    and detector trained on the same folders are judged on unseen images), or every image (`all`)."""
    if split not in ("val", "all"):
        raise SteelscanError(f"split: expected val or all, got {split!r}")
    if split == "all":
        return load_split_samples(defective, "all", clean_root=clean)
    return load_split_samples(defective, "val", clean_root=clean)


def gate_settings(det_meta: ModelMeta, gate: str | None = None, threshold: float | None = None,
                  no_gate: bool = False) -> tuple[str | None, float]:
    """(gate reference or None, threshold): the command line first, then the detector's checkpoint meta
    (config two_stage, saved at training), then the default 0.3."""
    saved = det_meta.two_stage or {}
    ref = None if no_gate else (gate or saved.get("gate"))
    t = threshold if threshold is not None else saved.get("gate_threshold", DEFAULT_GATE_THRESHOLD)
    return ref, check_threshold(t)
