"""`steelscan detect IMAGES_OR_DIR --model M [--score 0.3] [--draw OUT_DIR] [--json OUT]`."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from steelscan.cli._common import setup_logging


def command(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or folders of images"),
    model: str = typer.Option(..., "--model", "-m", help="Run folder or checkpoint of a detector"),
    score: float = typer.Option(None, "--score", min=0.0, max=1.0,
                                help="Keep detections scoring at least this (default: the model's own, e.g. 0.3)"),
    draw: Path = typer.Option(None, "--draw", help="Write each image with its boxes drawn here (PNG)"),
    json_out: Path = typer.Option(None, "--json", help="Write the detections as JSON here"),
    batch_size: int = typer.Option(8, "--batch-size", min=1),
) -> None:
    """Detect defects: prints class, score and box (x1 y1 x2 y2, pixels) per detection and image.

    Unreadable files are skipped with a logged warning; images of any size are accepted (the model resizes).
    """
    import cv2

    from steelscan.detection_plots import draw_detections
    from steelscan.evaluate_detection import detect_images
    from steelscan.predict import collect_images, read_images
    from steelscan.runs import load_checkpoint

    setup_logging()
    files = collect_images(inputs)  # cheap checks first: a typo in a path should not wait for a model
    if draw is not None and draw.exists() and not draw.is_dir():
        raise ValueError(f"--draw expects a folder, got the file {draw}")
    net, meta = load_checkpoint(model)
    if meta.get("task") != "detection":
        raise ValueError(f"detect needs a detection model, got a {meta.get('task')} model from {model}")
    threshold = float(meta.get("score_threshold", 0.3)) if score is None else score
    names = meta["class_names"]
    paths, images, skipped = read_images(files, shape=None)
    dets = detect_images(net, images, batch_size, threshold)
    table = Table("image", "class", "score", "x1", "y1", "x2", "y2", title=f"detections >= {threshold:g}")
    records = []
    for path, d in zip(paths, dets):
        boxes = [{"class": names[int(lab)], "score": float(s), "box": [round(float(v), 1) for v in b]}
                 for b, s, lab in zip(d["boxes"], d["scores"], d["labels"])]
        records.append({"path": str(path), "detections": boxes})
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
        Path(json_out).write_text(json.dumps({"model": str(model), "score_threshold": threshold, "predictions": records,
                                              "skipped": [{"path": str(p), "reason": why} for p, why in skipped]}, indent=2))
