"""Tuning the post-processing on validation probabilities: per class, the pixel threshold, the minimum area
and the hard-gate threshold, and for all classes the smallest component kept, by grid search, with a
cross-validated estimate of the tuned Dice per fold beside the fold's all-empty Dice.

The Kaggle Dice is a mean over (image, class) pairs, so each class is tuned on its own. For one class and one
threshold, every image reduces to three numbers (|pred|, |pred & truth|, |truth|); every minimum area and gate
threshold is then scored from those counts without touching the masks again.

Shapes: probabilities [N, 4, H, W] (float16 is fine), presence [N, 4], truths uint8 [N, 4, H, W].
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from steelscan.core.errors import SteelscanError
from steelscan.postprocess import MIN_COMPONENT_FLOOR, PostProcess, apply_gate, binarize, remove_small_components

THRESHOLDS = tuple(np.round(np.arange(0.2, 0.85, 0.05), 2).tolist())
MIN_AREAS = (0, 100, 200, 400, 600, 900, 1200, 1600, 2000, 3000, 4000)
GATE_THRESHOLDS = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
MIN_COMPONENTS = (MIN_COMPONENT_FLOOR, 30, 100, 300)  # px: specks a threshold leaves on clean steel


def class_pair_dice(probs: np.ndarray, truth: np.ndarray, presence: np.ndarray, thresholds, areas, gates,
                    min_component: int = 0) -> np.ndarray:
    """Pair Dice of one class for every (image, threshold, min area, gate threshold): float64 [N, T, A, G].

    `probs` [N, H, W] (already soft-gated if that is the mode), `truth` [N, H, W], `presence` [N].
    A mask is kept when its area >= the min area and its presence >= the gate threshold; else it is empty.
    """
    n = probs.shape[0]
    tsum = truth.reshape(n, -1).sum(1).astype(np.float64)
    psum = np.zeros((n, len(thresholds)))
    inter = np.zeros((n, len(thresholds)))
    for i in range(n):
        t = truth[i].astype(bool)
        for j, thr in enumerate(thresholds):
            m = remove_small_components(probs[i] > thr, max(min_component, MIN_COMPONENT_FLOOR)).astype(bool)
            psum[i, j], inter[i, j] = m.sum(), (m & t).sum()
    with np.errstate(invalid="ignore", divide="ignore"):
        kept = np.where(psum + tsum[:, None] > 0, 2 * inter / (psum + tsum[:, None]), 1.0)  # [N, T]
    dropped = (tsum == 0).astype(np.float64)  # an empty prediction scores 1 only on an empty truth
    keep = (psum[:, :, None, None] >= np.asarray(areas)[None, None, :, None]) & \
           (np.asarray(presence)[:, None, None, None] >= np.asarray(gates)[None, None, None, :])
    return np.where(keep, kept[:, :, None, None], dropped[:, None, None, None])


def _best(scores: np.ndarray) -> tuple[int, ...]:
    """Index of the best mean score over images; ties go to the first (lowest threshold, area, gate)."""
    mean = scores.mean(0)
    return np.unravel_index(int(np.argmax(mean)), mean.shape)


def tune_postprocess(probs: np.ndarray, presence: np.ndarray, truths: np.ndarray, base: PostProcess,
                     n_folds: int = 5, seed: int = 0, thresholds=THRESHOLDS, areas=MIN_AREAS,
                     gates=GATE_THRESHOLDS, components=None, folds: np.ndarray | None = None,
                     ) -> tuple[PostProcess, dict]:
    """Search per class; return the post-processing and a report.

    The report's `dice_cv` is the honest number for the search: each fold is scored with values chosen on the
    other folds. `dice_fit` (chosen and scored on the same images) is optimistic; `dice_before` uses `base`.
    A class keeps its `base` values when the search's `dice_cv` does not beat them (`kept`); `dice_chosen`
    is the estimate for the values returned (before for kept classes, CV for searched ones), and `folds` gives
    it per fold beside the fold's all-empty Dice (a model must not lose to predicting nothing on any fold).

    The gate: with `base.gate` "none" or "hard" the per-class hard-gate threshold is searched too (0 = no gate;
    the result is "hard" when a class gates); "soft" keeps its gate. `components`: minimum component sizes to
    try (one for all classes, chosen by the mean CV Dice; default: base.min_component only). Choosing it on the
    same folds makes `dice_cv` slightly optimistic when several are tried. `folds`: each image's fold
    (0..n_folds-1), e.g. the folds out-of-fold predictions were made by; default a seeded random assignment.
    """
    n, c = probs.shape[:2]
    if truths.shape != probs.shape or presence.shape != (n, c):
        raise SteelscanError(f"tune expects probs/truths [N, C, H, W] and presence [N, C], got {probs.shape}, "
                             f"{truths.shape}, {presence.shape}")
    if n < n_folds:
        raise SteelscanError(f"tuning with {n_folds} folds needs at least {n_folds} images, got {n}")
    gate_grid = tuple(gates) if base.gate in ("hard", "none") else (0.0,)
    if 0.0 not in gate_grid:
        gate_grid = (0.0, *gate_grid)
    components = (base.min_component,) if components is None else tuple(components)
    if folds is None:
        folds = np.random.default_rng(seed).permutation(n) % n_folds
    elif len(folds) != n or set(np.unique(folds)) != set(range(n_folds)):
        raise SteelscanError(f"tune: expected a fold 0..{n_folds - 1} for each of {n} images, every fold used, got "
                             f"{sorted(set(np.asarray(folds).tolist()))} for {len(folds)} images")
    before_img = np.array([[_pair_dice(binarize(probs[i].astype(np.float32), base, presence[i])[k], truths[i, k])
                            for k in range(c)] for i in range(n)])  # [N, C]
    before = before_img.mean(0)
    best = None
    for mc in components:
        found = [_search_class(probs, presence, truths, k, base, thresholds, areas, gate_grid, mc, folds, n_folds)
                 for k in range(c)]
        # a kept class keeps base values, which mean base's component size: only then may it be kept
        keeps = [mc == base.min_component and f["cv"].mean() <= before[k] for k, f in enumerate(found)]
        score = np.mean([before[k] if keep else f["cv"].mean() for k, (f, keep) in enumerate(zip(found, keeps))])
        if best is None or score > best[0]:
            best = (score, mc, found, keeps)
    _, mc, found, keeps = best
    chosen: dict[str, list] = {"threshold": [], "min_area": [], "gate_threshold": []}
    per_class = []
    img_scores = np.empty((n, c))
    for k, (f, keep) in enumerate(zip(found, keeps)):
        t, a, g = f["fit"]
        chosen["threshold"].append(base.threshold[k] if keep else float(thresholds[t]))
        chosen["min_area"].append(base.min_area[k] if keep else int(areas[a]))
        base_gate = base.gate_threshold[k] if base.gate == "hard" else 0.0  # "none" gates nothing
        chosen["gate_threshold"].append(base_gate if keep else float(gate_grid[g]))
        img_scores[:, k] = before_img[:, k] if keep else f["cv"]
        per_class.append({"dice_before": float(before[k]), "dice_fit": float(f["scores"][:, t, a, g].mean()),
                          "dice_cv": float(f["cv"].mean()), "kept": bool(keep),
                          "n_with_defect": int((truths[:, k].reshape(n, -1).max(1) > 0).sum())})
    empty_pairs = truths.reshape(n, c, -1).max(2) == 0  # [N, C]
    fold_rows = [{"fold": f, "n_images": int((folds == f).sum()), "dice": float(img_scores[folds == f].mean()),
                  "all_empty_dice": float(empty_pairs[folds == f].mean())} for f in range(n_folds)]
    report = {"n_images": n, "n_folds": n_folds, "per_class": per_class, "dice_before": float(before.mean()),
              "dice_fit": float(np.mean([r["dice_fit"] for r in per_class])),
              "dice_cv": float(np.mean([r["dice_cv"] for r in per_class])),
              "dice_chosen": float(img_scores.mean()),
              "all_empty_dice": float(empty_pairs.mean()), "folds": fold_rows,
              "folds_below_all_empty": sum(r["dice"] < r["all_empty_dice"] for r in fold_rows),
              "min_component": int(mc),
              "grid": {"thresholds": list(thresholds), "min_areas": list(areas), "gate_thresholds": list(gate_grid),
                       "min_components": list(components)}}
    gated = base.gate == "soft" or any(g > 0 for g in chosen["gate_threshold"])
    gate = base.gate if base.gate == "soft" else ("hard" if gated else "none")
    tuned = replace(base, threshold=tuple(chosen["threshold"]), min_area=tuple(chosen["min_area"]),
                    gate_threshold=tuple(chosen["gate_threshold"]), min_component=int(mc), gate=gate, tuned=report)
    return tuned, report


def _search_class(probs, presence, truths, k, base, thresholds, areas, gates, min_component, folds, n_folds) -> dict:
    """One class's grid scores [N, T, A, G], the best fit and its cross-validated per-image Dice."""
    p = probs[:, k].astype(np.float32)
    if base.gate == "soft":
        p = apply_gate(p[:, None], presence[:, k : k + 1], "soft", (0.0,))[:, 0]
    scores = class_pair_dice(p, truths[:, k], presence[:, k], thresholds, areas, gates, min_component)
    cv = np.empty(len(p))
    for f in range(n_folds):
        ft, fa, fg = _best(scores[folds != f])
        cv[folds == f] = scores[folds == f, ft, fa, fg]
    return {"scores": scores, "fit": _best(scores), "cv": cv}


def _pair_dice(pred: np.ndarray, truth: np.ndarray) -> float:
    p, t = pred.astype(bool), truth.astype(bool)
    s = p.sum() + t.sum()
    return 1.0 if s == 0 else float(2 * (p & t).sum() / s)
