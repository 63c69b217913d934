"""The seed's history of surface defect detectors, re-measured: `steelscan benchmark sdd-history`.

The seed quotes: visual inspection 70-80%, a rule-based If-Then table 50-85%, a probabilistic neural network
77%, an SVM 87-94%, a neural network 85%. Here the last four run on NEU-CLS with the hand-crafted texture
features of :mod:`steelscan.models.classical.features`, fitted on our train split, scored on our validation
split. The If-Then table is reported twice: with the literal min/max ranges and with 5-95% percentile ranges.

Split (:func:`neu_split`): validation = image numbers ``n % 5 == 4``, train = ``n % 5 in (1, 2, 3)``; numbers
divisible by 5 are held out elsewhere and never read. The rule uses the number only, so NEU-CLS and NEU-DET
split alike, and it is the rule of the project's default training config (``val_remainders=(4,)``).

ms/image = feature extraction (one image at a time, one thread, the validation images) + prediction (the
validation set as one batch, divided by its size).
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from steelscan.data.classes import NEU_CLASSES
from steelscan.data.neu import is_heldout, neu_split
from steelscan.data.neu import list_neu_cls, load_grey_image
from steelscan.core.errors import SteelscanError
from steelscan.models.classical import N_FEATURES, create_classical, extract_batch, extract_features

SPLIT_RULE = "val = image numbers n with n % 5 == 4; train = n % 5 in (1, 2, 3); n % 5 == 0 held out elsewhere"
DEFAULT_DATA = Path("../shared/data/neu-cls")
DEFAULT_JSON = Path("runs/sdd_history.json")
COLUMNS = ("method", "accuracy", "ms_per_image", "seed_figure")

# (key, method, seed figure, seed range as fractions, classifier name, classifier kwargs)
METHODS: tuple[tuple[str, str, str, tuple[float, float], str | None, dict[str, Any]], ...] = (
    ("visual", "Visual inspection (human)", "70-80%", (0.70, 0.80), None, {}),
    ("rule_table", "If-Then rule table (min/max)", "50-85%", (0.50, 0.85), "rule_table", {}),
    (
        "rule_table_p5_95",
        "If-Then rule table (5-95%)",
        "50-85%",
        (0.50, 0.85),
        "rule_table",
        {"percentiles": (5.0, 95.0)},
    ),
    ("pnn", "PNN (Parzen window)", "77%", (0.77, 0.77), "pnn", {}),
    ("svm", "SVM (RBF)", "87-94%", (0.87, 0.94), "svm", {}),
    ("mlp", "Neural network (MLP)", "85%", (0.85, 0.85), "mlp", {}),
)


def load_neu_cls_images(
    root: str | Path, per_class: int | None = None
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Grey images, labels (index into NEU_CLASSES) and image numbers of a NEU-CLS folder (any layout
    `list_neu_cls` reads). ``per_class`` keeps the first N images of each class by number (a quick subset);
    held-out numbers (divisible by 5) are skipped if a copy holds them.
    """
    if per_class is not None and per_class < 1:
        raise SteelscanError(f"expected per_class >= 1 or None (all images), got {per_class}")
    kept: dict[int, int] = {}
    images, labels, numbers = [], [], []
    for it in list_neu_cls(root):
        if is_heldout(it.number) or (per_class is not None and kept.get(it.label, 0) >= per_class):
            continue
        kept[it.label] = kept.get(it.label, 0) + 1
        images.append(load_grey_image(it.path, shape=None))
        labels.append(it.label)
        numbers.append(it.number)
    return images, np.asarray(labels, dtype=np.int64), np.asarray(numbers, dtype=np.int64)


def _extract_with_progress(images: list[np.ndarray], n_jobs: int, progress: Progress | None, what: str) -> np.ndarray:
    task = progress.add_task(f"features ({what})", total=len(images)) if progress else None
    parts = []
    for i in range(0, len(images), 128):
        parts.append(extract_batch(images[i : i + 128], n_jobs=n_jobs))
        if progress is not None and task is not None:
            progress.advance(task, len(parts[-1]))
    return np.concatenate(parts) if parts else np.empty((0, N_FEATURES), np.float32)


def _timed_features(images: list[np.ndarray], progress: Progress | None) -> tuple[np.ndarray, float]:
    # One image at a time on one thread: the latency of the feature step, as a line would see it.
    task = progress.add_task("features (val, timed)", total=len(images)) if progress else None
    rows, elapsed = [], 0.0
    for image in images:
        t0 = time.perf_counter()
        rows.append(extract_features(image))
        elapsed += time.perf_counter() - t0
        if progress is not None and task is not None:
            progress.advance(task)
    return np.stack(rows), 1e3 * elapsed / len(images)


def _write_json(path: Path, obj: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    tmp.replace(path)  # atomic: an interrupted run never leaves half a JSON


def run_sdd_history(
    data: str | Path = DEFAULT_DATA,
    json_out: str | Path | None = DEFAULT_JSON,
    seed: int = 0,
    per_class: int | None = None,
    n_jobs: int = -1,
    console: Console | None = None,
    show_progress: bool = True,
) -> dict:
    """Fit the four classical methods on NEU-CLS train, score them on val, print one table, write JSON.

    Returns the JSON object: ``rows`` (one per method, keys ``COLUMNS`` plus ``key``, ``seed_range``,
    ``feature_ms``, ``predict_ms``, ``fit_s``, ``details``), ``split``, ``features``, ``environment``.
    """
    started = time.perf_counter()
    console = console or Console()
    images, labels, numbers = load_neu_cls_images(data, per_class)
    is_val = np.array([neu_split(int(n)) == "val" for n in numbers])
    for name, mask in (("train", ~is_val), ("validation", is_val)):
        missing = sorted(set(range(len(NEU_CLASSES))) - set(labels[mask].tolist()))
        if missing:
            raise SteelscanError(
                f"the {name} split has no image of {[NEU_CLASSES[i] for i in missing]} in {data}: "
                f"use more images per class (got per_class={per_class})"
            )
    train_images = [im for im, v in zip(images, is_val) if not v]
    val_images = [im for im, v in zip(images, is_val) if v]
    y_train, y_val = labels[~is_val], labels[is_val]

    progress = Progress(console=Console(stderr=True), transient=True) if show_progress else None
    if progress is not None:
        progress.start()
    try:
        X_train = _extract_with_progress(train_images, n_jobs, progress, "train")
        X_val, feature_ms = _timed_features(val_images, progress)
        rows = []
        fit_task = progress.add_task("fitting", total=len(METHODS) - 1) if progress else None
        for key, method, seed_text, seed_range, name, kwargs in METHODS:
            row: dict[str, Any] = {"key": key, "method": method, "accuracy": None, "ms_per_image": None,
                                   "seed_figure": seed_text, "seed_range": list(seed_range),
                                   "feature_ms": None, "predict_ms": None, "fit_s": None, "details": {}}
            if name is not None:
                if progress is not None and fit_task is not None:
                    progress.update(fit_task, description=f"fitting {key}")
                row.update(_fit_and_score(name, kwargs, X_train, y_train, X_val, y_val, seed, n_jobs, feature_ms))
                if progress is not None and fit_task is not None:
                    progress.advance(fit_task)
            rows.append(row)
    finally:
        if progress is not None:
            progress.stop()

    result = {
        "benchmark": "sdd-history",
        "data": str(data),
        "seed": seed,
        "columns": list(COLUMNS),
        "rows": rows,
        "split": {"rule": SPLIT_RULE, "n_train": int((~is_val).sum()), "n_val": int(is_val.sum()),
                  "per_class": per_class},
        "features": {"n": N_FEATURES, "module": "steelscan.models.classical.features"},
        "timing": "ms_per_image = feature_ms (one image, one thread) + predict_ms (val set as one batch / n)",
        # The load average says whether other work shared the CPUs while the timings were taken.
        "environment": {"cpus": os.cpu_count(), "python": platform.python_version(),
                        "machine": platform.machine(), "load_average_1min": round(os.getloadavg()[0], 2)},
        "elapsed_s": round(time.perf_counter() - started, 2),
    }
    console.print(render_table(result))
    if json_out is not None:
        _write_json(Path(json_out), result)
        console.print(f"wrote {json_out}")
    return result


def _fit_and_score(
    name: str,
    kwargs: dict[str, Any],
    X_train: np.ndarray,
    y_train: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    seed: int,
    n_jobs: int,
    feature_ms: float,
) -> dict[str, Any]:
    kwargs = dict(kwargs)
    if name in ("pnn", "svm", "mlp"):
        kwargs["random_state"] = seed
    if name == "svm":
        kwargs["n_jobs"] = n_jobs
    model = create_classical(name, **kwargs)
    t0 = time.perf_counter()
    model.fit(X_train, y_train)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    pred = model.predict(X_val)
    predict_ms = 1e3 * (time.perf_counter() - t0) / len(X_val)
    details: dict[str, Any] = {}
    if name == "rule_table":
        details["tie_rate"] = round(model.tie_rate(X_val), 4)
        details["tie_break"] = model.tie_break
        alt = create_classical(name, **{**kwargs, "tie_break": "distance"}).fit(X_train, y_train)
        details["accuracy_tie_break_distance"] = round(float((alt.predict(X_val) == y_val).mean()), 4)
    elif name == "pnn":
        details["sigma"] = round(model.sigma_, 4)
        details["loo_accuracy"] = round(max(model.loo_scores_.values()), 4) if model.loo_scores_ else None
    elif name == "svm":
        details.update(model.best_params_)
        details["cv_accuracy"] = None if model.cv_accuracy_ is None else round(model.cv_accuracy_, 4)
    elif name == "mlp":
        details["hidden_layer_sizes"] = list(model.hidden_layer_sizes)
        details["alpha"] = model.alpha
    per_class = {NEU_CLASSES[c]: round(float((pred[y_val == c] == c).mean()), 4) for c in np.unique(y_val)}
    details["per_class_recall"] = per_class
    return {
        "accuracy": round(float((pred == y_val).mean()), 4),
        "ms_per_image": round(feature_ms + predict_ms, 3),
        "feature_ms": round(feature_ms, 3),
        "predict_ms": round(predict_ms, 4),
        "fit_s": round(fit_s, 2),
        "details": details,
    }


def render_table(result: dict) -> Table:
    """The one table: method, our validation accuracy, ms/image, the seed's figure."""
    split = result["split"]
    table = Table(
        title=f"SDD history on NEU-CLS: train {split['n_train']} / val {split['n_val']} images "
        f"({result['features']['n']} texture features)",
        caption=f"{split['rule']}. {result['timing']}.",
    )
    table.add_column("method")
    table.add_column("ours (val acc.)", justify="right")
    table.add_column("ms/image", justify="right")
    table.add_column("seed", justify="right")
    for row in result["rows"]:
        acc = "—" if row["accuracy"] is None else f"{100 * row['accuracy']:.1f}%"
        ms = "—" if row["ms_per_image"] is None else f"{row['ms_per_image']:.2f}"
        table.add_row(row["method"], acc, ms, row["seed_figure"])
    return table
