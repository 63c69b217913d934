"""`steelscan segment IMAGES_OR_DIR --model M [--out DIR] [--submission OUT.csv]`."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from steelscan.cli._common import setup_logging
from steelscan.core.errors import ConfigError, ModelFileError


def command(
    inputs: list[Path] = typer.Argument(..., help="Image files and/or folders of images (e.g. train_images/)"),
    model: list[str] = typer.Option(..., "--model", "-m", help="Run folder, checkpoint, built-in name (e.g. "
                                    "severstal) or .onnx artifact; repeat it to mean-average an ensemble (the first model's "
                                    "post-processing applies)"),
    out: Path = typer.Option(Path("out/segment"), "--out", help="Folder for masks/ and overlays/ (PNG)"),
    submission: Path = typer.Option(None, "--submission", help="Also write Kaggle's submission CSV here"),
    batch_size: int = typer.Option(4, "--batch-size", min=1),
) -> None:
    """Segment strips with the model's saved (tuned) post-processing.

    Writes masks/<name>.png (one byte per pixel, bit k set where class k+1 is present, so overlapping classes
    survive; 16-bit for 9-16 classes, one PNG per class beyond) and overlays/<name>.png, and prints each image's defect area per class in pixels.
    """
    import cv2
    import numpy as np

    from steelscan.deploy.inputs import collect_images, min_side_of, read_images
    from steelscan.deploy.predictors import group_by_shape, load_predictor
    from steelscan.postprocess import ensemble_mean
    from steelscan.tasks.segmentation.plots import overlay

    setup_logging()
    files = collect_images(inputs)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out expects a folder, got the file {out}")
    if submission is not None and submission.is_dir():
        raise ConfigError(f"--submission expects a CSV file path, got the folder {submission}")
    first = load_predictor(model[0], task="segmentation", batch_size=batch_size)
    ensemble = [load_predictor(m, task="segmentation", batch_size=batch_size, tta=first.tta) for m in model[1:]]
    for name, member in zip(model[1:], ensemble):
        if member.class_names != first.class_names:
            raise ModelFileError(f"ensemble members must share class names: {model[0]} has {list(first.class_names)}, "
                                 f"{name} has {list(member.class_names)}")
    meta = first.meta
    paths, images, skipped = read_images(files, channels=meta.in_chans, min_side=min_side_of(meta))  # 1x1: skipped
    masks: list = [None] * len(images)
    for idx in group_by_shape(images).values():  # batches need one size; strips from one camera share it
        group = [images[i] for i in idx]
        if ensemble:
            runs = [m.predict(group, masks=False) for m in [first, *ensemble]]
            found = first.binarize(ensemble_mean([r.probabilities for r in runs]),
                                   ensemble_mean([r.presence for r in runs]))
        else:
            found = first.predict(group).masks
        for i, m in zip(idx, found):
            masks[i] = m
    (out / "masks").mkdir(parents=True, exist_ok=True)
    (out / "overlays").mkdir(parents=True, exist_ok=True)
    names = meta.class_names
    title = " + ".join(model) + (" (mean ensemble)" if ensemble else "")
    table = Table("image", *[f"class {n} px" for n in names], title=f"{title}: defect area per class")
    for path, image, m in zip(paths, images, masks):
        if m.shape[0] <= 16:  # one PNG, bit k = class k (8-bit up to 8 classes, else 16-bit)
            dtype = np.uint8 if m.shape[0] <= 8 else np.uint16
            bits = np.zeros(m.shape[1:], dtype)
            for k in range(m.shape[0]):
                bits |= (m[k] > 0).astype(dtype) << k
            cv2.imwrite(str(out / "masks" / f"{path.stem}.png"), bits)
        else:  # more classes than bits: one 0/255 PNG per class
            for k, name in enumerate(names):
                cv2.imwrite(str(out / "masks" / f"{path.stem}_{name}.png"), (m[k] > 0).astype(np.uint8) * 255)
        cv2.imwrite(str(out / "overlays" / f"{path.stem}.png"), overlay(image, m))
        table.add_row(path.name, *[str(int(m[k].sum())) for k in range(m.shape[0])])
    con = Console()
    con.print(table)
    if skipped:
        Console(stderr=True).print(f"[yellow]skipped {len(skipped)} file(s)[/]: "
                                   + "; ".join(f"{p.name} ({why})" for p, why in skipped))
    if submission is not None:
        submission.parent.mkdir(parents=True, exist_ok=True)
        from steelscan.data.severstal import write_submission

        write_submission(submission, [(p.name, m) for p, m in zip(paths, masks)])
        con.print(f"submission: {submission}")
    con.print(f"masks and overlays: {out}")
