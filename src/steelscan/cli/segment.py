"""`steelscan segment IMAGES_OR_DIR --model M [--out DIR] [--submission OUT.csv]`."""

from __future__ import annotations

import csv
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from steelscan.cli._common import setup_logging


def write_submission(path: Path, rows: list[tuple[str, list]]) -> None:
    """Kaggle's submission CSV: ImageId,ClassId,EncodedPixels, one row per image and class (empty = no defect)."""
    from steelscan.data.rle import rle_encode

    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["ImageId", "ClassId", "EncodedPixels"])
        for image_id, masks in rows:
            for k, m in enumerate(masks):
                w.writerow([image_id, k + 1, rle_encode(m)])
    tmp.replace(path)  # a killed run never leaves half a submission


def command(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or folders of images (e.g. train_images/)"),
    model: list[str] = typer.Option(..., "--model", "-m", help="Run folder, checkpoint or built-in name (e.g. "
                                    "severstal); repeat it to mean-average an ensemble (the first model's "
                                    "post-processing applies)"),
    out: Path = typer.Option(Path("out/segment"), "--out", help="Folder for masks/ and overlays/ (PNG)"),
    submission: Path = typer.Option(None, "--submission", help="Also write Kaggle's submission CSV here"),
    batch_size: int = typer.Option(4, "--batch-size", min=1),
) -> None:
    """Segment strips with the model's saved (tuned) post-processing.

    Writes masks/<name>.png (one byte per pixel, bit k set where class k+1 is present, so overlapping classes
    survive) and overlays/<name>.png, and prints each image's defect area per class in pixels.
    """
    import cv2
    import numpy as np

    from steelscan.evaluate_segmentation import segment_images
    from steelscan.predict import collect_images, read_images
    from steelscan.runs import load_checkpoint
    from steelscan.segmentation_plots import overlay

    setup_logging()
    files = collect_images(inputs)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out expects a folder, got the file {out}")
    if submission is not None and submission.is_dir():
        raise ValueError(f"--submission expects a CSV file path, got the folder {submission}")
    members = [load_checkpoint(m) for m in model]
    for name, (_, mt) in zip(model, members):
        if mt.get("task") != "segmentation":
            raise ValueError(f"segment needs segmentation models, got a {mt.get('task')} model from {name}")
        if mt["class_names"] != members[0][1]["class_names"]:
            raise ValueError(f"ensemble members must share class names: {model[0]} has {members[0][1]['class_names']}, "
                             f"{name} has {mt['class_names']}")
    (net, meta), ensemble = members[0], members[1:]
    paths, images, skipped = read_images(files, shape=None)
    by_shape: dict[tuple, list[int]] = {}
    for i, im in enumerate(images):  # batches need one size; strips from one camera share it
        by_shape.setdefault(im.shape, []).append(i)
    masks: list = [None] * len(images)
    for idx in by_shape.values():
        for i, m in zip(idx, segment_images(net, meta, [images[i] for i in idx], batch_size, ensemble=ensemble)[0]):
            masks[i] = m
    (out / "masks").mkdir(parents=True, exist_ok=True)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    names = meta["class_names"]
    title = " + ".join(model) + (" (mean ensemble)" if ensemble else "")
    table = Table("image", *[f"class {n} px" for n in names], title=f"{title}: defect area per class")
    for path, image, m in zip(paths, images, masks):
        bits = np.zeros(m.shape[1:], np.uint8)
        for k in range(m.shape[0]):
            bits |= (m[k] > 0).astype(np.uint8) << k
        cv2.imwrite(str(out / "masks" / f"{path.stem}.png"), bits)
        cv2.imwrite(str(out / "overlays" / f"{path.stem}.png"), overlay(image, m))
        table.add_row(path.name, *[str(int(m[k].sum())) for k in range(m.shape[0])])
    con = Console()
    con.print(table)
    if skipped:
        Console(stderr=True).print(f"[yellow]skipped {len(skipped)} file(s)[/]: "
                                   + "; ".join(f"{p.name} ({why})" for p, why in skipped))
    if submission is not None:
        submission.parent.mkdir(parents=True, exist_ok=True)
        write_submission(submission, [(p.name, m) for p, m in zip(paths, masks)])
        con.print(f"submission: {submission}")
    con.print(f"masks and overlays: {out}")
