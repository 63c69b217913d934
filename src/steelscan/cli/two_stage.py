"""`steelscan benchmark two-stage -d DETECTOR [-g GATE] (--defective DIR [--clean DIR] | --severstal DIR) [--json OUT]`.

Does the gate of Wang 2021 earn its place? One table: time per image, mAP@0.5 and recall without and with
the gate on the same images, the share skipped, and the gate's own image-level recall and precision.
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from steelscan.cli._common import setup_logging
from steelscan.core.errors import SteelscanError


def _pct(v) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _num(v, fmt: str = ".3f") -> str:
    return "-" if v is None else format(v, fmt)


def _delta(lost) -> str:
    return "-" if lost is None else f"{0.0 - lost:+.3f}"  # the gate can raise mAP: it skips false positives too


def command(
    detector: str = typer.Option(..., "--detector", "-d", help="Detector: run folder, checkpoint or built-in name"),
    gate: str = typer.Option(None, "--gate", "-g", help="Binary gate classifier (default: the detector's "
                             "two_stage.gate from its config)"),
    gate_threshold: float = typer.Option(None, "--gate-threshold", min=0.0, max=1.0,
                                         help="Pass images with P(defect) >= this (default: the detector's, 0.3)"),
    defective: Path = typer.Option(None, "--defective", help="NEU-DET folder (IMAGES/ + ANNOTATIONS/)"),
    clean: Path = typer.Option(None, "--clean", help="Folder of defect-free images (`steelscan synth neu-clean`)"),
    severstal: Path = typer.Option(None, "--severstal", help="Kaggle-layout Severstal folder: each 1600x256 image "
                                   "becomes four 400x256 tiles with boxes from its masks"),
    split: str = typer.Option("val", "--split", help="NEU: 'val' (the training rule's validation images) or 'all'"),
    limit: int = typer.Option(None, "--limit", min=1, help="Severstal: the first N images only"),
    repeats: int = typer.Option(3, "--repeats", min=1, help="Time each path this many times, keep the best"),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    threads: int = typer.Option(None, "--threads", min=1, help="torch threads (default: torch's own)"),
    json_out: Path = typer.Option(Path("runs/two_stage.json"), "--json", help="Write the results as JSON here"),
) -> None:
    """Detector alone vs gate + detector on a labelled mix of defective and defect-free images."""
    import torch

    from steelscan.data.classes import SEVERSTAL_CLASSES
    from steelscan.tasks.detection.data import load_clean_images
    from steelscan.data.severstal import SeverstalDataset
    from steelscan.deploy.predictors import load_predictor
    from steelscan.engine.runs import write_json
    from steelscan.two_stage import defect_column, evaluate_two_stage, gate_settings, labelled_mix, severstal_tiles

    setup_logging()
    if (defective is None) == (severstal is None):
        raise SteelscanError("expected exactly one of --defective (NEU-DET) or --severstal, got "
                             f"{'both' if defective else 'neither'}")
    if threads:
        torch.set_num_threads(threads)
    det = load_predictor(detector)
    det_meta = det.meta
    if det_meta.task != "detection":
        raise SteelscanError(f"--detector needs a detection model, got a {det_meta.task} model from {detector}")
    gate_ref, threshold = gate_settings(det_meta, gate, gate_threshold)
    if gate_ref is None:
        raise SteelscanError("no gate: pass --gate (a binary classifier) or train the detector with two_stage.gate set")
    gate_model = load_predictor(gate_ref)
    defect_column(gate_model.meta)
    if severstal is not None:
        samples = severstal_tiles(SeverstalDataset.from_root(severstal), limit=limit)
        samples += load_clean_images(clean) if clean is not None else []
        truth_names, source = list(SEVERSTAL_CLASSES), {"severstal": str(severstal), "tiles": "4 x 400x256"}
    else:
        samples = labelled_mix(defective, clean, split)
        truth_names, source = list(det_meta.class_names), {"defective": str(defective), "split": split}
    r = evaluate_two_stage(gate_model, det, samples, threshold, batch_size=batch_size, repeats=repeats,
                           class_names=truth_names)
    classes_match = truth_names == list(det_meta.class_names)
    r.update(detector=str(detector), gate_model=str(gate_ref), data={**source, "clean": str(clean) if clean else None},
             classes_match=classes_match)

    w, g, t = r["without_gate"], r["with_gate"], r["time"]
    table = Table("", "detector alone", "gate + detector", "change",
                  title=f"2-stage: gate P(defect) >= {threshold:g} on {r['n_images']} images "
                        f"({r['n_defective']} defective, {r['n_clean']} clean)")
    table.add_row("ms / image", _num(t["ms_per_image_without_gate"], ".1f"), _num(t["ms_per_image_with_gate"], ".1f"),
                  f"{_pct(t['time_saved_share'])} saved (x{_num(t['speedup'], '.2f')})")
    table.add_row("images skipped", "0%", _pct(r["skipped_share"]),
                  f"break-even {_pct(t['break_even_skipped_share'])}")
    s = f"recall (score >= {r['score_threshold']:g}, IoU 0.5)"
    table.add_row(s, _num(w["recall"]), _num(g["recall"]), _delta(r["recall_lost"]))
    table.add_row("recall, any class", _num(w["recall_any_class"]), _num(g["recall_any_class"]),
                  _delta(r["recall_any_class_lost"]))
    table.add_row("mAP@0.5", _num(w["map50"]), _num(g["map50"]), _delta(r["map50_lost"]))
    gate_row = r["gate"]
    table.add_row("gate recall / precision (images)", "", f"{_num(gate_row['recall'])} / {_num(gate_row['precision'])}",
                  f"{gate_row['fn']} defective skipped, {gate_row['fp']} clean passed")
    Console().print(table)
    if not classes_match:
        Console(stderr=True).print("[yellow]the detector's classes are not the data's: read 'recall, any class'; "
                                   "class-aware recall and mAP compare different label sets[/]")
    json_out.parent.mkdir(parents=True, exist_ok=True)
    write_json(json_out, r)
