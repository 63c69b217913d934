"""`steelscan classify IMAGES_OR_DIR --model M`."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from steelscan.cli._common import setup_logging


def command(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or folders of images"),
    model: str = typer.Option("neu-cls", "--model", "-m", help="Run folder, checkpoint file, built-in name or exported .onnx artifact"),
    csv_out: Path = typer.Option(None, "--csv", help="Write path,class,probability rows here"),
    json_out: Path = typer.Option(None, "--json", help="Write the predictions as JSON here"),
    tta: bool = typer.Option(None, "--tta/--no-tta", help="Flip TTA (default: as the model was evaluated)"),
    batch_size: int = typer.Option(64, "--batch-size", min=1),
    runtime: str = typer.Option("auto", "--runtime", help="auto (a checkpoint on PyTorch, an .onnx on ONNX Runtime), "
                                "onnx, openvino or openvino-bf16 (pip install 'steelscan[openvino]'; bf16 pays on "
                                "CPUs with AMX / AVX512-bf16); a checkpoint is exported for it first"),
) -> None:
    """Classify images: prints a class and a probability per image.

    Unreadable files, decompression bombs and images below the model's minimum size are skipped with a logged
    warning; images of another size are resized to the model's input as in training; the rest are classified.
    """
    from steelscan.deploy.inputs import collect_images, min_side_of, read_images
    from steelscan.deploy.predictors.factory import load_on_runtime

    setup_logging()
    files = collect_images(inputs)  # cheap checks first: a typo in a path should not wait for a model
    predictor = load_on_runtime(model, runtime, task="classification", tta=tta, batch_size=batch_size)
    meta = predictor.meta
    paths, images, skipped = read_images(files, channels=meta.in_chans, min_side=min_side_of(meta))  # 1x1: skipped
    probs = predictor.predict(images)
    names = meta.class_names
    rows = [{"path": str(p), "class": names[int(pr.argmax())], "probability": float(pr.max())} for p, pr in zip(paths, probs)]
    table = Table("image", "class", "probability")
    for r in rows:
        table.add_row(Path(r["path"]).name, r["class"], f"{r['probability']:.4f}")
    Console().print(table)
    if skipped:
        Console(stderr=True).print(f"[yellow]skipped {len(skipped)} file(s)[/]: " + "; ".join(f"{p.name} ({why})" for p, why in skipped))
    if csv_out:
        with open(csv_out, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["path", "class", "probability"])
            w.writeheader()
            w.writerows(rows)
    if json_out:
        Path(json_out).write_text(json.dumps({"model": str(model), "predictions": rows,
                                              "skipped": [{"path": str(p), "reason": why} for p, why in skipped]}, indent=2))
