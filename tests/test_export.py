"""ONNX export carries the checkpoint meta; ONNX Runtime matches PyTorch; int8 quantisation runs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steelscan.export import export_onnx, quantize_int8, read_onnx_meta
from steelscan.registry import create_model
from steelscan.runtime import onnx_logits, onnx_session


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("mobilenetv3_small", num_classes=6).eval()
    meta = {"task": "classification", "model": "mobilenetv3_small", "image_size": 48, "mean": 0.45, "std": 0.225,
            "class_names": ["a", "b", "c", "d", "e", "f"]}
    path = export_onnx(model, meta, tmp_path_factory.mktemp("onnx") / "m.onnx")
    return model, meta, path


def test_onnx_runtime_matches_pytorch_on_fresh_random_inputs(exported):
    model, meta, path = exported
    session, read_meta = onnx_session(path, threads=1)
    assert read_meta == meta
    x = torch.randn(5, 1, 48, 48)  # fresh each run: no seed, so a parity bug cannot hide behind one input
    with torch.inference_mode():
        expected = model(x).numpy()
    np.testing.assert_allclose(onnx_logits(session, x.numpy()), expected, rtol=1e-3, atol=1e-4)


def test_int8_keeps_meta_and_runs(exported, tmp_path):
    _, meta, path = exported
    calib = np.random.default_rng(0).normal(size=(16, 1, 48, 48)).astype(np.float32)
    q = quantize_int8(path, tmp_path / "q.onnx", calib)
    assert read_onnx_meta(q)["class_names"] == meta["class_names"]
    session, _ = onnx_session(q, threads=1)
    assert onnx_logits(session, calib[:3]).shape == (3, 6)


def test_missing_or_foreign_artifact_is_a_clear_error(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    with pytest.raises(ValueError, match="ONNX artifact not found"):
        onnx_session(tmp_path / "none.onnx")
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), tmp_path / "foreign.onnx")
    with pytest.raises(ValueError, match="carries no steelscan.meta"):
        read_onnx_meta(tmp_path / "foreign.onnx")
