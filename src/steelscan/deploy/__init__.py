"""Deployment: export to ONNX / OpenVINO with typed metadata, and predictors with PyTorch and ONNX Runtime back ends.

    export.py      checkpoint -> artifact (`export_artifact`, `export_classifier`, `export_segmenter`, int8)
    artifact.py    the ModelMeta inside an artifact (`read_artifact`, `attach_meta`), ONNX Runtime sessions
    runtime.py     `SegmenterRuntime`: a segmenter artifact cut into gate and decoder
    predictors/    `ClassifierPredictor`, `DetectorPredictor`, `SegmenterPredictor`, `load_predictor`
    tiles.py       frames <-> fixed-size model tiles
    inputs.py      image files -> arrays for the predictors

deploy imports models, core, data, metrics and postprocess; never cli, service or inspection.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "load_predictor": "predictors", "Predictor": "predictors", "ClassifierPredictor": "predictors",
    "DetectorPredictor": "predictors", "SegmenterPredictor": "predictors", "Segmentation": "predictors",
    "TorchBackend": "predictors", "OnnxBackend": "predictors",
    "read_artifact": "artifact", "export_artifact": "export",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:  # the submodules import torch / onnx: load them on first use
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"steelscan.deploy.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'steelscan.deploy' has no attribute {name!r}")
