"""Defect drawers for strip images (Severstal classes 1-4 and the coil's periodic roll mark).

Every drawer has the signature `draw(patch, rng) -> mask`: `patch` is a float32 view (grey levels 0..255) of
the region the defect occupies, changed in place; the returned uint8 {0, 1} mask of the patch's shape is the
defect's ground truth. Drawers change pixels only where the mask is 1, so the mask is exactly the drawn
region. Like Kaggle's hand-drawn polygons, the mask of a thin line or a cluster of pits is the region that
holds them (a few pixels of halo), not only the darkest pixels.
Rows run along the rolling direction, so scratches and streaks are near-vertical.
"""

from __future__ import annotations

import cv2
import numpy as np

from steelscan.data.synthetic.texture import F32, lowres_noise

# -- region shapes -----------------------------------------------------------------------------------------


def blob_region(rng: np.random.Generator, h: int, w: int, roughness: float = 1.0) -> np.ndarray:
    """An organic blob filling most of an (h, w) box: an ellipse with a noisy edge. uint8 {0, 1}."""
    yy = np.linspace(-1, 1, h, dtype=F32)[:, None]
    xx = np.linspace(-1, 1, w, dtype=F32)[None, :]
    d = np.sqrt(xx * xx + yy * yy)
    n = lowres_noise(rng, (h, w), (max(2, h // 5), max(2, w // 5)))
    n = np.clip(n + F32(0.12) * lowres_noise(rng, (h, w), (4, 4)), -1.5, 1.5)  # ragged at the fine scale too
    # Radius modulated by noise, bounded so the blob almost never touches (and is cut by) its box.
    mask = (d < F32(0.78) * (1 + F32(0.25 * min(roughness, 1.5) / 1.5) * n)).astype(np.uint8)
    mask = drop_specks(cv2.morphologyEx(mask, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8)))
    if not mask.any():
        mask[h // 4 : max(h // 4 + 1, 3 * h // 4), w // 4 : max(w // 4 + 1, 3 * w // 4)] = 1
    return mask


def drop_specks(mask: np.ndarray, keep: float = 0.05) -> np.ndarray:
    """Remove connected pieces smaller than `keep` x the largest one (label noise, not defects)."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    if n <= 2:
        return mask
    area = stats[1:, cv2.CC_STAT_AREA]
    good = np.concatenate([[0], (area >= keep * area.max()).astype(np.uint8)])
    return good[labels].astype(np.uint8)


def band_region(
    rng: np.random.Generator, h: int, w: int, taper_top: bool = True, taper_bottom: bool = True
) -> np.ndarray:
    """A band elongated along y (rolling direction) with wavy sides, filling an (h, w) box. uint8 {0, 1}.

    Ends are rounded unless told not to (an end that runs off the image is cut straight by the image edge).
    """
    ys = np.arange(h, dtype=F32)
    knots = max(3, h // 90)
    centre = (w - 1) / 2 + F32(0.18 * w) * _curve(rng, h, knots)
    half = F32(w / 2) * np.clip(0.72 + 0.3 * _curve(rng, h, knots), 0.4, 0.95)
    reach = max(1.0, min(h / 3, 3.0 * w))
    far = F32(h + reach)
    t = np.minimum(ys if taper_top else far, (h - 1 - ys) if taper_bottom else far) / reach
    half = half * np.sqrt(np.clip(t, 0.05, 1.0))
    half = np.maximum(half, 1.0)
    xs = np.arange(w, dtype=F32)[None, :]
    mask = (np.abs(xs - centre[:, None]) <= half[:, None]).astype(np.uint8)
    return mask


def _curve(rng: np.random.Generator, n: int, knots: int) -> np.ndarray:
    k = rng.uniform(-1, 1, (1, knots)).astype(F32)
    return cv2.resize(k, (n, 1), interpolation=cv2.INTER_CUBIC)[0]


def soft_inside(mask: np.ndarray, sigma: float) -> np.ndarray:
    """Float weight that is 0 outside the mask and rises smoothly to 1 inside it (no spill past the edge)."""
    m = mask.astype(F32)
    return cv2.GaussianBlur(m, (0, 0), sigma) * m


def relief(rng: np.random.Generator, h: int, w: int, cell: float) -> np.ndarray:
    """Shaded bumps: the directional derivative of smooth noise reads as light from the top-left."""
    n = lowres_noise(rng, (h + 1, w + 1), (cell, cell))
    return (n[1:, 1:] - n[:-1, :-1]) * F32(cell / 2.0)


# -- Severstal-style defects ---------------------------------------------------------------------------------


def draw_pits(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Class 1: a small cluster of pits (dark spots with a bright specular rim) on a roughened spot."""
    h, w = patch.shape
    region = blob_region(rng, h, w, roughness=1.3)
    soft = soft_inside(region, 2.0)
    patch *= 1 - F32(rng.uniform(0.03, 0.15)) * soft * (1 + F32(0.5) * lowres_noise(rng, (h, w), (4, 4)))
    dark = np.zeros((h, w), np.uint8)
    bright = np.zeros((h, w), np.uint8)
    n = max(3, int(region.sum() / rng.uniform(40, 160)))
    ys, xs = np.nonzero(region)
    pick = rng.integers(0, len(ys), n)
    for y, x in zip(ys[pick], xs[pick]):
        ax = (int(rng.integers(1, 4)), int(rng.integers(1, 6)))  # taller than wide: stretched by rolling
        cv2.ellipse(dark, (int(x), int(y)), ax, 0, 0, 360, 255, -1, cv2.LINE_AA)
        cv2.ellipse(bright, (int(x) - 1, int(y) - ax[1]), (ax[0], 1), 0, 0, 360, 255, -1, cv2.LINE_AA)
    k = F32(1 / 255) * region
    patch *= 1 - F32(rng.uniform(0.35, 0.65)) * dark.astype(F32) * k
    patch += F32(rng.uniform(30, 80)) * bright.astype(F32) * k * (dark == 0)
    return region


def draw_line(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Class 2: a thin, near-vertical line (scratch or crease), dark or bright, sometimes broken."""
    h, w = patch.shape
    ys = np.arange(0, h, 4, dtype=F32)
    if ys[-1] != h - 1:
        ys = np.append(ys, F32(h - 1))
    slope = rng.uniform(-0.03, 0.03)
    xs = (w - 1) / 2 + slope * (ys - h / 2) + 1.2 * _curve(rng, len(ys), max(3, h // 60))
    pts = np.round(np.stack([xs, ys], 1)).astype(np.int32)
    canvas = np.zeros((h, w), np.uint8)
    thick = int(rng.integers(1, 3))
    if rng.random() < 0.35:  # broken line: a few dashes
        cut = np.sort(rng.integers(0, len(pts), 4))
        for a, b in zip(cut[0::2], cut[1::2]):
            if b - a > 1:
                cv2.polylines(canvas, [pts[a:b]], False, 255, thick, cv2.LINE_AA)
    if not canvas.any():
        cv2.polylines(canvas, [pts], False, 255, thick, cv2.LINE_AA)
    halo = int(rng.integers(4, 9))
    region = (cv2.dilate(canvas, np.ones((3, 2 * halo + 1), np.uint8)) > 0).astype(np.uint8)
    line = cv2.GaussianBlur(canvas.astype(F32) / 255, (0, 0), 0.7) * region
    if rng.random() < 0.75:
        patch *= 1 - F32(rng.uniform(0.3, 0.6)) * line
    else:
        patch += F32(rng.uniform(40, 90)) * line
    return region


def draw_scratch(
    patch: np.ndarray, rng: np.random.Generator, taper_top: bool = True, taper_bottom: bool = True
) -> np.ndarray:
    """Class 3: scratches/scuffs along the rolling direction: a band of parallel lines or a streaky smear."""
    h, w = patch.shape
    region = band_region(rng, h, w, taper_top, taper_bottom)
    soft = soft_inside(region, max(1.0, min(w, h) / 12))
    streaks = lowres_noise(rng, (h, w), (int(rng.integers(12, 40)), int(rng.integers(1, 3))))
    style = rng.random()
    if style < 0.4:  # smear: darker, streaky band (scuffing, lubricant burn)
        depth = F32(rng.uniform(0.2, 0.45))
        patch *= 1 - depth * soft * np.clip(0.7 + 0.6 * streaks, 0, 1.6)
    elif style < 0.55:  # torn streak marks: short dark dashes stretched along the rolling direction
        marks = np.zeros((h, w), np.uint8)
        ys, xs = np.nonzero(region)
        for i in rng.integers(0, len(ys), max(3, int(region.sum() / rng.uniform(150, 600)))):
            axes = (int(rng.integers(1, 4)), int(rng.integers(3, 16)))
            cv2.ellipse(marks, (int(xs[i]), int(ys[i])), axes, rng.uniform(-8, 8), 0, 360, 255, -1, cv2.LINE_AA)
        marks = cv2.GaussianBlur(marks.astype(F32) / 255, (0, 0), 0.8) * region
        patch *= 1 - F32(0.1) * soft - F32(rng.uniform(0.35, 0.65)) * marks
    else:  # bundle of scratch lines, faint smear between them
        patch *= 1 - F32(rng.uniform(0.03, 0.15)) * soft * np.clip(0.8 + 0.4 * streaks, 0, 1.5)
        lines = np.zeros((h, w), np.uint8)
        for _ in range(int(rng.integers(1, 2 + max(1, w // 12)))):
            x = rng.uniform(0.15, 0.85) * w
            y0 = int(rng.uniform(0, 0.3) * h) if rng.random() < 0.5 else 0
            y1 = h - 1 - (int(rng.uniform(0, 0.3) * h) if rng.random() < 0.5 else 0)
            dx = rng.uniform(-0.04, 0.04) * (y1 - y0)
            cv2.line(lines, (int(x), y0), (int(x + dx), y1), int(rng.integers(120, 256)), int(rng.integers(1, 4)))
        lines = cv2.GaussianBlur(lines.astype(F32) / 255, (0, 0), 0.8) * region
        if rng.random() < 0.75:
            patch *= 1 - F32(rng.uniform(0.35, 0.7)) * lines
        else:
            patch += F32(rng.uniform(40, 90)) * lines
    return region


def draw_patch(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Class 4: a large lump of rolled-in material: wrinkled relief across the rolling direction, a tone
    darker or lighter than the strip, and a dark shadow rim."""
    h, w = patch.shape
    region = blob_region(rng, h, w, roughness=rng.uniform(1.0, 2.4))
    soft = soft_inside(region, rng.uniform(1.5, 3.0))
    rim = 4 * soft * (1 - soft)  # peaks just inside the edge
    # Wrinkles: noise on a short-along-y, long-across cell, shaded by its y derivative (light from above).
    cy, cx = int(rng.integers(3, 8)), int(rng.integers(10, 30))
    n = lowres_noise(rng, (h + 1, w), (cy, cx)) + F32(0.5) * lowres_noise(rng, (h + 1, w), (cy * 3, cx // 2))
    shade = (n[1:] - n[:-1]) * F32(cy / 2)
    mott = lowres_noise(rng, (h, w), (int(rng.integers(10, 30)),) * 2)
    tone = F32(rng.uniform(-0.4, 0.2)) + F32(0.08) * mott
    patch *= np.clip(1 + soft * tone - F32(rng.uniform(0.3, 0.6)) * rim, 0.1, 2.0)
    crisp = np.clip(shade - F32(1.0), 0, None)  # sharp specular highlights on the ridges
    grit = lowres_noise(rng, (h, w), (1, 2))
    patch += soft * (shade * F32(rng.uniform(8, 22)) + crisp * F32(rng.uniform(10, 40)) + grit * F32(5))
    return region


def draw_roll_mark(patch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Periodic roll mark: the dent a damaged work roll prints once per turn; shaded dark/bright pair.

    Seed `rng` the same for every repeat of one roll so each imprint has the same shape.
    """
    h, w = patch.shape
    region = blob_region(rng, h, w, roughness=0.6)
    soft = soft_inside(region, max(1.0, min(h, w) / 6))
    yy = np.linspace(-1, 1, h, dtype=F32)[:, None]
    shade = np.clip(-yy * 1.5, -1, 1)  # lit edge on top, shadow below: a dent, not a stain
    patch *= 1 - F32(rng.uniform(0.2, 0.35)) * soft
    patch += F32(rng.uniform(25, 45)) * shade * soft * (1 - soft) * 4
    return region


SEVERSTAL_DRAWERS = {1: draw_pits, 2: draw_line, 3: draw_scratch, 4: draw_patch}
