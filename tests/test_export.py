"""ONNX export carries the checkpoint's ModelMeta; ONNX Runtime matches PyTorch; int8 quantisation runs;
OpenVINO without its package fails before writing anything."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steelscan.core.errors import ModelFileError, SteelscanError
from steelscan.core.meta import ARTIFACT_VERSION, ModelMeta
from steelscan.deploy.artifact import ort_session, read_artifact, read_artifact_meta
from steelscan.deploy.export import export_classifier, quantize_int8
from steelscan.models import create_model

META = ModelMeta(task="classification", model="mobilenetv3_small", model_kwargs={"num_classes": 6},
                 class_names=("a", "b", "c", "d", "e", "f"), input_size=(48, 48), mean=0.45, std=0.225)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    torch.manual_seed(0)
    model = create_model("mobilenetv3_small", num_classes=6).eval()
    path = export_classifier(model, META, tmp_path_factory.mktemp("onnx") / "m.onnx")
    return model, path


def test_onnx_runtime_matches_pytorch_on_fresh_random_inputs(exported):
    model, path = exported
    meta = read_artifact_meta(path)
    assert meta.model_copy(update={"artifact": None}) == META
    assert meta.artifact.format == "steelscan-onnx" and meta.artifact.version == ARTIFACT_VERSION
    session = ort_session(path, threads=1)
    assert session.get_inputs()[0].shape[1:] == [1, 48, 48]
    x = torch.randn(5, 1, 48, 48)  # fresh each run: no seed, so a parity bug cannot hide behind one input
    with torch.inference_mode():
        expected = model(x).numpy()
    np.testing.assert_allclose(session.run(None, {"image": x.numpy()})[0], expected, rtol=1e-3, atol=1e-4)


def test_int8_keeps_meta_and_runs(exported, tmp_path):
    _, path = exported
    calib = np.random.default_rng(0).normal(size=(16, 1, 48, 48)).astype(np.float32)
    q = quantize_int8(path, tmp_path / "q.onnx", calib)
    meta = read_artifact_meta(q)
    assert meta.class_names == META.class_names and meta.artifact.quantization.startswith("int8")
    session = ort_session(q, threads=1)
    assert session.run(None, {"image": calib[:3]})[0].shape == (3, 6)


def test_missing_or_foreign_artifact_is_a_clear_error(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    with pytest.raises(ModelFileError, match="artifact not found"):
        read_artifact(tmp_path / "none.onnx")
    (tmp_path / "empty.onnx").write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"is empty \(0 bytes\)"):
        read_artifact(tmp_path / "empty.onnx")
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), tmp_path / "foreign.onnx")
    with pytest.raises(ModelFileError, match="carries no steelscan.meta"):
        read_artifact_meta(tmp_path / "foreign.onnx")


def test_version_1_classifier_artifacts_are_migrated(exported, tmp_path):
    """Artifacts exported before ModelMeta carried the untyped checkpoint dict (no format, no version)."""
    import json

    import onnx

    from steelscan.deploy.artifact import META_KEY

    _, path = exported
    proto = onnx.load(str(path))
    old = {"task": "classification", "model": "mobilenetv3_small", "model_kwargs": {"num_classes": 6},
           "class_names": list("abcdef"), "image_size": 48, "mean": 0.45, "std": 0.225, "tta": True}
    for p in proto.metadata_props:
        if p.key == META_KEY:
            p.value = json.dumps(old)
    onnx.save(proto, str(tmp_path / "v1.onnx"))
    meta = read_artifact_meta(tmp_path / "v1.onnx")
    assert meta.input_size == (48, 48) and meta.tta and meta.class_names == tuple("abcdef") and meta.artifact


def test_export_cli_openvino_without_the_package_writes_nothing(tmp_path, monkeypatch, capsys):
    import importlib.util

    from steelscan.cli import main
    from steelscan.deploy.export import check_format

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    with pytest.raises(SteelscanError, match="needs the optional package openvino"):
        check_format("openvino")
    monkeypatch.chdir(tmp_path)
    assert main(["export", "neu-cls", "--format", "openvino", "--out", str(tmp_path / "sub" / "x.xml")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "needs the optional package openvino" in err
    assert list(tmp_path.iterdir()) == []  # no ONNX bytes in x.xml, no folder, nothing
    assert main(["export", "neu-cls", "--format", "tflite"]) == 2
    assert "--format expects onnx or openvino" in capsys.readouterr().err
