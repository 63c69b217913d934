"""`steelscan synth {severstal,neu-cls,neu-det,neu-clean,coil} OUT --n N --seed S`: synthetic data in real formats;
`steelscan synth neu-coil ROOT OUT`: real NEU-DET images laid out as a coil."""

from __future__ import annotations

from enum import Enum
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from steelscan.core.errors import SteelscanError


class SynthKind(str, Enum):
    severstal = "severstal"
    neu_cls = "neu-cls"
    neu_det = "neu-det"
    neu_clean = "neu-clean"
    coil = "coil"
    neu_coil = "neu-coil"


def _parse_classes(kind: SynthKind, text: str | None) -> list | None:
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise SteelscanError(f"--classes expects a comma-separated list, got {text!r}")
    if kind is SynthKind.severstal:
        if not all(p.isdigit() for p in parts):
            raise SteelscanError(f"--classes for severstal expects ClassIds 1..4 like '2' or '1,2', got {text!r}")
        return [int(p) for p in parts]
    if kind in (SynthKind.coil, SynthKind.neu_coil):
        raise SteelscanError(f"--classes does not apply to {kind.value} (its defect mix is fixed)")
    return parts


def command(
    kind: SynthKind = typer.Argument(..., help="What to write: severstal, neu-cls, neu-det, neu-clean, coil or "
                                     "neu-coil."),
    paths: list[Path] = typer.Argument(..., metavar="[ROOT] OUT", help="Output folder (created; must be new or "
                                       "empty unless --overwrite); neu-coil: the data set ROOT, then OUT."),
    n: int = typer.Option(None, "--n", help="Images to write (default 100; coil: frames; neu-coil: at most N "
                          "source images, default all)."),
    seed: int = typer.Option(0, "--seed", help="Seed: the same seed writes the same bytes."),
    classes: str = typer.Option(
        None, "--classes",
        help="Only these classes. severstal: ClassIds, e.g. '2' (images from the real class combinations that "
             "hold one); neu-cls/neu-det: names or prefixes, e.g. 'Cr,In' (n split evenly over them); "
             "neu-clean: the NEU classes whose background styles to use.",
    ),
    first_number: int = typer.Option(1, "--first-number", help="NEU: first image number per class."),
    workers: int = typer.Option(None, "--workers", help="Worker processes (default: up to 2)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Write into a non-empty OUT, replacing generated files."),
    frame: str = typer.Option("1024x512", "--frame", help="coil: frame WIDTHxHEIGHT in px (across x along), "
                              "e.g. 1600x256 for Severstal-sized frames."),
    overlap: int = typer.Option(32, "--overlap", help="coil: rows shared by consecutive frames."),
    strip_width_mm: float = typer.Option(1250.0, "--strip-width-mm", help="coil: strip width (at 1.5 mm/px across)."),
    roll_diameter_m: float = typer.Option(0.6, "--roll-diameter-m", help="coil: the marking roll's diameter "
                                          "(roll marks repeat every pi x diameter)."),
    defects_per_metre: float = typer.Option(0.25, "--defects-per-metre", help="coil: random defects per metre."),
    split: str = typer.Option("val", "--split", help="neu-coil: the split of ROOT to lay out (train, val, test, "
                              "all); val is what `steelscan evaluate neu-det --split val` measures."),
    per_frame: int = typer.Option(8, "--per-frame", help="neu-coil: images side by side per frame."),
    order: str = typer.Option("interleaved", "--order", help="neu-coil: 'interleaved' (dealt round-robin by class: "
                              "no two images of one class touch) or 'name' (natural name order)."),
) -> None:
    """Write synthetic steel strip data in exactly the real on-disk formats.

    severstal: OUT/train_images/*.jpg (1600x256) + OUT/train.csv (Kaggle RLE), real class mix, ~47% defect-free.

    neu-cls: OUT/Cr_1.bmp ... (200x200 BMP), balanced over the six classes.

    neu-det: OUT/IMAGES/crazing_1.jpg ... + OUT/ANNOTATIONS/crazing_1.xml ... (Pascal VOC).

    neu-clean: OUT/clean_1.bmp ... (200x200 BMP), defect-free NEU-like texture (the 2-stage gate's negatives).

    coil: OUT/frames/000000.png ... (--frame, default 1024 across x 512 along, --overlap 32 px) + manifest.yaml +
    defects_truth.json.

    neu-coil ROOT OUT: real NEU-DET images (ROOT's --split, default val) laid out as a coil, --per-frame side by
    side (8 x 200 px = 1600 x 200 px frames, 0.5 mm/px): frames/ + manifest.yaml + defects_truth.json (the
    boxes in coil px, and each source image's offset for `steelscan evaluate-coil --baseline-model`).
    """
    from steelscan.data.synthetic import (
        write_coil, write_neu_clean, write_neu_cls, write_neu_coil, write_neu_det, write_severstal,
    )

    wanted = "ROOT OUT" if kind is SynthKind.neu_coil else "OUT"
    if len(paths) != len(wanted.split()):
        raise SteelscanError(f"synth {kind.value} expects {wanted}, got {len(paths)} path(s): "
                             f"{' '.join(map(str, paths))}")
    out = paths[-1]
    if n is not None and n <= 0:
        raise SteelscanError(f"--n must be a positive integer, got {n}")
    chosen = _parse_classes(kind, classes)
    console = Console(stderr=True)
    with Progress(TextColumn(f"synth {kind.value}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=True) as bar:
        task = bar.add_task("", total=None if kind is SynthKind.neu_coil else n or 100)

        def advance(k: int) -> None:
            bar.advance(task, k)

        if kind is SynthKind.neu_coil:
            summary = write_neu_coil(paths[0], out, split, per_frame, limit=n, overwrite=overwrite,
                                     order=order, progress=advance)
            typer.echo(summary.line())
            return
        n = n or 100
        common = {"overwrite": overwrite, "workers": workers, "progress": advance}
        if kind is SynthKind.severstal:
            summary = write_severstal(out, n, seed, classes=chosen, **common)
        elif kind is SynthKind.neu_cls:
            summary = write_neu_cls(out, n, seed, classes=chosen, first_number=first_number, **common)
        elif kind is SynthKind.neu_det:
            summary = write_neu_det(out, n, seed, classes=chosen, first_number=first_number, **common)
        elif kind is SynthKind.neu_clean:
            summary = write_neu_clean(out, n, seed, styles=chosen, first_number=first_number, **common)
        else:
            w, sep, h = frame.lower().partition("x")
            if not sep or not w.isdigit() or not h.isdigit():
                raise SteelscanError(f"--frame expects WIDTHxHEIGHT in px, e.g. 1600x256, got {frame!r}")
            summary = write_coil(out, n, seed, frame_width=int(w), frame_height=int(h), frame_overlap=overlap,
                                 strip_width_mm=strip_width_mm, roll_diameter_m=roll_diameter_m,
                                 defects_per_metre=defects_per_metre, **common)
    typer.echo(summary.line())
