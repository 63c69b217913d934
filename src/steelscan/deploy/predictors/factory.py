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

BACKENDS = ("auto", "torch", "onnx", "openvino")

PREDICTORS: dict[str, type[Predictor]] = {
    "classification": ClassifierPredictor, "detection": DetectorPredictor, "segmentation": SegmenterPredictor,
}


def load_predictor(spec: str | Path, backend: str = "auto", *, task: str | None = None,
                   device: str | torch.device = "cpu", threads: int = 2, openvino: dict | None = None,
                   **options: Any) -> Predictor:
    """The predictor of a run folder, .pt checkpoint, built-in name, .onnx or OpenVINO .xml artifact.

    backend: "auto" (by the file: .onnx -> ONNX Runtime, .xml -> OpenVINO, else PyTorch), "torch", "onnx" or
    "openvino" (an .xml, or an .onnx read by OpenVINO; segmenters and classifiers). task: refuse other tasks. device:
    PyTorch only; threads: ONNX Runtime intra-op / OpenVINO inference threads. openvino: keyword arguments of
    `OpenVinoSegmenterRuntime` (hint, streams, precision). `options` go to the predictor (tta, batch_size,
    score_threshold, gate, ...).
    """
    from steelscan.engine.runs import load_checkpoint, resolve_model

    if backend not in BACKENDS:
        raise ConfigError(f"backend: expected one of {', '.join(BACKENDS)}, got {backend!r}")
    path = resolve_model(spec)
    is_onnx = path.suffix.lower() == ".onnx"
    if path.suffix.lower() == ".xml" or backend == "openvino":
        return _openvino_predictor(path, backend, task, spec, threads, openvino or {}, options)
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


RUNTIMES = ("auto", "onnx", "openvino", "openvino-bf16")


def load_on_runtime(model: str, runtime: str = "auto", *, task: str | None = None, threads: int = 2,
                    **options: Any) -> Predictor:
    """`load_predictor` on a named runtime: "auto" (a checkpoint on PyTorch, an artifact by its file), "onnx",
    "openvino" or "openvino-bf16" (bf16 pays on CPUs with AMX / AVX512-bf16). A checkpoint asked for on ONNX
    Runtime or OpenVINO is exported to a temporary .onnx first (`steelscan export` once to skip that)."""
    import tempfile

    from steelscan.deploy.export import artifact_for_frames

    if runtime not in RUNTIMES:
        raise ConfigError(f"runtime: expected one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime == "auto":
        return load_predictor(model, task=task, threads=threads, **options)
    with tempfile.TemporaryDirectory(prefix="steelscan-export-") as tmp:  # models are read into memory
        path = model if str(model).endswith((".onnx", ".xml")) else artifact_for_frames(str(model), Path(tmp))
        if runtime == "openvino-bf16":
            options["openvino"] = {**options.get("openvino", {}), "precision": "bf16"}
        predictor = load_predictor(path, runtime.split("-")[0], task=task, threads=threads, **options)
    predictor.source = str(model)
    return predictor


def _openvino_predictor(path: Path, backend: str, task: str | None, spec: Any, threads: int, ov_options: dict,
                        options: dict) -> Predictor:
    """An OpenVINO IR (or an .onnx read by OpenVINO) -> a segmenter predictor on `OpenVinoSegmenterRuntime`, or a
    classifier's on `OpenVinoBackend`."""
    if backend not in ("auto", "openvino"):
        raise ConfigError(f"the {backend} back end cannot run the OpenVINO artifact {path}; use backend "
                          "'openvino' (or 'auto')")
    if path.suffix.lower() not in (".xml", ".onnx"):
        raise ConfigError(f"the openvino back end needs an .xml or .onnx artifact (`steelscan export {spec} "
                          f"--format openvino`), got {path}")
    from steelscan.deploy.openvino_runtime import (
        OpenVinoBackend, OpenVinoSegmenterRuntime, openvino_available, read_openvino_artifact,
    )

    if not openvino_available():  # optional extra: say so instead of an ImportError
        raise ConfigError(f"{path} needs the optional package openvino (pip install 'steelscan[openvino]')")
    model, meta = read_openvino_artifact(path)
    _check_task(meta, task, spec)
    if meta.task == "classification":
        predictor: Predictor = ClassifierPredictor(meta, OpenVinoBackend(model, threads, **ov_options), **options)
    elif meta.task == "segmentation":
        predictor = SegmenterPredictor(meta, OpenVinoSegmenterRuntime(model, meta, threads, **ov_options), **options)
    else:
        raise ConfigError(f"the openvino back end runs segmenters and classifiers; {spec} is a {meta.task} model "
                          "(export it to .onnx for ONNX Runtime)")
    predictor.source = str(spec)
    return predictor


def _check_task(meta: ModelMeta, task: str | None, spec: Any) -> None:
    if task is not None and meta.task != task:
        raise ModelFileError(f"{spec} is a {meta.task} model; expected a {task} model")
