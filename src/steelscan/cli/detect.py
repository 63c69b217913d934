"""`steelscan detect IMAGES_OR_DIR --model M [--score S] [--gate G --gate-threshold T] [--draw DIR] [--json OUT]`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from steelscan.cli._common import setup_logging
from steelscan.core.errors import ConfigError


def command(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or folders of images"),
    model: str = typer.Option(..., "--model", "-m", help="Run folder, checkpoint or built-in name of a detector"),
    score: float = typer.Option(None, "--score", min=0.0, max=1.0,
                                help="Keep detections scoring at least this (default: the model's own, e.g. 0.3)"),
    draw: Path = typer.Option(None, "--draw", help="Write each image with its boxes drawn here (PNG)"),
    json_out: Path = typer.Option(None, "--json", help="Write the detections as JSON here"),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
    gate: str = typer.Option(None, "--gate", help="Binary gate classifier (2-stage, Wang 2021); default: the "
                             "detector's own two_stage.gate from its config, if any"),
    gate_threshold: float = typer.Option(None, "--gate-threshold", min=0.0, max=1.0,
                                         help="Detect only images with P(defect) >= this (default: the model's, 0.3)"),
    no_gate: bool = typer.Option(False, "--no-gate", help="Detect every image even if the model names a gate"),
) -> None:
    """Detect defects: prints class, score and box (x1 y1 x2 y2, pixels) per detection and image.

    Unreadable files are skipped with a logged warning; images of any size are accepted (the model resizes).
    With a gate, images it judges clean are listed as skipped and never reach the detector.
    """
    import cv2

    from steelscan.deploy.inputs import collect_images, min_side_of, read_images
    from steelscan.deploy.predictors import load_predictor
    from steelscan.tasks.detection.plots import draw_detections
    from steelscan.two_stage import defect_column, gate_settings, two_stage_detect

    setup_logging()
    files = collect_images(inputs)  # cheap checks first: a typo in a path should not wait for a model
    if draw is not None and draw.exists() and not draw.is_dir():
        raise ConfigError(f"--draw expects a folder, got the file {draw}")
    detector = load_predictor(model, task="detection", score_threshold=score, batch_size=batch_size)
    meta = detector.meta
    threshold = detector.score_threshold
    names = meta.class_names
    gate_ref, gate_t = gate_settings(meta, gate, gate_threshold, no_gate)
    gate_model = load_predictor(gate_ref) if gate_ref else None
    if gate_model is not None:
        defect_column(gate_model.meta)  # a gate without a clean/defect class fails before any image is read
    paths, images, skipped = read_images(files, channels=meta.in_chans, min_side=min_side_of(meta))  # 1x1: skipped
    if gate_model is not None:
        staged = two_stage_detect(gate_model, detector, images, gate_t)
        dets, p_defect = staged.detections, staged.p_defect
    else:
        dets, p_defect = detector.predict(images), [None] * len(images)
    title = f"detections >= {threshold:g}" + (f", gate P(defect) >= {gate_t:g}" if gate_model is not None else "")
    table = Table("image", "class", "score", "x1", "y1", "x2", "y2", title=title)
    records = []
    for path, d, p in zip(paths, dets, p_defect):
        boxes = [{"class": names[int(lab)], "score": float(s), "box": [round(float(v), 1) for v in b]}
                 for b, s, lab in zip(d["boxes"], d["scores"], d["labels"])]
        record = {"path": str(path), "detections": boxes}
        if p is not None:
            record.update(p_defect=float(p), gate_passed=bool(p >= gate_t))
        records.append(record)
        if p is not None and p < gate_t:
            table.add_row(path.name, f"skipped by gate (P(defect) {p:.3f})", *[""] * 5)
            continue
        for r in boxes or [None]:
            cells = [r["class"], f"{r['score']:.3f}", *(f"{v:.1f}" for v in r["box"])] if r else ["-"] * 6
            table.add_row(path.name, *cells)
    Console().print(table)
    if skipped:
        Console(stderr=True).print(f"[yellow]skipped {len(skipped)} file(s)[/]: "
                                   + "; ".join(f"{p.name} ({why})" for p, why in skipped))
    if draw is not None:
        draw.mkdir(parents=True, exist_ok=True)
        for path, image, d in zip(paths, images, dets):
            cv2.imwrite(str(draw / f"{path.stem}.png"), draw_detections(image, d, names, threshold))
    if json_out:
        Path(json_out).write_text(json.dumps({
            "model": str(model), "score_threshold": threshold,
            "gate": str(gate_ref) if gate_model is not None else None, "gate_threshold": gate_t, "predictions": records,
            "skipped": [{"path": str(p), "reason": why} for p, why in skipped]}, indent=2))
