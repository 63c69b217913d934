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

    base.py        back ends, the `Predictor` base class, the shared pre-processing steps
    classifier.py  `ClassifierPredictor`
    detector.py    `DetectorPredictor` and its steps (also used by detection evaluation)
    segmenter.py   `SegmenterPredictor`, `Segmentation`
    factory.py     `load_predictor`
"""

from __future__ import annotations

from steelscan.deploy.predictors.base import (
    OnnxBackend,
    Predictor,
    TorchBackend,
    group_by_shape,
    normalise,
    to_channels,
)
from steelscan.deploy.predictors.classifier import ClassifierPredictor, softmax
from steelscan.deploy.predictors.detector import (
    DEFAULT_SCORE_THRESHOLD,
    DetectorPredictor,
    detector_inputs,
    keep_detections,
    run_detector,
)
from steelscan.deploy.predictors.factory import BACKENDS, PREDICTORS, load_predictor
from steelscan.deploy.predictors.segmenter import STRIDE, Segmentation, SegmenterPredictor, default_postprocess

__all__ = [
    "BACKENDS",
    "DEFAULT_SCORE_THRESHOLD",
    "PREDICTORS",
    "STRIDE",
    "ClassifierPredictor",
    "DetectorPredictor",
    "OnnxBackend",
    "Predictor",
    "Segmentation",
    "SegmenterPredictor",
    "TorchBackend",
    "default_postprocess",
    "detector_inputs",
    "group_by_shape",
    "keep_detections",
    "load_predictor",
    "normalise",
    "run_detector",
    "softmax",
    "to_channels",
]
