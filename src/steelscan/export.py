"""ONNX export that carries its own preprocessing: the checkpoint's meta travels in the model's metadata.

Classifiers: the graph takes float32 [N, 1, S, S] already normalised and returns logits [N, K].
Segmenters: the graph takes float32 [N, 1, h, w] normalised tiles and returns `masks` (probabilities
[N, 4, h, w], the sigmoid is inside the graph), `presence` (probabilities [N, 4]) and the encoder features
`feat1..featM`, so that the runtime can cut it into a gate (encoder + presence head) and a decoder that runs
only on tiles the gate passes (`steelscan.runtime.SegmenterRuntime`).
`steelscan.meta` in the metadata holds the normalisation, class names, tile size, the tuned post-processing
and the artifact version, so inference reads only the artifact, never a training config.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn as nn

META_KEY = "steelscan.meta"
ARTIFACT_FORMAT = "steelscan-onnx"
ARTIFACT_VERSION = 1


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


def export_segmenter(model: nn.Module, meta: dict, path: str | Path, tile: tuple[int, int] = (256, 512),
                     gate_threshold: float = 0.3, opset: int = 17) -> Path:
    """A segmenter as one ONNX file for inspection. `tile` (h, w; multiples of 32) is the size frames are cut
    to; a tile goes on to the decoder when any class's presence probability is >= `gate_threshold`."""
    from steelscan.core.errors import SteelscanError

    th, tw = tile
    if th <= 0 or tw <= 0 or th % 32 or tw % 32:
        raise SteelscanError(f"tile sides must be positive multiples of 32, got {th}x{tw}")
    if not 0.0 <= gate_threshold <= 1.0:
        raise SteelscanError(f"gate threshold must be in [0, 1], got {gate_threshold}")
    path = Path(path)
    in_chans = int(meta["model_kwargs"].get("in_chans", 1))
    graph = SegmenterGraph(model, in_chans, (th, tw)).eval()
    x = torch.zeros(1, in_chans, th, tw)
    with torch.no_grad():
        n_feats = len(graph(x)) - 2
    names = ["masks", "presence", *[f"feat{i + 1}" for i in range(n_feats)]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, x, str(path), input_names=["image"], output_names=names,
                          dynamic_axes={n: {0: "batch"} for n in ["image", *names]}, opset_version=opset, dynamo=False)
    _attach_meta(path, {**meta, "format": ARTIFACT_FORMAT, "artifact_version": ARTIFACT_VERSION, "tile": [th, tw],
                        "in_chans": int(x.shape[1]), "tile_gate_threshold": gate_threshold,
                        "feature_outputs": names[2:]})
    return path


def export_onnx(model: nn.Module, meta: dict, path: str | Path, opset: int = 17) -> Path:
    path = Path(path)
    size = int(meta["image_size"])
    x = torch.zeros(1, 1, size, size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter warns about its own deprecation
        torch.onnx.export(model.eval(), x, str(path), input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, opset_version=opset, dynamo=False)
    _attach_meta(path, meta)
    return path


def _attach_meta(path: Path, meta: dict) -> None:
    proto = onnx.load(str(path))
    for p in [p for p in proto.metadata_props if p.key == META_KEY]:
        proto.metadata_props.remove(p)
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta)
    onnx.save(proto, str(path))


def read_onnx_meta(path: str | Path) -> dict:
    proto = onnx.load(str(path), load_external_data=False)
    for p in proto.metadata_props:
        if p.key == META_KEY:
            return json.loads(p.value)
    raise ValueError(f"{path} carries no {META_KEY} metadata: export it with `steelscan export`")


def quantize_int8(src: str | Path, dst: str | Path, calibration: np.ndarray, skip_symbolic_shape: bool = False) -> Path:
    """Static int8 quantisation (QDQ, per-channel) calibrated on real normalised inputs [N, 1, h, w].

    ORT's `quant_pre_process` (shape inference + graph optimisation) runs first: without it the QDQ graph
    was 2-9x slower than fp32 here (benchmarks/results/neu_cls_experiments.md). Segmenter graphs need
    `skip_symbolic_shape=True`: ORT's symbolic shape inference stops on them ("Incomplete symbolic shape
    inference") and leaves its temporary file in the working folder.
    """
    import tempfile

    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

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
    _attach_meta(Path(dst), {**read_onnx_meta(src), "quantization": "int8 static QDQ, per-channel"})
    return Path(dst)
