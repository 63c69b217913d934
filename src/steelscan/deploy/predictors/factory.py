"""`load_predictor`: the right predictor and back end for a run folder, checkpoint, built-in name or artifact."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from steelscan.core.errors import ConfigError, ModelFileError
from steelscan.core.meta import ModelMeta
from steelscan.deploy.predictors.base import OnnxBackend, Predictor, TorchBackend
from steelscan.deploy.predictors.classifier import ClassifierPredictor
from steelscan.deploy.predictors.detector import DetectorPredictor
from steelscan.deploy.predictors.segmenter import SegmenterPredictor

BACKENDS = ("auto", "torch", "onnx")

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
    from steelscan.engine.runs import load_checkpoint, resolve_model

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
        from steelscan.engine.runs import read_checkpoint

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
