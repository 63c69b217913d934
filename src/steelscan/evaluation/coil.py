"""Scoring a coil inspection against its ground truth, defect by defect, in coil pixels.

Matching: found and truth defects are paired one-to-one by their coil boxes (`coil_bbox_px`, xyxy, x2/y2
exclusive) at IoU >= `iou` (0.3 by default: a coil defect's extent is loosely defined, and a station that
merges frame pieces reports boxes a little larger or smaller than the labeller's). The pairing is Hungarian
(scipy's `linear_sum_assignment`): the most pairs, then the highest total IoU. Class-aware scores pair only
defects of the same class; class-agnostic ones pair any two.

Split and merged (geometric, class-agnostic): found defect f *lies on* truth defect t when IoU(f, t) >= 0.1
or at least half of f's area is inside t (a long scratch reported as three pieces: each piece lies on it),
and f counts toward only the truth it lies on with the highest IoU (truth boxes overlap each other: NEU
labels boxes inside boxes, and a box found exactly must not also split its neighbour). A truth defect is
*split* when two or more found defects count toward it; a found defect is *merged* when two or more truth
defects count toward it (the same rule with the roles swapped).

Classes: a defect's class is its "class_name" when it has one, else its "class": a name, or a number k
meaning class_names[k - 1] (the file's own top-level "class_names", else the `class_names` argument). A
class present on one side only can never be matched class-aware; `unknown_classes` lists such classes.

`detector_on_sources` is the baseline a plant compares its station with: the same detector on each source
image of a laid-out coil (`steelscan synth neu-coil`) alone, its boxes moved to coil pixels.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from steelscan.core.errors import DataError, SteelscanError
from steelscan.metrics.detection import box_iou

LIE_ON_IOU = 0.1  # split / merged: a found piece lies on a truth defect at this IoU ...
LIE_ON_INSIDE = 0.5  # ... or with this share of its own area inside it
SOURCE_CHUNK = 64  # source images read and run per step of the baseline (memory stays small)


@dataclass
class Defects:
    """One side of a comparison: ids, boxes float64 [N, 4] (coil px), class names, the classes it declares."""

    ids: list
    boxes: np.ndarray
    classes: list[str]
    declared: list[str]


def load_doc(path: str | Path, default_name: str, what: str) -> dict:
    """A JSON document with a "defects" list; a folder means its `default_name` (e.g. defects.json)."""
    path = Path(path)
    if path.is_dir():
        path = path / default_name
    if not path.is_file():
        raise DataError(f"{what} file not found: expected {default_name} or a JSON file at {path}")
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"{what} {path} is not a text JSON file") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{what} {path} is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("defects"), list):
        got = f"keys {sorted(doc)[:6]}" if isinstance(doc, dict) else type(doc).__name__
        raise DataError(f"{what} {path}: expected a JSON object with a \"defects\" list, got {got}")
    return doc


def _names(value: object, where: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DataError(f"{where}: \"class_names\" must be a list of strings, got {value!r}")
    return list(value)


def read_defects(doc: dict | list, what: str, class_names: Sequence[str] | None = None) -> Defects:
    """The defects of a truth or result document (or a bare list of defects), checked: each needs a class and
    a `coil_bbox_px` of 4 finite numbers with x2 > x1 and y2 > y1."""
    declared = _names(doc.get("class_names"), what) if isinstance(doc, dict) else []
    items = doc.get("defects") if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise DataError(f"{what}: expected a \"defects\" list, got {type(items).__name__}")
    numbered = declared or list(class_names or [])
    ids, boxes, classes = [], [], []
    for i, d in enumerate(items):
        if not isinstance(d, dict):
            raise DataError(f"{what}: defect #{i} must be a JSON object, got {d!r:.60}")
        label = f"{what}: defect #{i} (id {d.get('id', i)})"
        box = d.get("coil_bbox_px")
        if (not isinstance(box, list) or len(box) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in box)
                or not (box[2] > box[0] and box[3] > box[1])):
            raise DataError(f"{label}: coil_bbox_px must be 4 numbers [x1, y1, x2, y2] with x2 > x1 and y2 > y1, "
                            f"got {box!r}")
        ids.append(d.get("id", i))
        boxes.append(box)
        classes.append(_class_of(d, numbered, label))
    return Defects(ids, np.asarray(boxes, np.float64).reshape(-1, 4), classes, declared)


def _class_of(d: dict, numbered: list[str], label: str) -> str:
    name = d.get("class_name", d.get("class"))
    if isinstance(name, str) and name:
        return name
    if isinstance(name, int) and not isinstance(name, bool):
        if not numbered:
            raise DataError(f"{label}: class {name} is a number but no class_names say what it means (give the "
                            "file a top-level \"class_names\" list, or each defect a \"class_name\")")
        if not 1 <= name <= len(numbered):
            raise DataError(f"{label}: class {name} is outside 1..{len(numbered)} (class_names {numbered})")
        return numbered[name - 1]
    raise DataError(f"{label}: expected a class name or number in \"class_name\" / \"class\", got {name!r}")


def match_pairs(iou: np.ndarray, threshold: float, allowed: np.ndarray | None = None) -> list[tuple[int, int]]:
    """One-to-one (row, col) pairs with IoU >= threshold (and `allowed`): the most pairs, then the highest
    total IoU."""
    ok = iou >= threshold
    if allowed is not None:
        ok &= allowed
    if not ok.any():
        return []
    # A pair outweighs any IoU gain (k pairs weigh at most k * (big + 1) < (k + 1) * big), so the assignment
    # maximises the number of pairs first.
    big = min(ok.shape) + 1.0
    rows, cols = linear_sum_assignment(np.where(ok, big + iou, 0.0), maximize=True)
    return [(int(r), int(c)) for r, c in zip(rows, cols) if ok[r, c]]


def pieces_per_box(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """int [M]: how many boxes of `a` count toward each box of `b`: a[i] lies on b[j] (IoU >= LIE_ON_IOU or
    LIE_ON_INSIDE of a[i]'s area inside b[j]) and b[j] is, of the boxes a[i] lies on, its highest IoU."""
    if not len(a) or not len(b):
        return np.zeros(len(b), np.int64)
    iou = box_iou(a, b)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    on = (iou >= LIE_ON_IOU) | (inter >= LIE_ON_INSIDE * area_a[:, None])
    best = np.where(on, iou, -1.0).argmax(axis=1)
    return np.bincount(best[on.any(axis=1)], minlength=len(b))


def _rates(n_truth: int, n_found: int, tp: int) -> dict:
    return {"truth": n_truth, "found": n_found, "tp": tp,
            "recall": round(tp / n_truth, 4) if n_truth else None,
            "precision": round(tp / n_found, 4) if n_found else None}


def score_coil(found: dict | list, truth: dict | list, class_names: Sequence[str] | None = None,
               iou: float = 0.3) -> dict:
    """Score found defects against truth defects (documents as `steelscan inspect` and `synth coil` write them,
    or bare lists of defects). See the module docstring for the rules. Recall / precision are None when
    nothing was there to find / nothing was found."""
    if isinstance(iou, bool) or not isinstance(iou, (int, float)) or not 0 < iou <= 1:
        raise SteelscanError(f"iou must be a number in (0, 1], got {iou!r}")
    t = read_defects(truth, "truth", class_names)
    f = read_defects(found, "found", class_names)
    overlap = box_iou(t.boxes, f.boxes)
    same = np.array(t.classes, object)[:, None] == np.array(f.classes, object)[None, :]
    pairs = match_pairs(overlap, iou, same.reshape(overlap.shape))
    any_pairs = match_pairs(overlap, iou)

    t_counts, f_counts = Counter(t.classes), Counter(f.classes)
    tp_counts = Counter(t.classes[i] for i, _ in pairs)
    order = list(class_names or []) + t.declared + f.declared + sorted(set(t_counts) | set(f_counts))
    rows = [c for c in dict.fromkeys(order) if t_counts[c] or f_counts[c]]
    per_class = {c: _rates(t_counts[c], f_counts[c], tp_counts[c]) for c in rows}

    split = [t.ids[j] for j in np.flatnonzero(pieces_per_box(f.boxes, t.boxes) >= 2)]
    merged = [f.ids[i] for i in np.flatnonzero(pieces_per_box(t.boxes, f.boxes) >= 2)]

    t_known = set(t.declared) | set(t_counts)
    f_known = set(f.declared) | set(f_counts)
    matched_t, matched_f = {i for i, _ in pairs}, {j for _, j in pairs}
    return {
        "iou": iou,
        "overall": _rates(len(t.ids), len(f.ids), len(pairs)),
        "class_agnostic": _rates(len(t.ids), len(f.ids), len(any_pairs)),
        "per_class": per_class,
        "split": len(split), "merged": len(merged),
        "split_truth_ids": split, "merged_found_ids": merged,
        "missed_truth_ids": [t.ids[i] for i in range(len(t.ids)) if i not in matched_t],
        "false_found_ids": [f.ids[j] for j in range(len(f.ids)) if j not in matched_f],
        "matches": [{"truth": t.ids[i], "found": f.ids[j], "iou": round(float(overlap[i, j]), 4)} for i, j in pairs],
        "unknown_classes": {"truth_only": sorted(c for c in t_counts if c not in f_known),
                            "found_only": sorted(c for c in f_counts if c not in t_known)},
    }


# -- the baseline: the detector on each source image alone ---------------------------------------------------


@dataclass(frozen=True)
class Source:
    path: Path
    frame: int
    x: int
    y: int


def truth_sources(truth: dict, truth_path: str | Path) -> list[Source]:
    """The source images of a laid-out coil (truth "sources"), paths resolved against "sources_root" or else
    the truth file's folder."""
    listed = truth.get("sources")
    if not isinstance(listed, list) or not listed:
        raise DataError(f"truth {truth_path} lists no source images (\"sources\"); a detector baseline needs a "
                        "coil laid out from single images, e.g. by `steelscan synth neu-coil`")
    truth_path = Path(truth_path)
    base = Path(truth.get("sources_root") or (truth_path if truth_path.is_dir() else truth_path.parent))
    out = []
    for i, s in enumerate(listed):
        ok = isinstance(s, dict) and isinstance(s.get("path"), str) and all(
            isinstance(s.get(k), int) and not isinstance(s.get(k), bool) for k in ("frame", "x", "y"))
        if not ok:
            raise DataError(f"truth {truth_path}: source #{i} must have \"path\" (text) and integer \"frame\", "
                            f"\"x\", \"y\", got {s!r:.120}")
        p = Path(s["path"])
        out.append(Source(p if p.is_absolute() else base / p, s["frame"], s["x"], s["y"]))
    return out


def detector_on_sources(sources: Sequence[Source], model: str, batch_size: int = 8,
                        progress: Callable[[int], None] | None = None) -> dict:
    """Run detector `model` on each source image alone, keep its detections at its own score threshold, move
    them to coil px by the image's offset: a result document `score_coil` reads like the station's."""
    from steelscan.core.images import read_image
    from steelscan.deploy.predictors import load_predictor

    predictor = load_predictor(model, task="detection", batch_size=batch_size)
    names = list(predictor.class_names)
    defects = []
    for start in range(0, len(sources), SOURCE_CHUNK):
        chunk = sources[start : start + SOURCE_CHUNK]
        for k, (s, det) in enumerate(zip(chunk, predictor.predict([read_image(s.path, channels=1) for s in chunk])),
                                     start=start):
            for box, score, label in zip(det["boxes"], det["scores"], det["labels"]):
                x1, y1, x2, y2 = (float(v) for v in box)
                defects.append({"id": len(defects), "class": names[int(label)], "confidence": round(float(score), 4),
                                "frame": s.frame, "source": k,
                                "coil_bbox_px": [round(x1 + s.x, 2), round(y1 + s.y, 2), round(x2 + s.x, 2),
                                                 round(y2 + s.y, 2)]})
        if progress:
            progress(len(chunk))
    return {"coil": {"source": "detector on single images", "model": str(model), "images": len(sources)},
            "class_names": names, "score_threshold": predictor.score_threshold, "defects": defects}


def evaluate_coil(found: str | Path, truth: str | Path, iou: float = 0.3, baseline_model: str | None = None,
                  batch_size: int = 8, progress: Callable[[int], None] | None = None) -> dict:
    """`steelscan evaluate-coil`: the station's defects (an inspection folder or its defects.json) scored against
    the truth (defects_truth.json or the coil folder holding it); with `baseline_model`, also that detector on
    each source image alone, scored the same way."""
    truth_doc = load_doc(truth, "defects_truth.json", "truth")
    found_doc = load_doc(found, "defects.json", "found")
    out = {"truth": str(truth), "found": str(found), "iou": iou, "station": score_coil(found_doc, truth_doc, iou=iou)}
    if baseline_model is not None:
        sources = truth_sources(truth_doc, truth)
        base = detector_on_sources(sources, baseline_model, batch_size, progress)
        out["detector_on_single_images"] = {"model": str(baseline_model), "score_threshold": base["score_threshold"],
                                            "images": len(sources), **score_coil(base, truth_doc, iou=iou)}
    return out
