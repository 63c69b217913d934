"""Predictors: one per task, images in and results out, on a PyTorch or an ONNX Runtime back end.

In the manner of anomalib's inferencers, each predictor has three stages and `predict` chains them in batches:

    pre_process(images) -> x      uint8 grey [H, W] or RGB [H, W, 3] -> the model's input, as it was trained:
                                  channels converted to meta.in_chans, normalised by meta.mean/std (classifiers
                                  also resized to meta.input_size; segmenters padded, or cut into the
                                  artifact's tiles)
    forward(x) -> out             the back end: a checkpoint's nn.Module (`TorchBackend`) or an exported
                                  artifact's ONNX Runtime session (`OnnxBackend`, `SegmenterRuntime`)
    post_process(out) -> result   probabilities / kept detections / stitched probabilities and final masks

    ClassifierPredictor   predict(images) -> probabilities float32 [N, K]; flip TTA by default as meta.tta
    DetectorPredictor     predict(images) -> per image {"boxes" float32 [D, 4] xyxy px, "scores" [D],
                          "labels" int64 [D] in 0..K-1}, scores >= meta.score_threshold; any image size
    SegmenterPredictor    predict(images) -> Segmentation: probabilities [N, K, H, W], presence [N, K],
                          masks uint8 [N, K, H, W] by meta.postprocess; images of one size per call

`load_predictor(spec, backend="auto")` builds the right one from a run folder, a .pt checkpoint, a built-in name
or an .onnx artifact, by the file's type and `meta.task`. Class names and their count always come from the meta.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import cv2
import numpy as np
import torch
import torch.nn as nn

from steelscan.core.errors import ConfigError, ImageError, ModelFileError
from steelscan.core.meta import ModelMeta
from steelscan.deploy.tiles import TileGrid, cut_tiles, stitch
from steelscan.postprocess import PostProcess, binarize, predict_tta

DEFAULT_SCORE_THRESHOLD = 0.3  # detections shown when the meta names no threshold
BACKENDS = ("auto", "torch", "onnx")
STRIDE = 32  # segmenters: inputs are padded to multiples of this


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


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float32) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def detector_inputs(images: Sequence[np.ndarray]) -> list[np.ndarray]:
    """uint8 [H, W] / [H, W, C] -> float32 [C, H, W] in [0, 1]; detectors normalise and resize themselves."""
    out = []
    for im in images:
        x = im.astype(np.float32) / np.float32(255.0)
        out.append(x[None] if x.ndim == 2 else np.ascontiguousarray(x.transpose(2, 0, 1)))
    return out


@torch.inference_mode()
def run_detector(model: nn.Module, inputs: Sequence[np.ndarray], device: str | torch.device = "cpu",
                 ) -> list[dict[str, np.ndarray]]:
    """A torchvision-style detector on float32 [C, H, W] inputs -> its raw detections (model labels) as numpy.

    Images of one size share a model call; sizes never mix in one: torchvision zero-pads a batch to its largest
    image, which would make an image's detections depend on the others in its batch."""
    out: list = [None] * len(inputs)
    for idx in group_by_shape([x.transpose(1, 2, 0) for x in inputs]).values():
        found = model([torch.from_numpy(inputs[i]).to(device) for i in idx])
        for i, d in zip(idx, found):
            out[i] = {"boxes": d["boxes"].float().cpu().numpy().reshape(-1, 4), "scores": d["scores"].float().cpu().numpy(),
                      "labels": d["labels"].cpu().numpy().astype(np.int64)}
    return out


def keep_detections(d: dict[str, np.ndarray], score_threshold: float, label_offset: int,
                    num_classes: int | None = None) -> dict[str, np.ndarray]:
    """Detections scoring >= score_threshold, labels shifted to class indices 0..K-1 (others dropped)."""
    labels = np.asarray(d["labels"], np.int64) - label_offset
    scores = np.asarray(d["scores"], np.float32)
    keep = scores >= score_threshold
    if num_classes is not None:
        keep &= (labels >= 0) & (labels < num_classes)
    return {"boxes": np.asarray(d["boxes"], np.float32).reshape(-1, 4)[keep], "scores": scores[keep],
            "labels": labels[keep]}


def group_by_shape(images: Sequence[np.ndarray]) -> dict[tuple[int, int], list[int]]:
    """Image indices by (H, W): segmenter batches need one size (strips from one camera share it)."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, im in enumerate(images):
        groups.setdefault(tuple(np.shape(im)[:2]), []).append(i)
    return groups


def default_postprocess(num_classes: int) -> PostProcess:
    """What a segmenter without a saved post-processing gets: threshold 0.5, no minimum areas, no gate."""
    return PostProcess(threshold=(0.5,) * num_classes, min_area=(0,) * num_classes,
                       gate_threshold=(0.5,) * num_classes)


# -- predictors --------------------------------------------------------------------------------------------


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


class ClassifierPredictor(Predictor):
    """Images -> class probabilities float32 [N, K] (K = len(meta.class_names), in the meta's order)."""

    task = "classification"
    default_batch_size = 64
    options = ("batch_size", "tta")

    def __init__(self, meta: ModelMeta | dict, backend: Any, tta: bool | None = None,
                 batch_size: int | None = None) -> None:
        super().__init__(meta, backend, batch_size)
        self.tta = self.meta.tta if tta is None else bool(tta)

    def pre_process(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """-> float32 [N, in_chans, H, W], resized to meta.input_size (INTER_AREA) and normalised."""
        h, w = self.meta.input_size
        batch = [im if im.shape[:2] == (h, w) else cv2.resize(im, (w, h), interpolation=cv2.INTER_AREA)
                 for im in self.check_images(images)]
        return normalise(np.stack(batch), self.meta.mean, self.meta.std)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """-> logits [N, K]; with TTA the mean of the logits for none, hflip and vflip."""
        logits = self.backend(x)[0]
        if self.tta:
            logits = (logits + self.backend(x[..., ::-1])[0] + self.backend(x[..., ::-1, :])[0]) / 3.0
        return logits

    def post_process(self, logits: np.ndarray) -> np.ndarray:
        return softmax(logits)

    def _join(self, parts: list) -> np.ndarray:
        return np.concatenate(parts) if parts else np.zeros((0, self.meta.num_classes), np.float32)


class DetectorPredictor(Predictor):
    """Images of any size -> per image {"boxes", "scores", "labels"} (class indices 0..K-1), scores >= the
    threshold (default meta.score_threshold, else 0.3). The ONNX graph takes one image per call."""

    task = "detection"
    default_batch_size = 8
    options = ("batch_size", "score_threshold")

    def __init__(self, meta: ModelMeta | dict, backend: Any, score_threshold: float | None = None,
                 batch_size: int | None = None) -> None:
        super().__init__(meta, backend, batch_size)
        if score_threshold is None:
            score_threshold = self.meta.score_threshold
        self.score_threshold = float(DEFAULT_SCORE_THRESHOLD if score_threshold is None else score_threshold)

    def pre_process(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        """-> float32 [in_chans, H, W] in [0, 1] per image (the model normalises and resizes itself)."""
        return detector_inputs(self.check_images(images))

    def forward(self, x: list[np.ndarray]) -> list[dict[str, np.ndarray]]:
        """-> per image the model's detections (model labels, every score it keeps)."""
        if self.backend.kind == "torch":
            return run_detector(self.backend.model, x, self.backend.device)
        out = []
        for image in x:  # the graph takes one image [C, H, W] of any size
            boxes, labels, scores = self.backend(image)
            out.append({"boxes": boxes.reshape(-1, 4), "scores": scores, "labels": labels.astype(np.int64)})
        return out

    def post_process(self, out: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
        return [keep_detections(d, self.score_threshold, self.meta.label_offset, self.meta.num_classes) for d in out]


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
        super().__init__(meta, backend, batch_size or (8 if backend.kind == "onnx" else None))
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
        """The artifact's tile (h, w) on the ONNX back end; None on PyTorch (whole images)."""
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


PREDICTORS: dict[str, type[Predictor]] = {
    "classification": ClassifierPredictor, "detection": DetectorPredictor, "segmentation": SegmenterPredictor,
}


def load_predictor(spec: str | Path, backend: str = "auto", *, task: str | None = None,
                   device: str | torch.device = "cpu", threads: int = 2, **options: Any) -> Predictor:
    """The predictor of a run folder, .pt checkpoint, built-in name or .onnx artifact.

    backend: "auto" (by the file: .onnx -> ONNX Runtime, else PyTorch), "torch" or "onnx". task: refuse other
    tasks. device: PyTorch only; threads: ONNX Runtime intra-op threads. `options` go to the predictor
    (tta, batch_size, score_threshold, gate, ...).
    """
    from steelscan.runs import load_checkpoint, resolve_model

    if backend not in BACKENDS:
        raise ConfigError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    path = resolve_model(spec)
    is_onnx = path.suffix.lower() == ".onnx"
    if backend == "torch" and is_onnx:
        raise ConfigError(f"the torch back end needs a checkpoint (run folder, .pt or built-in name), got the ONNX "
                          f"artifact {path}")
    if backend == "onnx" and not is_onnx:
        raise ConfigError(f"the onnx back end needs an .onnx artifact (`steelscan export {spec}`), got {path}")
    if is_onnx:
        from steelscan.deploy.artifact import ort_session, read_artifact
        from steelscan.deploy.runtime import SegmenterRuntime

        proto, meta = read_artifact(path)
        _check_task(meta, task, spec)
        if meta.task == "segmentation":
            runner: Any = SegmenterRuntime(proto, meta, threads)
        else:
            runner = OnnxBackend(ort_session(proto.SerializeToString(), threads))
    else:
        from steelscan.runs import read_checkpoint

        if task is not None:  # a wrong task is refused before the model is built
            _check_task(read_checkpoint(path, mmap=True)[1], task, spec)
        net, meta = load_checkpoint(path, device)
        runner = TorchBackend(net, device)
    predictor = PREDICTORS[meta.task](meta, runner, **options)
    predictor.source = str(spec)
    return predictor


def _check_task(meta: ModelMeta, task: str | None, spec: Any) -> None:
    if task is not None and meta.task != task:
        raise ModelFileError(f"{spec} is a {meta.task} model; expected a {task} model")
