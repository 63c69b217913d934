"""Procedural rolled-steel backgrounds.

Conventions: while drawing, images are float32 grey levels on the 0..255 scale (clipped and cast to uint8 only
when written). Rows (y) run along the rolling direction and columns (x) across the strip, as in the real
Severstal and NEU images, so rolling streaks are vertical.

`StripTexture` is a pure function of (coil-level parameters, global row): any row range renders the same
pixels however it is cut into frames, so overlapping coil frames agree exactly and a single 256-row Severstal
image is just `render(0, 256)`.
"""

from __future__ import annotations

import cv2
import numpy as np

F32 = np.float32


def lowres_noise(rng: np.random.Generator, shape: tuple[int, int], cell: tuple[int, int]) -> np.ndarray:
    """Smooth noise of `shape` (H, W): white noise on a (cell_y, cell_x) lattice, cubic-upsampled.

    Anisotropic cells make streaks: a tall, narrow cell gives structures elongated along y. Roughly unit std.
    """
    h, w = shape
    cy, cx = max(1, int(cell[0])), max(1, int(cell[1]))
    gh, gw = h // cy + 4, w // cx + 4
    grid = rng.standard_normal((gh, gw), dtype=F32)
    big = cv2.resize(grid, (gw * cx, gh * cy), interpolation=cv2.INTER_CUBIC)
    out = big[cy : cy + h, cx : cx + w]
    return out * F32(1.6)  # cubic upsampling of white noise keeps ~0.6 of its std


def smooth_curve(rng: np.random.Generator, n: int, knots: int) -> np.ndarray:
    """A smooth random 1-D curve of length n (unit-ish std) through `knots` random values."""
    k = rng.standard_normal((1, knots)).astype(F32)
    return cv2.resize(k, (n, 1), interpolation=cv2.INTER_CUBIC)[0]


def blur1d_noise(rng: np.random.Generator, n: int, sigma: float) -> np.ndarray:
    """White noise of length n blurred with a Gaussian of `sigma`, rescaled to unit std."""
    v = rng.standard_normal((1, n)).astype(F32)
    v = cv2.GaussianBlur(v, (0, 0), sigmaX=sigma, sigmaY=0.1, borderType=cv2.BORDER_REFLECT)[0]
    return v / F32(v.std() + 1e-6)


class StripTexture:
    """Background of a steel strip, `width` px across, unbounded along the rolling direction.

    Parameters are drawn once from `rng`; the pixels of any row range are a deterministic function of them.
    Layers: base level x across-strip illumination x (1 + rolling streaks + elongated streak field + soft
    mottling + optional oblique "wood grain" swirl), then dark speckle dashes, per-pixel grain, and a dark
    off-strip margin outside [strip_left, strip_right) when those are set.
    """

    BLOCK = 64  # rows rendered per independently seeded block (grain, speckles)

    def __init__(
        self,
        width: int,
        rng: np.random.Generator,
        *,
        strip_left: int | None = None,
        strip_right: int | None = None,
        base: float | None = None,
    ) -> None:
        self.width = int(width)
        self.root = int(rng.integers(0, 2**62))
        self.base = float(base if base is not None else rng.uniform(75.0, 165.0))
        self.strip_left = strip_left
        self.strip_right = strip_right
        x = self.width
        # Across-strip illumination: a light band somewhere over the strip plus a slow falloff.
        centre = rng.uniform(0.2, 0.8) * x
        spread = rng.uniform(0.25, 0.7) * x
        xs = np.arange(x, dtype=F32)
        band = np.exp(-0.5 * ((xs - centre) / spread) ** 2)
        illum = 1.0 + rng.uniform(0.1, 0.45) * (band - band.mean()) + 0.06 * smooth_curve(rng, x, 6)
        self.illum = illum.astype(F32)
        # Rolling streaks: fixed per column for the whole coil (roll grinding marks, lubricant lines).
        col = rng.uniform(0.008, 0.025) * blur1d_noise(rng, x, 0.6) + rng.uniform(0.01, 0.03) * blur1d_noise(
            rng, x, rng.uniform(3.0, 12.0)
        )
        # A few stronger, thin, non-defect streak lines: real strips have many that nobody labels.
        for _ in range(int(rng.integers(0, 6))):
            c = int(rng.integers(0, x))
            col[max(0, c - 1) : c + 1] -= rng.uniform(0.02, 0.08)
        self.col = col.astype(F32)
        self.streak_amp = float(rng.uniform(0.01, 0.035))
        self.streak_cell = (int(rng.integers(32, 96)), int(rng.integers(1, 4)))
        self.mottle_amp = float(rng.uniform(0.02, 0.07))
        self.mottle_cell = (int(rng.integers(96, 256)), int(rng.integers(100, 300)))
        self.grain = float(rng.uniform(0.025, 0.07))  # relative: bright strips look grainier
        self.speckles = float(rng.uniform(0.0, 30.0))  # dark dashes per 64-row block
        # Oblique swirl ("wood grain") seen on part of the real strips: thin curved lines.
        self.swirl = float(rng.uniform(0.01, 0.03)) if rng.random() < 0.2 else 0.0
        self.swirl_freq = float(rng.uniform(0.3, 0.7))
        self.swirl_angle = float(rng.uniform(-1.2, 1.2))
        self.margin_level = float(rng.uniform(3.0, 12.0))
        self._rows: dict = {}  # caches; pure functions of their keys
        self._blocks: dict = {}
        # Unlabelled dirt: sparse, soft, dark smears elongated along rolling (thresholded streak noise).
        self.dirt = float(rng.uniform(0.0, 0.2)) if rng.random() < 0.5 else 0.0
        self.dirt_cell = (int(rng.integers(8, 40)), int(rng.integers(2, 6)))

    # -- deterministic pieces -------------------------------------------------------------------------
    def _rng(self, *key: int) -> np.random.Generator:
        # Offset keys: SeedSequence wants non-negative integers and the block before row 0 is -1.
        return np.random.default_rng([self.root, *(k + 2**32 for k in key)])

    def _lattice_row(self, key: int, i: int, cell: tuple[int, int]) -> np.ndarray:
        """Lattice line i of field `key`: a seeded random row, cubic-upsampled across. Cached (coil frames
        share rows); each row is computed alone so its values never depend on which rows are rendered."""
        k = (key, i, cell)
        row = self._rows.get(k)
        if row is None:
            cy, cx = cell
            nx = self.width // cx + 4
            r = self._rng(key, i).standard_normal((1, nx), dtype=F32)
            row = cv2.resize(r, (nx * cx, 1), interpolation=cv2.INTER_CUBIC)[0, cx : cx + self.width] * F32(1.6)
            if len(self._rows) > 4096:
                self._rows.clear()
            self._rows[k] = row
        return row

    def _lattice_add(self, out: np.ndarray, y0: int, cell: tuple[int, int], key: int, amp: float) -> None:
        """out += amp * lattice noise of field `key` for global rows [y0, y0 + len(out)), smooth along y."""
        cy = cell[0]
        y1 = y0 + out.shape[0]
        for i in range(y0 // cy, (y1 - 1) // cy + 1):
            a, b = max(y0, i * cy), min(y1, (i + 1) * cy)
            lo, hi = self._lattice_row(key, i, cell), self._lattice_row(key, i + 1, cell)
            t = ((np.arange(a, b) - i * cy) / cy).astype(F32)
            t = (t * t * (3 - 2 * t))[:, None]  # smoothstep: no visible kinks at lattice lines
            out[a - y0 : b - y0] += F32(amp) * (lo + t * (hi - lo))

    def _speckle_block(self, b: int) -> list[np.ndarray]:
        """Dash end points (global coordinates) whose centres lie in block b."""
        r = self._rng(7, b)
        n = int(r.poisson(self.speckles))
        cx = r.uniform(0, self.width, n)
        cy = r.uniform(b * self.BLOCK, (b + 1) * self.BLOCK, n)
        half = r.exponential(2.5, n) + 0.5
        dx = r.normal(0.0, 0.6, n)
        pts = np.stack([np.stack([cx - dx, cy - half], 1), np.stack([cx + dx, cy + half], 1)], 1)
        return [p for p in np.round(pts).astype(np.int32)]

    def _block(self, b: int) -> np.ndarray:
        """Multiplicative grain x speckle factor (float32) of block b's rows. Cached."""
        f = self._blocks.get(b)
        if f is not None:
            return f
        r = self._rng(3, b)
        shape = (self.BLOCK, self.width)
        grain = r.random(shape, dtype=F32) + r.random(shape, dtype=F32)  # triangular: half a normal's cost
        grain -= F32(1.0)
        grain *= F32(6**0.5)
        grain = cv2.GaussianBlur(grain, (3, 3), 0.45, sigmaY=0.7, borderType=cv2.BORDER_REFLECT)
        halo = 16  # dashes are at most ~25 px long: draw neighbours' dashes too, then crop
        canvas = np.zeros((self.BLOCK + 2 * halo, self.width), np.uint8)
        off = np.array([0, b * self.BLOCK - halo], np.int32)
        for nb in (b - 1, b, b + 1):
            lines = [p - off for p in self._speckle_block(nb)]
            if lines:
                cv2.polylines(canvas, lines, False, 255, 1, cv2.LINE_AA)
        f = grain * F32(self.grain * 2.0) + F32(1.0) - canvas[halo:-halo].astype(F32) * F32(0.35 / 255)
        if len(self._blocks) > 64:
            self._blocks.clear()
        self._blocks[b] = f
        return f

    def render(self, y0: int, y1: int) -> np.ndarray:
        """Float32 image of global rows [y0, y1), shape (y1 - y0, width). Each row depends only on its index."""
        h = y1 - y0
        img = np.empty((h, self.width), F32)
        img[:] = self.col + F32(1.0)
        self._lattice_add(img, y0, self.streak_cell, 1, self.streak_amp)
        self._lattice_add(img, y0, self.mottle_cell, 2, self.mottle_amp)
        if self.swirl:
            ys = np.arange(y0, y1, dtype=F32)[:, None]
            xs = np.arange(self.width, dtype=F32)[None, :]
            phase = np.zeros_like(img)
            self._lattice_add(phase, y0, (160, 160), 4, 12.0)
            phase += F32(self.swirl_freq) * (xs * F32(np.sin(self.swirl_angle)) + ys * F32(np.cos(self.swirl_angle)))
            where = np.zeros_like(img)  # only in some places
            self._lattice_add(where, y0, (128, 256), 5, 1.0)
            img += F32(self.swirl) * np.clip(where, 0, None) * np.sin(phase)
        if self.dirt:
            # Fine streaky noise gated by a coarse field: dirt comes in patches, not evenly sprinkled.
            d = np.full_like(img, -2.2)
            self._lattice_add(d, y0, (128, 200), 8, 1.0)
            self._lattice_add(d, y0, self.dirt_cell, 6, 1.0)
            img -= F32(self.dirt) * np.clip(d, 0, 1.5)
        img *= F32(self.base) * self.illum
        for b in range(y0 // self.BLOCK, (y1 - 1) // self.BLOCK + 1):
            a, c = max(y0, b * self.BLOCK), min(y1, (b + 1) * self.BLOCK)
            img[a - y0 : c - y0] *= self._block(b)[a - b * self.BLOCK : c - b * self.BLOCK]
        if self.strip_left is not None or self.strip_right is not None:
            self._margins(img)
        return img

    def _margins(self, img: np.ndarray) -> None:
        """Dark background beyond the strip edges, with a soft 2-3 px edge (only those columns change)."""
        xs = np.arange(self.width, dtype=F32)
        on = np.ones(self.width, F32)
        if self.strip_left is not None:
            on *= np.clip((xs - self.strip_left + 1.5) / 3.0, 0, 1)
        if self.strip_right is not None:
            on *= np.clip((self.strip_right - xs + 1.5) / 3.0, 0, 1)
        ranges = []
        if self.strip_left is not None:
            ranges.append((0, min(self.width, self.strip_left + 3)))
        if self.strip_right is not None:
            ranges.append((max(0, self.strip_right - 3), self.width))
        for lo, hi in ranges:
            part = img[:, lo:hi]
            dark = np.maximum(F32(self.margin_level) + F32(0.08) * (part - F32(self.base)), 0)  # faint, near black
            part *= on[lo:hi]
            part += (1 - on[lo:hi]) * dark


def finish(img: np.ndarray) -> np.ndarray:
    """Clip a float image to 0..255 and round to uint8."""
    return np.clip(img + 0.5, 0, 255).astype(np.uint8)
