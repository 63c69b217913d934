"""What every predictor shares: the back ends that run a model, the `Predictor` base class (batching, image
checks, options) and the pre-processing steps of all tasks."""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
import torch.nn as nn

from steelscan.core.errors import ConfigError, ImageError, ModelFileError
from steelscan.core.meta import ModelMeta


# -- back ends ---------------------------------------------------------------------------------------------


class TorchBackend:
    """A checkpoint's model on a device: float32 arrays in, numpy arrays out."""

    kind = "torch"

    def __init__(self, model: nn.Module, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()

    @torch.inference_mode()
    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        out = self.model(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device))
        return [o.float().cpu().numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]


class OnnxBackend:
    """An ONNX Runtime session of an artifact with one input: float32 arrays in, its outputs out."""

    kind = "onnx"

    def __init__(self, session: Any) -> None:
        self.session = session
        self.input = session.get_inputs()[0].name

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, {self.input: np.ascontiguousarray(x, dtype=np.float32)})


# -- shared steps ------------------------------------------------------------------------------------------


def to_channels(image: np.ndarray, in_chans: int) -> np.ndarray:
    """uint8 grey [H, W] or RGB [H, W, 3] -> [H, W] (in_chans 1) or [H, W, 3] (in_chans 3)."""
    if image.ndim == 2:
        return image if in_chans == 1 else np.repeat(image[:, :, None], 3, axis=2)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if in_chans == 1 else image


def normalise(batch: np.ndarray, mean: float, std: float) -> np.ndarray:
    """uint8 [N, H, W] or [N, H, W, 3] -> float32 [N, C, H, W], (pixel / 255 - mean) / std."""
    x = batch.astype(np.float32)
    x = x[:, None] if x.ndim == 3 else x.transpose(0, 3, 1, 2)
    x *= 1.0 / 255.0
    x -= mean
    x /= std
    return np.ascontiguousarray(x)


def group_by_shape(images: Sequence[np.ndarray]) -> dict[tuple[int, int], list[int]]:
    """Image indices by (H, W): segmenter batches need one size (strips from one camera share it)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault(tuple(np.shape(im)[:2]), []).append(i)
    return groups


# -- the base class ----------------------------------------------------------------------------------------


class Predictor:
    """Images -> results for one task; `meta` says how the model was trained, `backend` runs it."""

    task: ClassVar[str] = ""
    default_batch_size: ClassVar[int] = 8
    options: ClassVar[tuple[str, ...]] = ("batch_size",)  # what `replace` may change

    def __init__(self, meta: ModelMeta | dict, backend: Any, batch_size: int | None = None) -> None:
        meta = ModelMeta.from_dict(meta)
        if meta.task != self.task:
            raise ModelFileError(f"{type(self).__name__} needs a {self.task} model, got a {meta.task} model")
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch size must be >= 1, got {batch_size}")
        self.meta, self.backend = meta, backend
        self.batch_size = batch_size or self.default_batch_size
        self.source: str | None = None  # what it was loaded from (load_predictor)

    @classmethod
    def from_module(cls, model: nn.Module, meta: ModelMeta | dict, device: str | torch.device = "cpu", **options):
        """A predictor on an in-memory model (PyTorch back end), e.g. during training."""
        return cls(meta, TorchBackend(model, device), **options)

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.meta.class_names

    @property
    def backend_kind(self) -> str:
        return self.backend.kind

    def replace(self, **changes: Any) -> "Predictor":
        """A copy with other options (e.g. `score_threshold=0.0`), sharing the loaded back end."""
        new = copy.copy(self)
        for k, v in changes.items():
            if k not in self.options:
                raise TypeError(f"{type(self).__name__} has no option {k!r}; options: {', '.join(self.options)}")
            setattr(new, k, v)
        return new

    def check_images(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """Each image checked (uint8 grey [H, W] or RGB [H, W, 3], both sides >= meta.min_input_size) and
        converted to the model's channels."""
        out = []
        for i, im in enumerate(images):
            ok = isinstance(im, np.ndarray) and im.dtype == np.uint8 and (
                im.ndim == 2 or (im.ndim == 3 and im.shape[2] == 3))
            if not ok:
                got = f"{getattr(im, 'shape', None)} {getattr(im, 'dtype', type(im).__name__)}"
                raise ImageError(f"image {i}: expected a uint8 grey [H, W] or RGB [H, W, 3] array, got {got}")
            if min(im.shape[:2]) < self.meta.min_input_size:
                raise ImageError(f"image {i} is {im.shape[1]}x{im.shape[0]} px; expected at least "
                                 f"{self.meta.min_input_size} px on each side")
            out.append(to_channels(im, self.meta.in_chans))
        return out

    def pre_process(self, images: Sequence[np.ndarray]) -> Any:
        raise NotImplementedError

    def forward(self, x: Any) -> Any:
        raise NotImplementedError

    def post_process(self, out: Any) -> Any:
        raise NotImplementedError

    def predict(self, images: Sequence[np.ndarray]) -> Any:
        images = list(images)
        parts = [self.post_process(self.forward(self.pre_process(images[i : i + self.batch_size])))
                 for i in range(0, len(images), self.batch_size)]
        return self._join(parts)

    def _join(self, parts: list) -> Any:
        return [r for part in parts for r in part]

    def __repr__(self) -> str:
        return (f"{type(self).__name__}({self.meta.model}, {self.backend_kind}, classes={list(self.class_names)}"
                + (f", from {self.source}" if self.source else "") + ")")
