"""Smoke test of benchmarks/throughput.py as a fresh clone runs it (no --data, no out/synth-severstal: it writes
3 synthetic frames itself), with a random Lite0 U-Net and one pass."""

from __future__ import annotations

import json

import pytest
import torch

from steelscan.models.segmenter import build_segmenter
from steelscan.postprocess import PostProcess
from steelscan.engine.runs import save_checkpoint
from tests.conftest import load_benchmark


@pytest.mark.slow
def test_throughput_benchmark_smoke(tmp_path):
    torch.manual_seed(0)
    model = build_segmenter("unet_efficientnet_lite0")
    meta = {"task": "segmentation", "model": "unet_efficientnet_lite0",
            "model_kwargs": {"num_classes": 4, "in_chans": 1, "pretrained": False},
            "class_names": ["1", "2", "3", "4"], "mean": 0.5, "std": 0.5, "crop": [256, 512],
            "postprocess": PostProcess().as_dict()}
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, model, meta)
    out = tmp_path / "throughput.json"
    bench = load_benchmark("throughput")
    bench.DEFAULT_DATA = str(tmp_path / "absent")  # what a fresh clone sees: the default folder is missing
    bench.main(["--model", str(ckpt), "--frames", "3", "--repeats", "1", "--json", str(out), "--detector", "none"])

    doc = json.loads(out.read_text())
    assert doc["matmul_peak_gflops"] > 0 and doc["flops_per_frame_eager"] > 0
    assert doc["synthetic"] and doc["n_frames"] == 3 and "synthetic frames" in doc["synthetic_note"]
    assert not (tmp_path / "absent").exists()  # written to a temporary folder, gone afterwards
    paths = [r["path"] for r in doc["rows"]]
    assert len(paths) == 2 and paths[0].startswith("eager PyTorch") and paths[1].startswith("steelscan inspection")
    for r in doc["rows"]:
        assert r["frames_per_s"] > 0 and r["mpx_per_s"] > 0
        assert 0.0 <= r["dice_kaggle"] <= 1.0 and 0.0 <= r["all_empty_dice"] <= 1.0
        assert 0.0 <= r["decoded_share"] <= 1.0


@pytest.mark.slow
def test_detector_throughput_benchmark_smoke(tmp_path):
    from tests.detector_helpers import tiny_detector

    out = tmp_path / "det.json"
    load_benchmark("throughput_detector").main(["--model", str(tiny_detector(tmp_path)), "--frames", "2",
                                                "--repeats", "1", "--json", str(out)])
    doc = json.loads(out.read_text())
    assert doc["synthetic"] and doc["frame_shape"] == [256, 1600] and doc["tile"] == [64, 64]
    assert [r["path"] for r in doc["rows"]] == ["eager PyTorch, whole frame", "station, PyTorch",
                                               "station, ONNX Runtime"]
    for r in doc["rows"]:
        assert r["frames_per_s"] > 0 and 0 <= r["recall"] <= 1 and 0 <= r["precision"] <= 1


def test_detector_speed_measures_both_back_ends_and_their_map(det_synth, tmp_path):
    from steelscan.data.classes import NEU_CLASSES
    from tests.detector_helpers import tiny_detector

    det, _ = det_synth
    model = tiny_detector(tmp_path, family="fcos", classes=NEU_CLASSES)
    res = load_benchmark("detector_speed").main(["--model", str(model),
                                                 "--data", str(det), "--threads", "1", "--json", str(tmp_path / "s.json")])
    (row,) = res["rows"]
    assert row["architecture"] == "fcos_mobilenetv3_large" and res["n_images"] == 3
    for side in ("eager PyTorch", "ONNX Runtime"):
        assert row[side]["ms_per_image"] > 0 and 0 <= row[side]["map50"] <= 1
    assert abs(row["eager PyTorch"]["map50"] - row["ONNX Runtime"]["map50"]) < 1e-3
