"""Hand-crafted texture features of a grey uint8 image, for the classical SDD baselines.

One vector per image (float32, ``N_FEATURES`` long, names from :func:`feature_names`), in four groups:

- ``int_*``   intensity statistics of the 256-bin histogram: mean, std, skewness, excess kurtosis,
  percentiles 5/25/50/75/95, entropy (bits)                                                      (10)
- ``glcm_*``  grey-level co-occurrence (skimage ``graycomatrix``/``graycoprops``) of the image quantised to
  32 levels, symmetric and normalised, at distances 1, 2, 4: contrast, dissimilarity, homogeneity, energy,
  correlation, ASM averaged over the angles 0/45/90/135 deg, plus the contrast range over the angles
  (directional textures such as scratches have a large one)                                       (21)
- ``lbp*``    histograms of uniform rotation-invariant LBP (P=8, R=1: 10 bins; P=16, R=2: 18 bins)   (28)
- ``hog_*``   skimage ``hog`` of the image resized to 96x96: 9 orientations, 32x32-pixel cells,
  one-cell blocks (L2-Hys)                                                                       (81)

LBP is computed here (OpenCV filters + a lookup table) with skimage's definition: circular neighbours by
bilinear interpolation, zero outside the image, ``neighbour >= centre``, "uniform" codes. skimage's per-pixel
loop costs ~6 ms per 200x200 image and setting; this one ~0.5 ms (P=8) and ~1 ms (P=16). The whole vector
costs ~4 ms per 200x200 image on one core.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from typing import Sequence

import cv2
import numpy as np
from skimage.feature import graycomatrix, graycoprops, hog

from steelscan.core.errors import SteelscanError

PERCENTILES: tuple[int, ...] = (5, 25, 50, 75, 95)
GLCM_LEVELS = 32
GLCM_DISTANCES: tuple[int, ...] = (1, 2, 4)
GLCM_ANGLES: tuple[float, ...] = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
GLCM_PROPS: tuple[str, ...] = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")
LBP_SETTINGS: tuple[tuple[int, float], ...] = ((8, 1.0), (16, 2.0))
HOG_SIZE = 96
HOG_CELL = 32
HOG_ORIENTATIONS = 9
MIN_SIDE = 2 * max(GLCM_DISTANCES) + 1  # GLCM at the largest distance needs pixel pairs in every direction


def feature_names() -> list[str]:
    """Names of the entries of :func:`extract_features`, in order."""
    names = ["int_mean", "int_std", "int_skew", "int_kurt"]
    names += [f"int_p{p}" for p in PERCENTILES] + ["int_entropy"]
    for d in GLCM_DISTANCES:
        names += [f"glcm_{prop.lower()}_d{d}" for prop in GLCM_PROPS] + [f"glcm_contrast_range_d{d}"]
    for p, r in LBP_SETTINGS:
        names += [f"lbp{p}r{int(r)}_{k}" for k in range(p + 2)]
    cells = HOG_SIZE // HOG_CELL
    names += [f"hog_{i}_{j}_o{o}" for i in range(cells) for j in range(cells) for o in range(HOG_ORIENTATIONS)]
    return names


N_FEATURES = len(feature_names())


def _check_image(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise SteelscanError(f"expected a numpy array (2-D grey uint8 image), got {type(image).__name__}")
    if image.ndim != 2:
        raise SteelscanError(f"expected a 2-D grey image (H, W), got an array of shape {image.shape}")
    if image.dtype != np.uint8:
        raise SteelscanError(f"expected a uint8 grey image, got dtype {image.dtype}")
    if min(image.shape) < MIN_SIDE:
        raise SteelscanError(f"expected an image at least {MIN_SIDE}x{MIN_SIDE} pixels, got {image.shape}")
    return image


def _intensity(image: np.ndarray) -> list[float]:
    # Everything from the 256-bin histogram: far cheaper than scipy.stats on 40k pixels.
    hist = np.bincount(image.ravel(), minlength=256).astype(np.float64)
    p = hist / hist.sum()
    v = np.arange(256, dtype=np.float64)
    mean = float(p @ v)
    c = v - mean
    var = float(p @ c**2)
    std = var**0.5
    if std > 0:
        skew = float(p @ c**3) / std**3
        kurt = float(p @ c**4) / var**2 - 3.0
    else:  # a flat image: no asymmetry, no tails
        skew = kurt = 0.0
    cdf = np.cumsum(p)
    # Lower ("inverted CDF") percentile: the smallest grey level whose CDF reaches q.
    pct = [float(np.searchsorted(cdf, q / 100.0 - 1e-12)) for q in PERCENTILES]
    nz = p[p > 0]
    entropy = float(-(nz * np.log2(nz)).sum())
    return [mean, std, skew, kurt, *pct, entropy]


def _glcm(image: np.ndarray) -> list[float]:
    q = (image >> 3).astype(np.uint8)  # 256 -> 32 levels: 64x smaller matrices, same texture scale
    glcm = graycomatrix(q, GLCM_DISTANCES, GLCM_ANGLES, levels=GLCM_LEVELS, symmetric=True, normed=True)
    props = {name: graycoprops(glcm, name) for name in GLCM_PROPS}  # each (n_distances, n_angles)
    out: list[float] = []
    for i in range(len(GLCM_DISTANCES)):
        out += [float(props[name][i].mean()) for name in GLCM_PROPS]
        out.append(float(np.ptp(props["contrast"][i])))
    return out


@lru_cache(maxsize=None)
def _lbp_kernels(p: int, r: float) -> tuple[np.ndarray, ...]:
    """One correlation kernel per neighbour: its bilinear weights at skimage's (rounded) position."""
    half = int(np.ceil(r)) + 1
    kernels = []
    for a in 2 * np.pi * np.arange(p) / p:
        dr, dc = round(-r * np.sin(a), 5), round(r * np.cos(a), 5)
        r0, c0 = int(np.floor(dr)), int(np.floor(dc))
        fr, fc = dr - r0, dc - c0
        k = np.zeros((2 * half + 1, 2 * half + 1), dtype=np.float32)
        for i, wr in ((0, 1 - fr), (1, fr)):
            for j, wc in ((0, 1 - fc), (1, fc)):
                k[half + r0 + i, half + c0 + j] += wr * wc
        kernels.append(k)
    return tuple(kernels)


@lru_cache(maxsize=None)
def _uniform_lut(p: int) -> np.ndarray:
    """Map each p-bit pattern to its uniform code: number of ones if <= 2 circular 0/1 changes, else p+1."""
    bits = (np.arange(2**p, dtype=np.uint32)[:, None] >> np.arange(p, dtype=np.uint32)) & 1
    changes = (bits != np.roll(bits, 1, axis=1)).sum(axis=1)
    return np.where(changes <= 2, bits.sum(axis=1), p + 1).astype(np.uint8)


def lbp_uniform(image: np.ndarray, p: int, r: float) -> np.ndarray:
    """Uniform rotation-invariant LBP codes (0..p+1) with skimage's definition ('uniform').

    Each neighbour is one ``cv2.filter2D`` (zero outside the image, as skimage). ``neighbour >= centre`` is
    taken with a 1e-3 tolerance, i.e. in exact arithmetic; skimage compares rounded doubles, so a flat patch
    can flip there (agreement on NEU: 100% of pixels for P=8, R=1; ~99.9% for P=16, R=2).
    """
    if p > 24:
        raise SteelscanError(f"expected at most 24 LBP neighbours, got P={p}")
    img = image.astype(np.float32)
    code = np.zeros(image.shape, dtype=np.uint32)
    for k, kernel in enumerate(_lbp_kernels(p, float(r))):
        value = cv2.filter2D(img, cv2.CV_32F, kernel, borderType=cv2.BORDER_CONSTANT)
        code |= (value >= img - 1e-3).astype(np.uint32) << np.uint32(k)
    return _uniform_lut(p)[code]


def _lbp(image: np.ndarray) -> list[float]:
    out: list[float] = []
    for p, r in LBP_SETTINGS:
        codes = lbp_uniform(image, p, r)
        hist = np.bincount(codes.ravel(), minlength=p + 2).astype(np.float64)
        out += list(hist / hist.sum())
    return out


def _hog(image: np.ndarray) -> np.ndarray:
    small = cv2.resize(image, (HOG_SIZE, HOG_SIZE), interpolation=cv2.INTER_AREA)
    return hog(
        small,
        orientations=HOG_ORIENTATIONS,
        pixels_per_cell=(HOG_CELL, HOG_CELL),
        cells_per_block=(1, 1),
        block_norm="L2-Hys",
        feature_vector=True,
    )


def extract_features(image: np.ndarray) -> np.ndarray:
    """Feature vector (float32, length ``N_FEATURES``) of one 2-D grey uint8 image (at least 9x9)."""
    image = _check_image(image)
    parts = [_intensity(image), _glcm(image), _lbp(image)]
    vec = np.concatenate([np.asarray(x, dtype=np.float64) for x in parts] + [_hog(image)])
    return vec.astype(np.float32)


def _extract_many(images: Sequence[np.ndarray]) -> np.ndarray:
    return np.stack([extract_features(im) for im in images]) if len(images) else np.empty((0, N_FEATURES), np.float32)


def extract_batch(images: Sequence[np.ndarray] | np.ndarray, n_jobs: int = 1) -> np.ndarray:
    """Features of many images, ``(N, N_FEATURES)`` float32, rows in input order.

    ``images`` is a sequence of 2-D uint8 arrays (sizes may differ) or an ``(N, H, W)`` uint8 array.
    ``n_jobs`` threads share the work (-1: one per CPU). They gain only where OpenCV/numpy/skimage release the
    GIL (~1.2x on 2 idle cores), but a process pool would re-import steelscan (and torch, ~3 s) per worker,
    more than the ~6 s that all of NEU-CLS costs on one core.
    """
    if isinstance(images, np.ndarray):
        if images.ndim != 3:
            raise SteelscanError(f"expected an (N, H, W) uint8 array of grey images, got shape {images.shape}")
        images = list(images)
    images = list(images)
    for i, im in enumerate(images):
        try:
            _check_image(im)
        except SteelscanError as exc:
            raise SteelscanError(f"image {i}: {exc}") from None
    if n_jobs == -1:
        n_jobs = os.cpu_count() or 1
    if not isinstance(n_jobs, int) or n_jobs < 1:
        raise SteelscanError(f"expected n_jobs >= 1 or -1 (all CPUs), got {n_jobs!r}")
    n_jobs = min(n_jobs, max(1, len(images) // 8))  # tiny batches are not worth the threads
    if n_jobs == 1:
        return _extract_many(images)
    chunks = [images[i::n_jobs] for i in range(n_jobs)]
    with ThreadPoolExecutor(n_jobs) as pool:
        parts = list(pool.map(_extract_many, chunks))
    out = np.empty((len(images), N_FEATURES), dtype=np.float32)
    for i, part in enumerate(parts):
        out[i::n_jobs] = part
    return out
