"""Experiments: one base recipe trained under several variants on the same data and budget, one table.

An experiment file is YAML with two keys: `base` (a full run config) and `variants` (name -> list of
`key=value` overrides, the same syntax as `--set`). Each variant is validated before any training starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import yaml  # noqa: E402
from pydantic import BaseModel, ConfigDict, ValidationError  # noqa: E402

from steelscan.config import RunConfig, config_from_dict, dump_config  # noqa: E402
from steelscan.core.errors import SteelscanError  # noqa: E402


class ExperimentFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    base: dict[str, Any]
    variants: dict[str, list[str]]
    # Published numbers to print beside ours (variant -> value of the table's headline metric), and their source.
    reference: dict[str, float] = {}
    reference_source: str = ""


def load_reference(path: str | Path) -> tuple[dict[str, float], str]:
    """(variant -> published value, source) of an experiment file; its variants were checked by load_experiment."""
    exp = ExperimentFile.model_validate(yaml.safe_load(Path(path).read_text()) or {})
    return exp.reference, exp.reference_source


def load_experiment(path: str | Path, overrides: list[str] = ()) -> tuple[dict[str, RunConfig], Path]:
    path = Path(path)
    if not path.is_file():
        raise SteelscanError(f"experiment file not found: {path}")
    try:
        exp = ExperimentFile.model_validate(yaml.safe_load(path.read_text()) or {})
    except (yaml.YAMLError, ValidationError) as exc:
        raise SteelscanError(f"invalid experiment file {path}: expected keys base and variants ({str(exc).splitlines()[0]})") from None
    if not exp.variants:
        raise SteelscanError(f"experiment file {path} lists no variants")
    if set(exp.reference) - set(exp.variants):
        raise SteelscanError(f"experiment file {path}: reference names variants it lacks: "
                             f"{sorted(set(exp.reference) - set(exp.variants))}; expected some of {list(exp.variants)}")
    source = f"{path} (base + variant)"
    return {name: config_from_dict(exp.base, [*overrides, *sets], source) for name, sets in exp.variants.items()}, path


def run_experiment(path: str | Path, out: str | Path, overrides: list[str] = (), log=print) -> dict:
    """Train every variant, then tabulate its scores: per-class recall, accuracy and macro-F1 (classification),
    per-class AP@0.5 and mAP (detection).

    Re-running the same command continues: a variant with a finished run folder in OUT/runs is read as it is,
    one with only a last.pt (killed, or out of session time) resumes from it, the rest train. So a long table
    (e.g. Wang 2021's, a budget per variant) can run in the background across sessions."""
    from steelscan.engine.fit import fit, resume_config

    configs, path = load_experiment(path, overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, cfg in configs.items():
        cfg = cfg.model_copy(update={"out_dir": str(out / "runs"), "name": name.replace(" ", "_")})
        run = _latest_run(out / "runs", cfg.name)
        if run is not None and (run / "metrics.json").is_file():
            log(f"variant {name}: done before ({run})")
        elif run is not None and (run / "last.pt").is_file():
            log(f"variant {name}: resuming {run}")
            run = fit(resume_config(run))
        else:
            log(f"variant {name}: training")
            run = fit(cfg)
        rows.append(_row(name, run, cfg))
    first = next(iter(configs.values()))
    task = "detection" if "map50" in rows[0] else "classification"  # a config may leave the task to the data
    result = {"experiment": str(path), "task": task, "limit_per_class": dict(first.data.limit_per_class),
              "rows": rows}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    if task == "classification":
        plot_recall(rows, out / "recall.png", title=f"{path.stem}: per-class recall on the validation split")
    return result


def _latest_run(runs: Path, name: str) -> Path | None:
    found = sorted(runs.glob(f"{name}-*")) if runs.is_dir() else []  # new_run_dir names end in a timestamp
    return found[-1] if found else None


def _row(name: str, run: Path, cfg: RunConfig) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    row = {"variant": name, "run": str(run), "train_minutes": m["train_minutes"],
           "training_minutes_excluding_eval": m.get("training_minutes_excluding_eval"),
           "epochs_run": m.get("epochs_run"), "config": dump_config(cfg)}
    if "map50" in m:  # detection
        return {**row, "map50": m["map50"], "ap50": m["per_class_ap50"]}
    return {**row, "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
            "accuracy_by_view": m.get("accuracy_by_view"),
            "recall": {c: v["recall"] for c, v in m["per_class"].items()}}


def plot_recall(rows: list[dict], out: Path, title: str) -> None:
    classes = list(rows[0]["recall"])
    width = 0.8 / len(rows)
    fig, ax = plt.subplots(figsize=(1.6 * len(classes) + 2, 4))
    for i, r in enumerate(rows):
        ax.bar(np.arange(len(classes)) + i * width, [100 * r["recall"][c] for c in classes], width, label=r["variant"])
    ax.set_xticks(np.arange(len(classes)) + 0.4 - width / 2, classes, rotation=20)
    ax.set_ylabel("recall %"); ax.set_ylim(0, 102); ax.set_title(title); ax.legend(fontsize=8, loc="lower right")  # noqa: E702
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


# The seed's loss study: one segmentation recipe, four mask losses, the same data and budget.
LOSS_STUDY = {
    "bce": ["loss.name=bce"],
    "weighted_bce": ["loss.name=weighted_bce"],
    "bce_dice": ["loss.name=bce_dice", "loss.bce_weight=0.75", "loss.dice_weight=0.25"],
    "focal": ["loss.name=focal"],
}


def run_loss_study(config: str | Path, out: str | Path, overrides: list[str] = (), test: Path | None = None,
                   log=print) -> dict:
    """Train `config` once per loss of LOSS_STUDY and score each three ways: on the validation split with the
    config's post-processing ("val"); with post-processing tuned on that split, as its cross-validated Dice
    ("val_tuned"); and, if given, on a test folder (Kaggle layout, every image) with the val-tuned values
    ("test"). Short CPU runs leave probabilities low, so fixed thresholds can hide what a loss learned."""
    from steelscan.config import load_config
    from steelscan.tasks.segmentation.data import load_split_samples
    from steelscan.deploy.predictors import SegmenterPredictor
    from steelscan.tasks.segmentation.evaluate import evaluate_segmentation_model
    from steelscan.postprocess import PostProcess
    from steelscan.engine.runs import load_checkpoint
    from steelscan.engine.fit import fit
    from steelscan.tune import tune_postprocess

    configs = {name: load_config(config, [*overrides, *sets]) for name, sets in LOSS_STUDY.items()}
    if any(c.task != "segmentation" for c in configs.values()):
        raise SteelscanError(f"the loss study needs a segmentation config (task: segmentation), got {config}")
    test_samples = load_split_samples([test], "all") if test is not None else []
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows, val_samples = [], None
    for name, cfg in configs.items():
        log(f"loss {name}: training")
        run = fit(cfg.model_copy(update={"out_dir": str(out / "runs"), "name": name}))
        row = {"loss": name, "run": str(run), "val": json.loads((run / "metrics.json").read_text())}
        row["val"].pop("history", None)
        net, meta = load_checkpoint(run)
        if val_samples is None:
            roots = [cfg.data.root, *([cfg.data.extra_root] if cfg.data.extra_root else [])]
            val_samples = load_split_samples(roots, "val", val_remainders=cfg.data.val_remainders)
        base = PostProcess.from_dict(meta.postprocess)
        found = SegmenterPredictor.from_module(net, meta, tta=False, probs_dtype=np.float16).predict(
            [s.image for s in val_samples], masks=False)
        tuned, report = tune_postprocess(found.probabilities, found.presence, np.stack([s.mask for s in val_samples]),
                                         base, n_folds=min(5, len(val_samples)))
        names = list(row["val"]["per_class_dice"])
        row["val_tuned"] = {"dice_kaggle": report["dice_cv"], "n_images": report["n_images"],
                            "per_class_dice": {c: r["dice_cv"] for c, r in zip(names, report["per_class"])},
                            "all_empty_dice": row["val"]["all_empty_dice"],
                            "all_empty_per_class_dice": row["val"]["all_empty_per_class_dice"],
                            "threshold": list(tuned.threshold), "min_area": list(tuned.min_area)}
        if test_samples:
            row["test"] = evaluate_segmentation_model(net, meta.model_copy(update={"postprocess": tuned.as_dict()}),
                                                      [s.image for s in test_samples], [s.mask for s in test_samples])
        rows.append(row)
    result = {"config": str(config), "overrides": list(overrides), "test": str(test) if test else None, "rows": rows}
    (out / "results.json").write_text(json.dumps(result, indent=2))
    plot_loss_study(rows, out / "losses.png", title=f"{Path(config).stem}: per-class Dice by loss")
    return result


PART_TITLES = {"val": "validation, config thresholds", "val_tuned": "validation, tuned (cross-validated)",
               "test": "test, val-tuned thresholds"}


def plot_loss_study(rows: list[dict], out: Path, title: str) -> None:
    parts = [p for p in ("val", "val_tuned", "test") if p in rows[0]]
    classes = list(rows[0]["val"]["per_class_dice"])
    labels = [f"class {c}" for c in classes] + ["Kaggle Dice"]
    width = 0.8 / len(rows)
    fig, axes = plt.subplots(1, len(parts), figsize=(6 * len(parts), 3.8), squeeze=False)
    for ax, part in zip(axes[0], parts):
        for i, r in enumerate(rows):
            m = r[part]
            ax.bar(np.arange(len(labels)) + i * width, [m["per_class_dice"][c] for c in classes] + [m["dice_kaggle"]],
                   width, label=r["loss"])
        base = rows[0][part]
        ax.plot(np.arange(len(labels)) + 0.4 - width / 2,
                [base["all_empty_per_class_dice"][c] for c in classes] + [base["all_empty_dice"]], "k_", ms=22,
                mew=2, label="all-empty baseline")
        ax.set_xticks(np.arange(len(labels)) + 0.4 - width / 2, labels)
        ax.set_ylim(0, 1.02); ax.set_ylabel("Dice"); ax.set_title(f"{PART_TITLES[part]} ({base['n_images']} images)")  # noqa: E702
        ax.legend(fontsize=7, loc="lower left")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
