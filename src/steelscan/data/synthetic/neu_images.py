"""Synthetic NEU-style close-ups: 200 x 200 grey images of the six NEU classes, with their boxes.

Conventions: images are uint8 (200, 200); rows run along the rolling direction (inclusions are stretched
vertically, as in NEU). Boxes are float32 (M, 4) xyxy in 0-based pixel-edge coordinates (x1, y1 exclusive),
the convention of `steelscan.data.neu`; VOC files store them as xmin = x1 + 1, xmax = x2. Labels are int64
(M,) indices into NEU_CLASSES. Each box is the bounding rectangle of the pixels its defect changed, so it
always lies inside the image. Boxes per image and box sizes follow the real NEU-DET annotations per class.
"""

from __future__ import annotations

import cv2
import numpy as np

from steelscan.data.classes import NEU_CLASSES, NEU_IMAGE_SIZE
from steelscan.data.synthetic.defects import blob_region
from steelscan.data.synthetic.texture import F32, finish, lowres_noise
from steelscan.core.errors import SteelscanError

S = NEU_IMAGE_SIZE[0]

# Boxes per image (weights for 1, 2, 3, ... boxes), measured on the 1440 real NEU-DET annotations.
BOX_COUNTS = {
    "crazing": (34, 116, 75, 15),
    "inclusion": (40, 74, 55, 36, 18, 7, 3, 5, 2),
    "patches": (36, 67, 72, 34, 19, 9, 2, 1),
    "pitted_surface": (137, 73, 21, 8, 1),
    "rolled-in_scale": (56, 126, 48, 10),
    "scratches": (87, 86, 43, 18, 6),
}
# Box (width, height) 10th / 50th / 90th percentiles in pixels, from the same annotations.
BOX_SIZES = {
    "crazing": ((71, 125, 182), (46, 69, 111)),
    "inclusion": ((15, 25, 44), (30, 65, 190)),
    "patches": ((33, 52, 83), (33, 72, 153)),
    "pitted_surface": ((55, 125, 197), (115, 190, 199)),
    "rolled-in_scale": ((43, 68, 112), (35, 72, 131)),
    "scratches": ((13, 25, 194), (18, 133, 198)),
}
# Background: (grey level range, grain, grain cell px, mottling, vertical banding, gradient).
BACKGROUNDS = {
    "crazing": ((115, 175), 0.09, 2.5, 0.06, 0.03, 0.12),
    "inclusion": ((75, 125), 0.03, 1.5, 0.04, 0.06, 0.08),
    "patches": ((150, 225), 0.08, 2.0, 0.07, 0.04, 0.10),
    "pitted_surface": ((140, 235), 0.04, 1.5, 0.05, 0.04, 0.22),
    "rolled-in_scale": ((85, 135), 0.05, 2.0, 0.05, 0.04, 0.10),
    "scratches": ((55, 120), 0.04, 1.5, 0.05, 0.07, 0.25),
}
# Boxes of another class inside an image (NEU-DET has them, e.g. inclusions in scratch images).
EXTRA = {"scratches": ("inclusion", 0.15), "pitted_surface": ("patches", 0.15), "patches": ("inclusion", 0.12)}


def _lognormal(rng: np.random.Generator, p10: float, p50: float, p90: float) -> float:
    sigma = (np.log(p90) - np.log(p10)) / (2 * 1.2816)
    return float(rng.lognormal(np.log(p50), max(sigma, 0.05)))


def _box_size(name: str, rng: np.random.Generator) -> tuple[int, int]:
    """(height, width) of one defect's target box."""
    if name == "scratches":  # thin and long: 72% along the rolling direction (y), the rest across
        long, thin = _lognormal(rng, 75, 172, 199), _lognormal(rng, 12, 19, 34)
        h, w = (long, thin) if rng.random() < 0.72 else (thin, long)
    elif name == "pitted_surface" and rng.random() < 0.5:
        h, w = rng.uniform(185, 200), _lognormal(rng, *BOX_SIZES[name][0])
    else:
        (wp, hp) = BOX_SIZES[name]
        h, w = _lognormal(rng, *hp), _lognormal(rng, *wp)
    return int(np.clip(h, 8, S)), int(np.clip(w, 8, S))


def neu_background(name: str, rng: np.random.Generator) -> np.ndarray:
    """Float32 (200, 200) background in the style of one NEU class's photographs."""
    (lo, hi), grain, cell, mottle, banding, gradient = BACKGROUNDS[name]
    level = rng.uniform(lo, hi)
    rel = F32(grain) * lowres_noise(rng, (S, S), (cell, cell))
    rel += F32(grain * 0.5) * rng.standard_normal((S, S), dtype=F32)
    rel += F32(mottle * rng.uniform(0.5, 1.5)) * lowres_noise(rng, (S, S), (int(rng.integers(20, 60)),) * 2)
    bands = lowres_noise(rng, (1, S), (1, int(rng.integers(4, 30))))
    rel += F32(banding * rng.uniform(0.3, 1.5)) * (bands + F32(0.3) * lowres_noise(rng, (S, S), (60, 3)))
    ang = rng.uniform(0, 2 * np.pi)
    c = np.linspace(-1, 1, S, dtype=F32)
    ramp = np.cos(ang) * c[None, :] + np.sin(ang) * c[:, None]
    rel += F32(gradient * rng.uniform(0.2, 1.0)) * ramp
    if name == "rolled-in_scale":  # faint oblique grinding marks
        t = rng.uniform(0.3, 1.2)
        marks = lowres_noise(rng, (S * 2, S * 2), (1, 24))
        rot = cv2.getRotationMatrix2D((S, S), float(np.degrees(t)), 1.0)
        rel += F32(0.015) * cv2.warpAffine(marks, rot, (2 * S, 2 * S))[S // 2 : S // 2 + S, S // 2 : S // 2 + S]
    return F32(level) * (1 + rel)


# -- defect drawers ----------------------------------------------------------------------------------------
# A drawer `draw(h, w, rng) -> (dark, bright)` returns float32 layers of shape (h + 2M, w + 2M): the fraction
# to darken each pixel by and grey levels to add. The defect's geometry stays in the inner (h, w) box; the
# margin M holds its soft edges, so blurs are never cut straight at the box border.
M = 6


def _blank(h: int, w: int) -> np.ndarray:
    return np.zeros((h + 2 * M, w + 2 * M), np.uint8)


def _layer(canvas: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(canvas.astype(F32) / 255, (0, 0), sigma)


def _crazing(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, None]:
    """A network of short, fine, dark cracks (random walks, mostly across the rolling direction)."""
    n = max(4, int(h * w / rng.uniform(150, 350)))
    steps = int(rng.integers(3, 7))
    start = np.stack([rng.uniform(M, M + w, n), rng.uniform(M, M + h, n)], 1)
    ang = rng.normal(0, 0.4, (n, 1)) + np.cumsum(rng.normal(0, 0.25, (n, steps)), 1)
    ang += np.pi * (rng.random((n, 1)) < 0.5)
    length = rng.uniform(2.0, 4.5, (n, steps))
    d = np.stack([np.cos(ang) * length, np.sin(ang) * length], 2)
    pts = np.concatenate([start[:, None], start[:, None] + np.cumsum(d, 1)], 1)
    pts[..., 0] = np.clip(pts[..., 0], M, M + w - 1)
    pts[..., 1] = np.clip(pts[..., 1], M, M + h - 1)
    canvas = _blank(h, w)
    cv2.polylines(canvas, list(np.round(pts).astype(np.int32)), False, 255, 1, cv2.LINE_AA)
    return _layer(canvas, 0.6) * F32(rng.uniform(0.3, 0.5)), None


def _inclusion(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, None]:
    """A chain of dark spots stretched along the rolling direction, sometimes joined into a streak."""
    canvas = _blank(h, w)
    y = rng.uniform(0, 6)
    while y < h - 2:
        ry = rng.uniform(3, max(4, min(h / 3, 25)))
        rx = max(1.0, rng.uniform(0.15, 0.4) * w)
        cx = np.clip(w / 2 + rng.normal(0, 0.12 * w), rx, w - rx)
        cy = min(y + ry, h - ry)
        cv2.ellipse(canvas, (int(M + cx), int(M + cy)), (int(rx), int(ry)), rng.uniform(-10, 10), 0, 360,
                    int(rng.integers(150, 256)), -1, cv2.LINE_AA)
        y += 2 * ry + rng.exponential(6)
    wgt = canvas.astype(F32) / 255 * np.clip(1 + F32(0.25) * lowres_noise(rng, canvas.shape, (6, 3)), 0.6, 1.3)
    wgt = cv2.GaussianBlur(wgt, (0, 0), rng.uniform(1.0, 2.0))
    if rng.random() < 0.4:  # a faint streak joining the spots: smear them along the rolling direction
        wgt = np.maximum(wgt, F32(0.5) * cv2.GaussianBlur(wgt, (0, 0), sigmaX=1.0, sigmaY=8.0))
    return np.clip(wgt, 0, 1) * F32(rng.uniform(0.2, 0.5)), None


def _patches(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, None]:
    """A large, soft-edged dark blotch."""
    region = np.zeros((h + 2 * M, w + 2 * M), np.uint8)
    region[M:-M, M:-M] = blob_region(rng, h, w, roughness=rng.uniform(1.0, 2.0))
    wgt = cv2.GaussianBlur(region.astype(F32), (0, 0), rng.uniform(1.5, 3.0))
    wgt *= 1 + F32(0.15) * lowres_noise(rng, region.shape, (8, 8))
    return np.clip(wgt, 0, 1) * F32(rng.uniform(0.35, 0.65)), None


def _pitted(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, None]:
    """Many small pits over an area, on a slightly darker, blotchy ground."""
    n = max(5, int(h * w / rng.uniform(40, 160)))
    canvas = _blank(h, w)
    for x, y, a, b, v in zip(rng.uniform(M + 1, M + w - 1, n), rng.uniform(M + 1, M + h - 1, n),
                             rng.integers(1, 3, n), rng.integers(1, 3, n), rng.integers(100, 256, n)):
        cv2.ellipse(canvas, (int(x), int(y)), (int(a), int(a + b - 1)), 0, 0, 360, int(v), -1, cv2.LINE_AA)
    ground = np.zeros(canvas.shape, F32)
    ground[M:-M, M:-M] = blob_region(rng, h, w, 1.0) * F32(rng.uniform(0.0, 0.1))
    ground = cv2.GaussianBlur(ground, (0, 0), 3.0)
    return np.clip(_layer(canvas, 0.6) * F32(rng.uniform(0.3, 0.55)) + ground, 0, 1), None


def _rolled_in_scale(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, None]:
    """Scattered dark flakes of scale pressed into the surface: short, mostly across the rolling direction."""
    n = int(rng.integers(8, 12 + h * w // 150))
    canvas = _blank(h, w)
    for _ in range(n):
        c = np.array([rng.uniform(M + 4, M + w - 4), rng.uniform(M + 3, M + h - 3)])
        k = int(rng.integers(4, 7))
        t = np.sort(rng.uniform(0, 2 * np.pi, k))
        tilt = rng.normal(0, 0.5)
        r = rng.uniform(1.0, 2.5, k) * (1 + 1.5 * np.abs(np.cos(t - tilt)))
        poly = np.round(c + np.stack([np.cos(t) * r, np.sin(t) * r], 1)).astype(np.int32)
        cv2.fillPoly(canvas, [poly], int(rng.integers(120, 256)), cv2.LINE_AA)
    return _layer(canvas, 0.7) * F32(rng.uniform(0.4, 0.6)), None


def _scratches(h: int, w: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A long thin line along the box's long side, usually bright (polished groove) with a soft glow."""
    vertical = h >= w
    long, short = (h, w) if vertical else (w, h)
    t = np.linspace(0, 1, 12)
    across = short / 2 + rng.uniform(-0.3, 0.3) * short * (2 * t - 1) + rng.normal(0, 0.3, 12).cumsum() * 0.3
    across = np.clip(across, 1, short - 2)
    along = t * (long - 1)
    pts = M + np.stack([across, along] if vertical else [along, across], 1)
    canvas = _blank(h, w)
    thick = int(rng.choice([1, 1, 2, 3]))
    cv2.polylines(canvas, [np.round(pts).astype(np.int32)], False, 255, thick, cv2.LINE_AA)
    vary = np.clip(0.75 + 0.35 * lowres_noise(rng, canvas.shape, (12, 12)), 0.2, 1.2)  # uneven along it
    core, glow = _layer(canvas, 0.9) * vary, _layer(canvas, rng.uniform(1.5, 3.0)) * vary
    zero = np.zeros_like(core)
    if rng.random() < 0.8:
        return zero, core * F32(rng.uniform(50, 110)) + glow * F32(rng.uniform(10, 40))
    return np.clip(core + 0.3 * glow, 0, 1) * F32(rng.uniform(0.3, 0.5)), zero


DRAWERS = {
    "crazing": _crazing,
    "inclusion": _inclusion,
    "patches": _patches,
    "pitted_surface": _pitted,
    "rolled-in_scale": _rolled_in_scale,
    "scratches": _scratches,
}


def _draw_box(img: np.ndarray, name: str, rng: np.random.Generator) -> list[float] | None:
    """Draw one `name` defect at a random place; its box is the bounding rectangle of the changed pixels."""
    h, w = _box_size(name, rng)
    y0, x0 = int(rng.integers(0, S - h + 1)), int(rng.integers(0, S - w + 1))
    dark, bright = DRAWERS[name](h, w, rng)
    # Paste the padded layers, clipped to the image.
    ya, xa = max(0, y0 - M), max(0, x0 - M)
    yb, xb = min(S, y0 + h + M), min(S, x0 + w + M)
    sl = (slice(ya - y0 + M, yb - y0 + M), slice(xa - x0 + M, xb - x0 + M))
    patch = img[ya:yb, xa:xb]
    before = patch.copy()
    patch *= 1 - dark[sl]
    if bright is not None:
        patch += bright[sl]
    diff = np.abs(patch - before)
    changed = diff > max(4.0, 0.1 * float(diff.max()))
    ys, xs = np.nonzero(changed.any(1))[0], np.nonzero(changed.any(0))[0]
    if len(ys) == 0 or ys[-1] - ys[0] < 1 or xs[-1] - xs[0] < 1:
        return None  # too faint to count as a defect: leave it as texture
    return [xa + xs[0], ya + ys[0], xa + xs[-1] + 1, ya + ys[-1] + 1]


def make_neu_image(class_name: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One synthetic NEU image of `class_name` (a NEU_CLASSES name).

    Returns (image uint8 (200, 200), boxes float32 (M, 4) xyxy 0-based exclusive, labels int64 (M,)), M >= 1.
    """
    if class_name not in NEU_CLASSES:
        raise SteelscanError(f"unknown NEU class {class_name!r}; expected one of {', '.join(NEU_CLASSES)}")
    img = neu_background(class_name, rng)
    weights = np.array(BOX_COUNTS[class_name], float)
    n = 1 + int(rng.choice(len(weights), p=weights / weights.sum()))
    names = [class_name] * n
    extra = EXTRA.get(class_name)
    if extra and rng.random() < extra[1]:
        names += [extra[0]] * int(rng.integers(1, 3))
    boxes, labels = [], []
    for name in names:
        box = _draw_box(img, name, rng)
        for _ in range(5):  # the image-level class must get at least one box
            if box is not None or name != class_name or boxes:
                break
            box = _draw_box(img, name, rng)
        if box is not None:
            boxes.append(box)
            labels.append(NEU_CLASSES.index(name))
    return finish(img), np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64)
