"""Export a checkpoint to one artifact that carries its own preprocessing: ONNX (or OpenVINO IR from it).

The artifact's metadata (`steelscan.deploy.artifact`) is the checkpoint's `ModelMeta` plus an `ArtifactInfo`
section, so inference reads only the artifact, never a training config.

Classifiers: the graph takes float32 [N, in_chans, H, W] (H, W = meta.input_size), already normalised, and
returns logits [N, K].
Segmenters: the graph takes float32 [N, in_chans, h, w] normalised tiles and returns `masks` (probabilities
[N, K, h, w], the sigmoid is inside the graph), `presence` (probabilities [N, K]) and the encoder features
`feat1..featM`, so that the runtime can cut it into a gate (encoder + presence head) and a decoder that runs
only on tiles the gate passes (`steelscan.deploy.runtime.SegmenterRuntime`).
Detectors: the whole torchvision Faster R-CNN (its own normalisation and resize, RPN, RoI heads, NMS) as one
graph: one image float32 [in_chans, H, W] in [0, 1], any H and W, -> `boxes` [D, 4] xyxy in its pixels,
`labels` [D] (model labels: class index + meta.label_offset), `scores` [D]. Detectors with deformable
convolutions (`dcn`) do not export: torchvision's deform_conv2d has no ONNX operator; they run with the
PyTorch back end.
"""

from __future__ import annotations

import importlib.util
import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from steelscan.core.errors import ConfigError, ModelFileError
from steelscan.core.meta import ArtifactInfo, ModelMeta
from steelscan.deploy.artifact import attach_meta, read_artifact_meta

FORMATS = ("onnx", "openvino")
EXPORTABLE_TASKS = ("classification", "detection", "segmentation")
DETECTOR_OUTPUTS = ["boxes", "labels", "scores"]
DEFAULT_TILE_GATE_THRESHOLD = 0.3


class SegmenterGraph(nn.Module):
    """The export view of a `Segmenter`: probabilities and the encoder features as named outputs."""

    def __init__(self, segmenter: nn.Module, in_chans: int, tile: tuple[int, int]) -> None:
        super().__init__()
        self.net, self.in_chans, self.tile = segmenter.net, in_chans, tuple(tile)

    def forward(self, x: torch.Tensor):
        feats = self.net.encoder(x)
        # smp's first "feature" is the input itself; the decoder reads only its shape. A placeholder sized by
        # Python ints (not by the traced input) keeps the decoder independent of the image: the graph can be cut.
        stand_in = torch.zeros(feats[1].shape[0], self.in_chans, *self.tile, dtype=x.dtype)
        masks = self.net.segmentation_head(self.net.decoder([stand_in, *feats[1:]]))
        presence = self.net.classification_head(feats[-1])
        return (masks.sigmoid(), presence.sigmoid(), *feats[1:])


def _onnx_export(graph: nn.Module, x: torch.Tensor, path: Path, outputs: list[str], opset: int) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter warns about its own deprecation
        torch.onnx.export(graph, x, str(path), input_names=["image"], output_names=outputs,
                          dynamic_axes={n: {0: "batch"} for n in ["image", *outputs]}, opset_version=opset,
                          dynamo=False)


def export_classifier(model: nn.Module, meta: ModelMeta | dict, path: str | Path, opset: int = 17) -> Path:
    """A classifier as one ONNX file: float32 [N, in_chans, H, W] normalised -> logits [N, K]."""
    meta = ModelMeta.from_dict(meta)
    path = Path(path)
    h, w = meta.input_size
    _onnx_export(model.eval(), torch.zeros(1, meta.in_chans, h, w), path, ["logits"], opset)
    attach_meta(path, meta.model_copy(update={"artifact": ArtifactInfo()}))
    return path


def export_segmenter(model: nn.Module, meta: ModelMeta | dict, path: str | Path, tile: tuple[int, int] | None = None,
                     gate_threshold: float = DEFAULT_TILE_GATE_THRESHOLD, opset: int = 17) -> Path:
    """A segmenter as one ONNX file for inspection. `tile` (h, w; multiples of 32; default the training crop,
    meta.input_size) is the size frames are cut to; a tile goes on to the decoder when any class's presence
    probability is >= `gate_threshold`."""
    meta = ModelMeta.from_dict(meta)
    th, tw = tile or meta.input_size
    if th <= 0 or tw <= 0 or th % 32 or tw % 32:
        raise ConfigError(f"tile sides must be positive multiples of 32, got {th}x{tw}")
    if not 0.0 <= gate_threshold <= 1.0:
        raise ConfigError(f"gate threshold must be in [0, 1], got {gate_threshold}")
    path = Path(path)
    graph = SegmenterGraph(model, meta.in_chans, (th, tw)).eval()
    x = torch.zeros(1, meta.in_chans, th, tw)
    with torch.no_grad():
        n_feats = len(graph(x)) - 2
    names = ["masks", "presence", *[f"feat{i + 1}" for i in range(n_feats)]]
    _onnx_export(graph, x, path, names, opset)
    info = ArtifactInfo(tile=(th, tw), tile_gate_threshold=gate_threshold, feature_outputs=tuple(names[2:]))
    attach_meta(path, meta.model_copy(update={"artifact": info}))
    return path


class _DetectorGraph(nn.Module):
    """One image -> (boxes, labels, scores) in that order: torchvision's detectors return their dicts in
    different key orders (FCOS puts scores before labels), and the export flattens a dict in its own order."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor):
        d = self.model([image])[0]
        return tuple(d[k] for k in DETECTOR_OUTPUTS)


def export_detector(model: nn.Module, meta: ModelMeta | dict, path: str | Path, opset: int = 17) -> Path:
    """A torchvision detector as one ONNX file: image float32 [C, H, W] in [0, 1] (any size) -> boxes, labels,
    scores (every detection the model keeps; the predictor applies the score threshold)."""
    meta = ModelMeta.from_dict(meta)
    if meta.model_kwargs.get("dcn"):
        raise ModelFileError(f"{meta.model} with dcn (deformable convolutions) does not export to ONNX: "
                             "torchvision's deform_conv2d has no ONNX operator; run it from its checkpoint")
    path = Path(path)
    h, w = meta.input_size
    x = torch.rand(meta.in_chans, h, w, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracing warnings of torchvision's detection code
        torch.onnx.export(_DetectorGraph(model).eval(), (x,), str(path), input_names=["image"], output_names=DETECTOR_OUTPUTS,
                          dynamic_axes={"image": {1: "height", 2: "width"}, **{n: {0: "detections"} for n in DETECTOR_OUTPUTS}},
                          opset_version=opset, dynamo=False)
    attach_meta(path, meta.model_copy(update={"artifact": ArtifactInfo()}))
    return path


def export_model(model: nn.Module, meta: ModelMeta, path: str | Path, tile: tuple[int, int] | None = None,
                 gate_threshold: float = DEFAULT_TILE_GATE_THRESHOLD) -> Path:
    """A loaded checkpoint -> one ONNX artifact, by the meta's task."""
    if meta.task == "segmentation":
        return export_segmenter(model, meta, path, tile, gate_threshold)
    if meta.task == "classification":
        return export_classifier(model, meta, path)
    if meta.task == "detection":
        return export_detector(model, meta, path)
    raise ModelFileError(f"export supports {', '.join(EXPORTABLE_TASKS)} models, got a {meta.task} model")


def check_format(fmt: str) -> None:
    """Refuse an unknown format, or OpenVINO without its package, before anything is read or written."""
    if fmt not in FORMATS:
        raise ConfigError(f"--format expects {' or '.join(FORMATS)}, got {fmt!r}")
    if fmt == "openvino" and importlib.util.find_spec("openvino") is None:
        raise ConfigError("--format openvino needs the optional package openvino (pip install openvino); "
                          "nothing was written")


def export_artifact(model: str | Path, out: str | Path, fmt: str = "onnx", tile: tuple[int, int] | None = None,
                    gate_threshold: float = DEFAULT_TILE_GATE_THRESHOLD) -> Path:
    """A checkpoint (run folder, .pt or built-in name) -> one artifact at `out`: ONNX, or OpenVINO IR
    (`out` with suffix .xml, and its .bin) converted from the ONNX graph with the same meta in its rt_info."""
    from steelscan.engine.runs import load_checkpoint

    check_format(fmt)
    net, meta = load_checkpoint(model)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "onnx":
        return export_model(net, meta, out, tile, gate_threshold)
    with tempfile.TemporaryDirectory() as tmp:
        return onnx_to_openvino(export_model(net, meta, Path(tmp) / "model.onnx", tile, gate_threshold), out)


def onnx_to_openvino(onnx_path: str | Path, out: str | Path, compress_to_fp16: bool = False) -> Path:
    """An .onnx artifact -> OpenVINO IR (`out` with suffix .xml, and its .bin) with the same meta in its rt_info
    (steelscan/meta). Weights stay fp32 unless `compress_to_fp16` (ov.save_model would halve them by default:
    the CPU then decompresses them at load; kept fp32 so the IR computes what the ONNX graph computes)."""
    import openvino as ov

    ov_model = ov.convert_model(str(onnx_path))
    ov_model.set_rt_info(json.dumps(read_artifact_meta(onnx_path).to_dict()), ["steelscan", "meta"])
    xml = Path(out).with_suffix(".xml")
    ov.save_model(ov_model, str(xml), compress_to_fp16=compress_to_fp16)
    return xml


def quantize_int8(src: str | Path, dst: str | Path, calibration: np.ndarray, skip_symbolic_shape: bool = False) -> Path:
    """Static int8 quantisation (QDQ, per-channel) calibrated on real normalised inputs [N, C, h, w].

    ORT's `quant_pre_process` (shape inference + graph optimisation) runs first: without it the QDQ graph
    was 2-9x slower than fp32 here (benchmarks/results/neu_cls_experiments.md). Segmenter graphs need
    `skip_symbolic_shape=True`: ORT's symbolic shape inference stops on them ("Incomplete symbolic shape
    inference") and leaves its temporary file in the working folder.
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    meta = read_artifact_meta(src)

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"image": calibration[i : i + 16]} for i in range(0, len(calibration), 16)])

        def get_next(self):
            return next(self.batches, None)

    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(src), str(pre), skip_symbolic_shape=skip_symbolic_shape)
        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    art = meta.artifact.model_copy(update={"quantization": "int8 static QDQ, per-channel"})
    attach_meta(Path(dst), meta.model_copy(update={"artifact": art}))
    return Path(dst)


def quantize_openvino_int8(src: str | Path, dst: str | Path, calibration: np.ndarray) -> Path:
    """OpenVINO post-training int8 (NNCF `quantize`, default preset) of an .xml or .onnx segmenter artifact,
    calibrated on real normalised inputs [N, C, h, w], saved as IR with the source's meta (quantization
    noted). Needs the optional packages openvino and nncf."""
    import nncf
    import openvino as ov

    from steelscan.deploy.openvino_runtime import RT_INFO_KEY, read_openvino_artifact

    model, meta = read_openvino_artifact(src)
    data = nncf.Dataset([calibration[i : i + 1] for i in range(len(calibration))])
    q = nncf.quantize(model, data, subset_size=len(calibration))
    art = meta.artifact.model_copy(update={"quantization": "int8 NNCF post-training (OpenVINO)"})
    q.set_rt_info(json.dumps(meta.model_copy(update={"artifact": art}).to_dict()), RT_INFO_KEY)
    xml = Path(dst).with_suffix(".xml")
    ov.save_model(q, str(xml), compress_to_fp16=False)
    return xml


def artifact_for_frames(model: str, out: Path, frame_shape: tuple[int, int] | None = None) -> Path:
    """An .onnx artifact as given, else export the checkpoint (run folder, .pt, built-in) into OUT once, with
    the whole frame as its tile where the model takes it (see `whole_frame_tile`)."""
    from steelscan.deploy.tiles import whole_frame_tile

    import hashlib

    from steelscan.engine.runs import resolve_model

    if model.endswith(".onnx"):
        return Path(model)
    tile = whole_frame_tile(frame_shape) if frame_shape else None
    suffix = f"_{tile[0]}x{tile[1]}" if tile else ""
    # the checkpoint's path, size and time in the name: two run folders' model.pt, or a retrained one, never
    # reuse another's artifact
    path = resolve_model(model)
    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:8]
    target = out / f"{Path(model).name.removesuffix('.pt')}{suffix}-{key}.onnx"
    if not target.is_file():
        export_artifact(model, target, "onnx", tile)
    return target
