"""Defect-free NEU-like close-ups (200 x 200 grey BMP): the negatives of the 2-stage gate (Wang 2021).

NEU has no defect-free image, so the gate's "clean" class is made here: the background of a NEU class's
photographs (grain, mottling, banding, lighting) with no defect drawn. Each image takes the style of a
random class, so the gate cannot learn "this style means clean". Written as OUT/clean_1.bmp ...;
`steelscan.tasks.detection.data.load_clean_images` and `data.clean_root` read such a folder.

Determinism as in `writers`: image `number` comes from `image_rng(seed, "neu-clean", number)` alone.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np

from steelscan.data.classes import NEU_CLASSES
from steelscan.data.synthetic.neu_images import neu_background
from steelscan.data.synthetic.texture import finish
from steelscan.data.synthetic.writers import (
    Progress, SynthSummary, check_args, image_rng, neu_class, parallel_map, prepare_out, write_bytes,
)
from steelscan.core.errors import SteelscanError


def neu_clean_image(seed: int, number: int, styles: Sequence[str] | None = None) -> tuple[np.ndarray, str]:
    """Clean image `number` for this seed: (uint8 (200, 200), the NEU class whose background style it has)."""
    rng = image_rng(seed, "neu-clean", number)
    names = [neu_class(s) for s in styles] if styles else list(NEU_CLASSES)
    style = names[int(rng.integers(len(names)))]
    return finish(neu_background(style, rng)), style


def _one(number: int, seed: int, out: Path, styles: Sequence[str] | None) -> str:
    image, style = neu_clean_image(seed, number, styles)
    write_bytes(out / f"clean_{number}.bmp", ".bmp", image)
    return style


def write_neu_clean(
    out: str | Path, n: int, seed: int = 0, *, styles: Sequence[str] | None = None, first_number: int = 1,
    overwrite: bool = False, workers: int | None = None, progress: Progress | None = None,
) -> SynthSummary:
    """Write n defect-free 200x200 BMPs OUT/clean_{first_number}.bmp ...; `styles` limits the background
    styles to these NEU classes (names or prefixes). per_class counts images by background style."""
    check_args(n, seed)
    if isinstance(first_number, bool) or not isinstance(first_number, int) or first_number < 1:
        raise SteelscanError(f"first_number must be a positive integer, got {first_number!r}")
    if styles is not None and not list(styles):
        raise SteelscanError("styles must name at least one NEU class, got an empty list")
    chosen = [neu_class(s) for s in styles] if styles else None  # validate before touching the disk
    t0 = time.perf_counter()
    out = prepare_out(out, ["clean_*.bmp"], overwrite)
    fn = partial(_one, seed=seed, out=out, styles=chosen)
    numbers = range(first_number, first_number + n)
    per_style = {c: 0 for c in (chosen or NEU_CLASSES)}
    for style in parallel_map(fn, numbers, n, workers, progress):
        per_style[style] += 1
    per_style = {f"{c} style": k for c, k in per_style.items() if k}
    return SynthSummary("neu-clean", out, n, per_style, n, time.perf_counter() - t0)
