"""Segmenters: images of one size -> probabilities, presence and final masks (`Segmentation`), whole images
on PyTorch or the artifact's gated tiles on ONNX Runtime or OpenVINO."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from steelscan.core.errors import ImageError, ModelFileError
from steelscan.core.meta import ModelMeta
from steelscan.deploy.predictors.base import Predictor, normalise
from steelscan.deploy.tiles import TileGrid, cut_tiles, stitch
from steelscan.postprocess import PostProcess, binarize, predict_tta

STRIDE = 32  # inputs are padded to multiples of this


def default_postprocess(num_classes: int) -> PostProcess:
    """What a segmenter without a saved post-processing gets: threshold 0.5, no minimum areas, no gate."""
    return PostProcess(threshold=(0.5,) * num_classes, min_area=(0,) * num_classes,
                       gate_threshold=(0.5,) * num_classes)


@dataclass
class Segmentation:
    """A segmenter's answer for N images of one size."""

    probabilities: np.ndarray  # float [N, K, H, W]
    presence: np.ndarray  # float32 [N, K] (tiled: the highest over an image's tiles)
    masks: np.ndarray | None  # uint8 [N, K, H, W] of {0, 1} by the post-processing; None if not asked for
    tiles: np.ndarray  # int64 [N]: model inputs per image (ONNX: tiles; PyTorch: 1)
    decoded: np.ndarray  # int64 [N]: of those, decoded (the tile gate passed them)

    def __len__(self) -> int:
        return len(self.probabilities)


class SegmenterPredictor(Predictor):
    """Images of one size -> `Segmentation`. PyTorch: the whole image, reflect-padded to multiples of 32, with
    flip TTA as the post-processing says. ONNX: the artifact's tiles, gated (`gate=True`: the decoder runs only
    on tiles whose presence reaches the artifact's tile gate); TTA there averages each tile's flips."""

    task = "segmentation"
    default_batch_size = 4  # images (PyTorch) or tiles (ONNX) per model call
    options = ("batch_size", "gate", "tta", "postprocess", "probs_dtype")

    def __init__(self, meta: ModelMeta | dict, backend: Any, gate: bool = True, tta: bool | None = None,
                 batch_size: int | None = None, postprocess: PostProcess | None = None,
                 probs_dtype: Any = np.float32) -> None:
        super().__init__(meta, backend, batch_size or (8 if backend.kind != "torch" else None))  # artifacts (ONNX or OpenVINO): tiles
        k = self.meta.num_classes
        if postprocess is None:
            postprocess = PostProcess.from_dict(self.meta.postprocess) if self.meta.postprocess else default_postprocess(k)
        if len(postprocess.threshold) != k:
            raise ModelFileError(f"the post-processing has {len(postprocess.threshold)} class thresholds; the model "
                                 f"has {k} classes {list(self.class_names)}")
        self.postprocess, self.gate, self.probs_dtype = postprocess, bool(gate), probs_dtype
        self.tta = postprocess.tta if tta is None else bool(tta)

    @property
    def tile(self) -> tuple[int, int] | None:
        """The artifact's tile (h, w) on the ONNX and OpenVINO back ends; None on PyTorch (whole images)."""
        return getattr(self.backend, "tile", None)

    def tiles_per_image(self, shape: tuple[int, int]) -> int:
        if self.tile is None:
            return 1
        grid = TileGrid(shape[0], shape[1], self.tile)
        return grid.rows * grid.cols

    def pre_process(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """-> float32 [N, C, H', W'] padded to multiples of 32 (PyTorch) or [N * tiles, C, th, tw] (ONNX)."""
        imgs = self.check_images(images)
        shapes = sorted({im.shape[:2] for im in imgs})
        if len(shapes) > 1:
            raise ImageError(f"a segmenter batch needs images of one size, got sizes {shapes} (H, W)")
        if self.tile is not None:
            batch = np.concatenate([cut_tiles(im, self.tile)[0] for im in imgs])
        else:
            batch = np.stack(imgs)
            h, w = batch.shape[1:3]
            ph, pw = -h % STRIDE, -w % STRIDE
            if ph or pw:
                batch = np.pad(batch, ((0, 0), (0, ph), (0, pw)) + ((0, 0),) * (batch.ndim - 3), mode="reflect")
        return normalise(batch, self.meta.mean, self.meta.std)

    def forward(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> (probabilities float32 [M, K, h, w], presence [M, K], decoded bool [M]) per model input, in
        calls of `batch_size` inputs."""
        parts = [self._call(x[i : i + self.batch_size]) for i in range(0, len(x), self.batch_size)]
        return tuple(np.concatenate([p[j] for p in parts]) for j in range(3))  # type: ignore[return-value]

    def _call(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if self.backend.kind == "torch":
            xt = torch.from_numpy(np.ascontiguousarray(x)).to(self.backend.device)
            with torch.inference_mode():
                m, p = predict_tta(self.backend.model, xt, self.tta)
            return m.float().cpu().numpy(), p.float().cpu().numpy(), np.ones(len(x), bool)
        m, p, keep = self.backend.predict(x, self.gate)
        if self.tta:  # each flip through the (gated) graph and back; means of probabilities
            for axis in (-1, -2):
                fm, fp, fk = self.backend.predict(np.flip(x, axis), self.gate)
                m, p, keep = m + np.flip(fm, axis), p + fp, keep | fk
            m, p = m / 3, p / 3
        return m, p, keep

    def post_process(self, out: tuple[np.ndarray, np.ndarray, np.ndarray], shape: tuple[int, int],
                     masks: bool = True) -> Segmentation:
        """Model outputs of images of `shape` (H, W) -> their `Segmentation` (stitched or cropped back)."""
        probs, presence, decoded = out
        h, w = shape
        if self.tile is not None:
            grid = TileGrid(h, w, self.tile)
            t = grid.rows * grid.cols
            n = len(probs) // t
            probs = np.stack([stitch(probs[i * t : (i + 1) * t], grid) for i in range(n)])
            presence = presence.reshape(n, t, -1).max(1)
            decoded = decoded.reshape(n, t).sum(1)
            tiles = np.full(n, t, np.int64)
        else:
            probs = probs[..., :h, :w]
            tiles = np.ones(len(probs), np.int64)
        final = np.stack([binarize(p, self.postprocess, q) for p, q in zip(probs, presence)]) if masks else None
        return Segmentation(probs.astype(self.probs_dtype, copy=False), presence.astype(np.float32, copy=False),
                            final, tiles, decoded.astype(np.int64))

    def predict(self, images: Sequence[np.ndarray], masks: bool = True) -> Segmentation:
        """All images must share one size; `masks=False` returns the probabilities only."""
        images = list(images)
        if not images:
            k = self.meta.num_classes
            return Segmentation(np.zeros((0, k, 0, 0), self.probs_dtype), np.zeros((0, k), np.float32),
                                np.zeros((0, k, 0, 0), np.uint8) if masks else None, np.zeros(0, np.int64),
                                np.zeros(0, np.int64))
        shape = images[0].shape[:2]
        per_call = self.batch_size if self.tile is None else max(1, self.batch_size // self.tiles_per_image(shape))
        parts = [self.post_process(self.forward(self.pre_process(images[i : i + per_call])), shape, masks)
                 for i in range(0, len(images), per_call)]
        if len(parts) == 1:
            return parts[0]
        return Segmentation(np.concatenate([p.probabilities for p in parts]),
                            np.concatenate([p.presence for p in parts]),
                            np.concatenate([p.masks for p in parts]) if masks else None,
                            np.concatenate([p.tiles for p in parts]), np.concatenate([p.decoded for p in parts]))

    def binarize(self, probabilities: np.ndarray, presence: np.ndarray) -> np.ndarray:
        """Final uint8 masks [N, K, H, W] of probabilities (e.g. an ensemble's mean) by this post-processing."""
        return np.stack([binarize(p, self.postprocess, q) for p, q in zip(probabilities, presence)])
