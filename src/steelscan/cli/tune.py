"""`steelscan tune RUN --data PATH [--split val]`: search the post-processing and save it with the model."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from steelscan.cli._common import setup_logging
from steelscan.core.errors import ModelFileError


def command(
    run: Path = typer.Argument(..., help="Run folder or checkpoint file of a segmenter (it is updated in place)"),
    data: list[Path] = typer.Option(..., "--data", help="Segmentation folder(s): RLE CSV (Kaggle layout) or mask PNGs"),
    split: str = typer.Option("val", "--split", help="val/train/test: the folders' split as training made it; all: every image"),
    folds: int = typer.Option(5, "--folds", min=2, help="Cross-validation folds for the honest estimate"),
    gate: str = typer.Option(None, "--gate", help="none, hard or soft (default: the model's)"),
    min_component: int = typer.Option(None, "--min-component", min=0, help="Remove components below this (px); "
                                      "default: searched over 0, 10, 30, 100"),
    tta: bool = typer.Option(None, "--tta/--no-tta", help="Flip TTA (default: the model's)"),
) -> None:
    """Tune per-class thresholds and minimum areas by cross-validation; save them into the checkpoint.

    Per class: the pixel threshold, the minimum area and the hard-gate threshold that maximise the Kaggle Dice;
    for all classes the smallest component kept. A class keeps its current values unless the search beats them
    out of sample (CV); each fold's Dice is shown beside its all-empty Dice.
    """
    from dataclasses import replace

    import numpy as np

    from steelscan.deploy.predictors import SegmenterPredictor, default_postprocess
    from steelscan.postprocess import PostProcess
    from steelscan.engine.runs import BUILTIN_DIR, load_checkpoint, resolve_model, save_checkpoint
    from steelscan.tasks.segmentation.data import load_split_samples
    from steelscan.tune import MIN_COMPONENTS, tune_postprocess

    setup_logging()
    path = resolve_model(run)
    if path.resolve().parent == BUILTIN_DIR.resolve():
        raise ModelFileError(f"{run} is a built-in model; copy {path} to a folder of yours and tune the copy")
    net, meta = load_checkpoint(path)
    if meta.task != "segmentation":
        raise ModelFileError(f"tune needs a segmentation model, got a {meta.task} model from {run}")
    samples = load_split_samples(list(data), split, in_chans=meta.in_chans)
    base = PostProcess.from_dict(meta.postprocess) if meta.postprocess else default_postprocess(meta.num_classes)
    changes = {k: v for k, v in (("gate", gate), ("min_component", min_component), ("tta", tta)) if v is not None}
    base = replace(base, **changes)
    predictor = SegmenterPredictor.from_module(net, meta, tta=base.tta, probs_dtype=np.float16)
    found = predictor.predict([s.image for s in samples], masks=False)  # float16: the tuner holds them all
    probs, presence = found.probabilities, found.presence
    truths = np.stack([s.mask for s in samples])
    tuned, report = tune_postprocess(probs, presence, truths, base, n_folds=folds,
                                     components=None if min_component is not None else MIN_COMPONENTS)
    report["data"], report["split"] = [str(d) for d in data], split
    tuned = replace(tuned, tuned=report)
    save_checkpoint(path, net, meta.model_copy(update={"postprocess": tuned.as_dict()}))
    (path.parent / "tune.json").write_text(json.dumps(report, indent=2))
    table = Table("class", "threshold", "min area", "gate thr.", "Dice before", "Dice CV", "values", "images with defect",
                  title=f"tuned on {len(samples)} images ({split}), gate {tuned.gate}, TTA {tuned.tta}")
    for k, name in enumerate(meta.class_names):
        r = report["per_class"][k]
        table.add_row(name, f"{tuned.threshold[k]:.2f}", str(tuned.min_area[k]),
                      f"{tuned.gate_threshold[k]:.2f}" if tuned.gate == "hard" else "-",
                      f"{r['dice_before']:.4f}", f"{r['dice_cv']:.4f}", "kept" if r["kept"] else "searched",
                      str(r["n_with_defect"]))
    con = Console()
    con.print(table)
    con.print(f"Kaggle Dice: before {report['dice_before']:.4f}; search: CV {report['dice_cv']:.4f}, fit "
              f"{report['dice_fit']:.4f}; chosen values {report['dice_chosen']:.4f}; all-empty baseline "
              f"{report['all_empty_dice']:.4f}; smallest component kept {report['min_component']} px")
    folds_line = ", ".join(f"{r['dice']:.3f} ({r['all_empty_dice']:.3f})" for r in report["folds"])
    con.print(f"per fold, chosen values (all-empty): {folds_line}; below all-empty on "
              f"{report['folds_below_all_empty']} of {report['n_folds']} folds")
    con.print(f"saved into {path} (report: {path.parent / 'tune.json'})")
