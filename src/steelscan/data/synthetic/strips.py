"""Synthetic Severstal-style images: 256 x 1600 line-scan strips with class 1-4 defect masks.

Conventions (as Kaggle's): the image is uint8 (256, 1600); rows run along the rolling direction (streaks
and scratches are vertical), columns across the strip; some images show the dark background beyond a strip
edge. Masks are uint8 (4, 256, 1600) of {0, 1}; channel k is ClassId k + 1.
Class sets per image follow the real training set's combinations (`SEVERSTAL_CLASS_SETS`), so about 47%
of the images are defect-free and ~6% hold two classes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import cv2
import numpy as np

from steelscan.data.classes import SEVERSTAL_FULL_SET, SEVERSTAL_SHAPE
from steelscan.data.synthetic.defects import SEVERSTAL_DRAWERS, draw_scratch
from steelscan.data.synthetic.texture import StripTexture, finish
from steelscan.core.errors import SteelscanError

# Images per class combination in Kaggle's 12,568-image training set (sums: 897 / 247 / 5150 / 801 per
# class, 5902 defect-free). The empty tuple is "defect-free".
SEVERSTAL_CLASS_SETS: dict[tuple[int, ...], int] = {
    (): SEVERSTAL_FULL_SET["n_defect_free"],
    (1,): 769,
    (2,): 195,
    (3,): 4759,
    (4,): 516,
    (3, 4): 284,
    (1, 3): 91,
    (1, 2): 35,
    (2, 3): 14,
    (2, 4): 1,
    (1, 2, 3): 2,
}


def class_sets_for(classes: Sequence[int] | None) -> dict[tuple[int, ...], float]:
    """The real combination weights, restricted to combinations holding at least one of `classes`."""
    if classes is None:
        return dict(SEVERSTAL_CLASS_SETS)
    bad = [c for c in classes if c not in (1, 2, 3, 4)]
    if bad or not classes:
        raise SteelscanError(f"Severstal classes must be among 1, 2, 3, 4, got {list(classes)}")
    return {k: v for k, v in SEVERSTAL_CLASS_SETS.items() if set(k) & set(classes)}


def draw_class_set(rng: np.random.Generator, class_sets: Mapping[tuple[int, ...], float]) -> tuple[int, ...]:
    keys = list(class_sets)
    p = np.array([class_sets[k] for k in keys], dtype=float)
    return tuple(keys[int(rng.choice(len(keys), p=p / p.sum()))])


def _region_size(cls: int, rng: np.random.Generator, strip_w: int) -> tuple[int, int]:
    """(height, width) of one defect region; heights above 256 run off the image's top and bottom."""
    if cls == 1:
        h, w = rng.uniform(26, 118), rng.uniform(22, 88)
    elif cls == 2:
        h, w = (rng.uniform(60, 256) if rng.random() < 0.3 else 300.0), rng.uniform(10, 26)
    elif cls == 3:
        w = np.clip(rng.lognormal(np.log(44), 1.25), 10, 900)
        # Along the rolling direction: wide regions run the full image height, short ones stay narrow.
        h = 320.0 if (rng.random() < 0.55 or w > 150) else rng.uniform(40, 256)
        w = min(w, 1.5 * h)
    else:
        h = rng.uniform(120, 320)
        w = np.clip(rng.lognormal(np.log(230), 0.6), 80, 1000)
    return int(h), int(min(w, strip_w))


def _n_regions(cls: int, rng: np.random.Generator) -> int:
    lam = {1: 1.6, 2: 0.3, 3: 0.9, 4: 0.35}[cls]
    return 1 + int(rng.poisson(lam))


def make_severstal_image(
    rng: np.random.Generator,
    classes: Sequence[int] | None = None,
    *,
    class_sets: Mapping[tuple[int, ...], float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic strip image and its masks.

    classes: the ClassIds to draw (empty = defect-free); default: drawn from `class_sets` (default: the
    real training set's combinations). Returns (image uint8 (256, 1600), masks uint8 (4, 256, 1600)).
    """
    H, W = SEVERSTAL_SHAPE
    if classes is None:
        classes = draw_class_set(rng, class_sets or SEVERSTAL_CLASS_SETS)
    left = right = None
    edge = rng.random()
    if edge < 0.18:  # dark background beyond the strip edge, as on ~1 in 5 real images
        right = int(rng.uniform(500, 1560))
    elif edge < 0.26:
        left = int(rng.uniform(20, 900))
    tex = StripTexture(W, rng, strip_left=left, strip_right=right)
    img = tex.render(0, H)
    masks = np.zeros((4, H, W), np.uint8)
    lo, hi = (left or 0) + 4, (right or W) - 4
    taken: list[tuple[int, int]] = []  # x intervals of regions drawn so far, per class below
    for cls in sorted(set(int(c) for c in classes)):
        mine: list[tuple[int, int]] = []
        n = _n_regions(cls, rng)
        for attempt in range(12 * n):
            if len(mine) >= n:
                break
            h, w = _region_size(cls, rng, hi - lo)
            if attempt >= 6 * n:  # crowded strip: shrink until it fits
                w = max(8, w // (2 + attempt // (2 * n)))
            x0 = int(rng.integers(lo, max(lo + 1, hi - w)))
            if any(x0 < b + 6 and a < x0 + w + 6 for a, b in taken):
                continue
            if h < H:  # a fifth of the smaller regions are cut by the image's top or bottom
                y0 = int(rng.integers(-int(0.3 * h), H - int(0.7 * h) + 1))
            else:
                y0 = int(rng.integers(H - h, 1))
            _draw_region(img, masks[cls - 1], cls, rng, x0, y0, h, w)
            mine.append((x0, x0 + w))
        taken += mine
    return finish(img), masks


def _draw_region(
    img: np.ndarray, mask: np.ndarray, cls: int, rng: np.random.Generator, x0: int, y0: int, h: int, w: int
) -> None:
    """Draw one region whose box may run off the image's top or bottom: draw on a reflected extension."""
    H = img.shape[0]
    a, b = max(0, y0), min(H, y0 + h)
    x1 = min(img.shape[1], x0 + w)
    inside = img[a:b, x0:x1]
    top, bottom = a - y0, y0 + h - b
    canvas = inside.copy()
    if top or bottom:
        canvas = cv2.copyMakeBorder(canvas, top, bottom, 0, 0, cv2.BORDER_REFLECT)
    if cls == 3:
        region = draw_scratch(canvas, rng, taper_top=not top, taper_bottom=not bottom)
    else:
        region = SEVERSTAL_DRAWERS[cls](canvas, rng)
    inside[...] = canvas[top : top + (b - a)]
    mask[a:b, x0:x1] |= region[top : top + (b - a)]
