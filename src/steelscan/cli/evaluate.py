"""`steelscan evaluate MODEL --data PATH [--json OUT]`: classifiers on NEU-CLS, detectors on NEU-DET,
segmenters on Severstal (Kaggle layout)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from steelscan.cli._common import setup_logging


def command(
    model: str = typer.Argument(..., help="Run folder, checkpoint file or built-in name (e.g. neu-cls)"),
    data: Path = typer.Option(..., "--data", help="Data folder (NEU-CLS layout for classifiers, NEU-DET for detectors, Kaggle layout for segmenters)"),
    json_out: Path = typer.Option(None, "--json", help="Write the metrics JSON here"),
    tta: bool = typer.Option(None, "--tta/--no-tta", help="Flip TTA (default: as the model was trained)"),
    batch_size: int = typer.Option(None, "--batch-size", min=1, help="Default 64 (classifiers), 8 (detectors), 4 (segmenters)"),
    split: str = typer.Option("all", "--split", help="all images, or only our split (NEU: by image number; Severstal: crc32 of the id): train or val"),
) -> None:
    """Evaluate a model on a labelled data folder: accuracy, macro-F1, per-class numbers and ms/image
    (classifiers); mAP@0.5, mAP@[.5:.95], AP50 per class and ms/image (detectors)."""
    import torch

    from steelscan.data.classes import NEU_CLASSES
    from steelscan.data.neu import list_neu_cls
    from steelscan.metrics import classification_metrics
    from steelscan.predict import classify_batch, read_images
    from steelscan.runs import load_checkpoint

    setup_logging()
    if split not in ("all", "train", "val"):
        raise ValueError(f"--split expects all, train or val, got {split!r}")
    net, meta = load_checkpoint(model)
    if meta.get("task") == "detection":
        return _detection(net, meta, model, data, split, batch_size or 8, json_out)
    if meta.get("task") == "segmentation":
        return _segmentation(net, meta, model, data, split, batch_size or 4, json_out)
    if meta.get("task") != "classification":
        raise ValueError(f"evaluate supports classification, detection and segmentation models, got task {meta.get('task')!r}")
    batch_size = batch_size or 64
    items = list_neu_cls(data)
    items = _in_split(items, split)
    paths, images, skipped = read_images([it.path for it in items], shape=None)
    by_path = {it.path: it for it in items}
    binary = bool(meta.get("binary"))
    y_true = [1 if binary else by_path[p].label for p in paths]
    t0 = time.perf_counter()
    probs = classify_batch(net, meta, images, batch_size, tta)
    ms = 1000 * (time.perf_counter() - t0) / max(len(images), 1)
    names = meta["class_names"] if binary else list(NEU_CLASSES)
    m = classification_metrics(y_true, probs.argmax(1), class_names=names)
    out = {"task": "classification", "model": str(model), "data": str(data), "split": split, "accuracy": m["accuracy"],
           "macro_f1": m["macro_f1"], "per_class": m["per_class"], "n_images": m["n"],
           "ms_per_image": ms, "batch_size": batch_size, "threads": torch.get_num_threads(),
           "tta": bool(meta.get("tta")) if tta is None else tta, "confusion_matrix": m["confusion_matrix"],
           "skipped": [str(p) for p, _ in skipped]}
    table = Table("class", "precision", "recall", "F1", "n", title=f"{model} on {data} ({split})")
    for name, r in m["per_class"].items():
        table.add_row(name, f"{r['precision']:.4f}", f"{r['recall']:.4f}", f"{r['f1']:.4f}", str(r["support"]))
    _finish(table, f"accuracy {100 * m['accuracy']:.2f}%  macro-F1 {m['macro_f1']:.4f}  n={m['n']}  {ms:.2f} "
                   f"ms/image (batch {batch_size}, {torch.get_num_threads()} threads)", out, json_out)


def _detection(net, meta: dict, model: str, data: Path, split: str, batch_size: int, json_out: Path | None) -> None:
    """A detector on a NEU-DET folder; an annotation with no <object> counts as a clean image here."""
    from steelscan.data.neu import list_neu_det, load_neu_det_image
    from steelscan.evaluate_detection import detection_summary, evaluate_detection_model

    items = list_neu_det(data)
    items = _in_split(items, split)
    if not items:
        raise ValueError(f"no NEU-DET images in {data} for --split {split}")
    names = list(meta["class_names"])
    result = evaluate_detection_model(net, [load_neu_det_image(it) for it in items],
                                      [{"boxes": it.boxes, "labels": it.labels} for it in items], names, batch_size)
    out = {**detection_summary(result, names), "model": str(model), "data": str(data), "split": split}
    table = Table("class", "AP50", "AP50:95", "boxes", title=f"{model} on {data} ({split})")
    def fmt(v: float | None) -> str:  # None: no truth of that class
        return "n/a" if v is None else f"{v:.4f}"

    for name in names:
        table.add_row(name, fmt(out["per_class_ap50"][name]), fmt(out["per_class_ap50_95"][name]),
                      str(out["n_truth_per_class"][name]))
    _finish(table, f"mAP@0.5 {fmt(out['map50'])}  mAP@[.5:.95] {fmt(out['map50_95'])}  n={out['n_images']}  "
                   f"{out['ms_per_image']:.1f} ms/image (batch {batch_size}, {out['threads']} threads)", out, json_out)


def _segmentation(net, meta: dict, model: str, data: Path, split: str, batch_size: int, json_out: Path | None) -> None:
    """A segmenter on a Kaggle-layout folder, with its saved post-processing; the all-empty baseline beside."""
    from steelscan.cli.tune import load_severstal_split
    from steelscan.evaluate_segmentation import evaluate_segmentation_model

    samples = load_severstal_split([data], split)
    out = evaluate_segmentation_model(net, meta, [s.image for s in samples], [s.mask for s in samples],
                                      batch_size=batch_size)
    out.update(model=str(model), data=str(data), split=split)
    table = Table("class", "Dice (Kaggle)", "all-empty Dice", "pooled Dice", title=f"{model} on {data} ({split})")
    for name in meta["class_names"]:
        pooled = out["pooled_dice_per_class"][name]
        table.add_row(name, f"{out['per_class_dice'][name]:.4f}", f"{out['all_empty_per_class_dice'][name]:.4f}",
                      "n/a" if pooled != pooled else f"{pooled:.4f}")
    _finish(table, f"Kaggle Dice {out['dice_kaggle']:.4f} (all-empty baseline {out['all_empty_dice']:.4f})  "
                   f"n={out['n_images']}  {out['ms_per_image']:.1f} ms/image (batch {batch_size}, {out['threads']} "
                   "threads)", out, json_out)


def _finish(table: Table, line: str, out: dict, json_out: Path | None) -> None:
    con = Console()
    con.print(table)
    con.print(line)
    if json_out:
        Path(json_out).write_text(json.dumps(out, indent=2))


def _in_split(items: list, split: str) -> list:
    """NEU items of our split by image number; "all" keeps every image (e.g. an independent test folder)."""
    from steelscan.data.classification import is_heldout, neu_split

    if split == "all":
        return items
    return [it for it in items if not is_heldout(it.number) and neu_split(it.number) == split]
