"""ONNX export that carries its own preprocessing: the checkpoint's meta travels in the model's metadata.

The ONNX graph takes float32 [N, 1, S, S] already normalised and returns logits [N, K]; `steelscan.meta`
in the metadata holds image_size, mean, std, class_names and the rest of the checkpoint meta, so inference
reads only the artifact.
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


def quantize_int8(src: str | Path, dst: str | Path, calibration: np.ndarray) -> Path:
    """Static int8 quantisation (QDQ, per-channel) calibrated on real normalised inputs [N, 1, S, S].

    ORT's `quant_pre_process` (shape inference + graph optimisation) runs first: without it the QDQ graph
    was 2-9x slower than fp32 here (benchmarks/results/neu_cls_experiments.md).
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
        quant_pre_process(str(src), str(pre))
        quantize_static(str(pre), str(dst), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    _attach_meta(Path(dst), {**read_onnx_meta(src), "quantization": "int8 static QDQ, per-channel"})
    return Path(dst)
