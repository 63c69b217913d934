"""OpenVINO back end of segmenter artifacts: export -> IR -> `OpenVinoSegmenterRuntime` gives what ONNX Runtime
gives on the same artifact (tiny untrained segmenter, f32), gated and ungated. Skipped without the optional
package openvino (`pip install 'steelscan[openvino]'`)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from steelscan.core.errors import ConfigError
from steelscan.deploy.export import onnx_to_openvino
from steelscan.deploy.predictors import load_predictor
from tests.service_helpers import tiny_artifact

HAVE_OV = importlib.util.find_spec("openvino") is not None
needs_openvino = pytest.mark.skipif(not HAVE_OV, reason="the optional package openvino is not installed "
                                                        "(pip install 'steelscan[openvino]')")


def test_without_openvino_the_backend_says_so(tmp_path, monkeypatch):
    """Runs with or without the package: asking for OpenVINO without it is a ConfigError naming the extra."""
    import steelscan.deploy.openvino_runtime as ovr

    monkeypatch.setattr(ovr, "openvino_available", lambda: False)
    with pytest.raises(ConfigError, match=r"steelscan\[openvino\]"):
        load_predictor(tiny_artifact(tmp_path), backend="openvino")


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ov")
    onnx_path = tiny_artifact(folder)
    return onnx_path, onnx_to_openvino(onnx_path, folder / "seg.xml")


def _frames(n: int = 3) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (128, 256), np.uint8) for _ in range(n)]  # 2x2 tiles of 64x128


@needs_openvino
@pytest.mark.parametrize("gate", [True, False])
def test_openvino_matches_onnx_runtime(artifacts, gate):
    onnx_path, xml = artifacts
    frames = _frames()
    ref = load_predictor(onnx_path, threads=1, gate=gate).predict(frames)
    for predictor in (load_predictor(xml, threads=1, gate=gate),  # .xml: OpenVINO by its suffix
                      load_predictor(onnx_path, backend="openvino", threads=1, gate=gate)):
        assert predictor.backend_kind == "openvino" and predictor.tile == (64, 128)
        got = predictor.predict(frames)
        assert got.probabilities.shape == ref.probabilities.shape == (3, 4, 128, 256)
        np.testing.assert_allclose(got.probabilities, ref.probabilities, atol=1e-4)
        np.testing.assert_allclose(got.presence, ref.presence, atol=1e-4)
        assert (got.masks != ref.masks).mean() < 1e-3  # only pixels on the threshold may flip
        assert (got.tiles == ref.tiles).all() and (got.decoded == ref.decoded).all()


@needs_openvino
def test_openvino_gate_skips_tiles_as_onnx_runtime(tmp_path):
    """A gate threshold above every presence: no tile decoded, all-zero probabilities, on both runtimes."""
    from steelscan.deploy.artifact import attach_meta, read_artifact_meta

    onnx_path = tiny_artifact(tmp_path)
    meta = read_artifact_meta(onnx_path)
    attach_meta(onnx_path, meta.model_copy(update={"artifact": meta.artifact.model_copy(
        update={"tile_gate_threshold": 1.0})}))
    xml = onnx_to_openvino(onnx_path, tmp_path / "seg.xml")
    ref = load_predictor(onnx_path, threads=1).predict(_frames(2))
    got = load_predictor(xml, threads=1).predict(_frames(2))
    assert (ref.decoded == 0).all() and (got.decoded == 0).all() and not got.probabilities.any()
    np.testing.assert_allclose(got.presence, ref.presence, atol=1e-4)


@needs_openvino
def test_openvino_refuses_bad_options_and_foreign_files(artifacts, tmp_path):
    import openvino as ov

    from steelscan.core.errors import ModelFileError

    onnx_path, xml = artifacts
    with pytest.raises(ConfigError, match="hint"):
        load_predictor(xml, openvino={"hint": "FAST"})
    with pytest.raises(ConfigError, match="torch back end cannot run"):
        load_predictor(xml, backend="torch")
    bare = tmp_path / "bare.xml"  # converted by OpenVINO itself: an IR without the steelscan meta
    ov.save_model(ov.convert_model(str(onnx_path)), str(bare))
    with pytest.raises(ModelFileError, match="not a steelscan artifact"):
        load_predictor(bare)


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    import torch

    from steelscan.core.meta import ModelMeta
    from steelscan.engine.runs import save_checkpoint
    from steelscan.models import create_model

    torch.manual_seed(0)
    kwargs = {"num_classes": 3, "in_chans": 1, "pretrained": False}
    path = tmp_path_factory.mktemp("ovcls") / "cls.pt"
    save_checkpoint(path, create_model("efficientnet_lite0", **kwargs).eval(),
                    ModelMeta(task="classification", model="efficientnet_lite0", model_kwargs=kwargs,
                              class_names=("a", "b", "c"), input_size=(64, 64)))
    return path


def test_classifier_runtimes_are_checked_before_loading(tiny_classifier):
    from steelscan.deploy.predictors.factory import load_on_runtime

    with pytest.raises(ConfigError, match="runtime"):
        load_on_runtime(str(tiny_classifier), "tensorrt", task="classification")


@needs_openvino
@pytest.mark.parametrize("runtime", ["openvino", "openvino-bf16"])
def test_a_classifier_on_openvino_matches_onnx_runtime(tiny_classifier, runtime):
    from steelscan.deploy.predictors.factory import load_on_runtime

    images = [np.random.default_rng(i).integers(0, 256, (80, 80), np.uint8) for i in range(5)]
    ref = load_on_runtime(str(tiny_classifier), "onnx", task="classification", threads=1)
    ov = load_on_runtime(str(tiny_classifier), runtime, task="classification", threads=1, tta=True)
    assert ov.backend_kind == "openvino" and ref.backend_kind == "onnx"
    tol = 1e-4 if runtime == "openvino" else 3e-2  # bf16 keeps ~3 significant digits
    np.testing.assert_allclose(ov.predict(images), ref.replace(tta=True).predict(images), atol=tol)
