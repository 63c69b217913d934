"""Smoke tests of benchmarks/train_any_layout.py: the plant-folder build rule, and the whole benchmark with no
data (synthetic NEU-CLS -> class folders -> steelscan's default recipe and the plain baseline), tiny and fast."""

from __future__ import annotations

import json

import cv2
import pytest

from steelscan.data.formats import read_data
from steelscan.data.synthetic import write_neu_cls
from tests.conftest import load_benchmark


def test_plant_folders_split_by_neu_number(tmp_path):
    bench = load_benchmark("train_any_layout")
    write_neu_cls(tmp_path / "neu", n=60, seed=0, workers=1)  # numbers 1..10 per class
    record = bench.build_plant_folders(tmp_path / "neu", tmp_path / "plant", size=16)

    data = read_data(tmp_path / "plant")
    assert data.format == "folders" and data.class_names == sorted(bench.CLASS_NAMES.values())
    numbers = {side: sorted({int(it.path.stem.split("_")[1]) for it in data.items if it.split == side})
               for side in ("train", "test")}
    assert numbers == {"train": [1, 2, 3, 6, 7, 8], "test": [4, 9]}  # n % 5 == 0: NEU's held-out fifth, left out
    assert record["counts"]["train"]["oxide patch"] == 6 and record["counts"]["test"]["scratch"] == 2
    image = cv2.imread(str(data.items[0].path), cv2.IMREAD_UNCHANGED)
    assert image.shape == (16, 16, 3) and (image[..., 0] != image[..., 2]).any()  # RGB, tinted: colour data
    assert not (tmp_path / "plant.partial").exists()


@pytest.mark.slow
def test_train_any_layout_benchmark_smoke(tmp_path):
    bench = load_benchmark("train_any_layout")
    out = tmp_path / "train_any_layout.json"
    doc = bench.main(["--source", str(tmp_path / "absent"), "--build-dir", str(tmp_path / "build"),
                      "--synthetic-images", "60", "--image-size", "32", "--budget-minutes", "0.05",
                      "--threads", "1", "--out-dir", str(tmp_path / "runs"), "--json", str(out)])

    assert json.loads(out.read_text()) == json.loads(json.dumps(doc))
    assert doc["synthetic"] and doc["split"]["test"] == 12 and len(doc["class_names"]) == 6
    assert len(doc["load_average_start"]) == 3 and len(doc["load_average_end"]) == 3
    steelscan, baseline = doc["rows"]
    assert steelscan["row"].startswith("steelscan train") and baseline["row"].startswith("plain ImageNet")
    for r in doc["rows"]:
        assert 0.0 <= r["accuracy"] <= 1.0 and 0.0 <= r["macro_f1"] <= 1.0
        assert r["n_test"] == 12 and r["epochs"] > 0 and r["training_minutes"] > 0 and r["ms_per_image"] > 0
    assert baseline["input"] == "3 x 32 x 32" == steelscan["input"]  # the tint makes it colour data


@pytest.mark.slow
def test_classify_speed_without_data_synthesizes_neu_cls(tmp_path):
    """No NEU-CLS folder (a fresh clone): synthetic images in a temp folder, labelled synthetic; a tiny model."""
    import torch

    from steelscan.data.classes import NEU_CLASSES
    from steelscan.engine.runs import save_checkpoint
    from steelscan.models import create_model

    torch.manual_seed(0)
    kwargs = {"num_classes": 6, "in_chans": 1, "pretrained": False}
    ckpt = tmp_path / "tiny.pt"
    save_checkpoint(ckpt, create_model("mobilenetv3_small", **kwargs),
                    {"task": "classification", "model": "mobilenetv3_small", "model_kwargs": kwargs,
                     "class_names": list(NEU_CLASSES), "in_chans": 1, "input_size": [32, 32]})
    bench = load_benchmark("classify_speed")
    bench.DEFAULT_DATA = str(tmp_path / "absent-neu-cls")  # what a fresh clone without ../shared/data sees
    out = tmp_path / "classify_speed.json"
    doc = bench.main(["--model", str(ckpt), "--synthetic-images", "60", "--repeats", "1", "--batch", "8",
                      "--calibration", "8", "--threads", "1", "--json", str(out)])

    assert doc["synthetic"] and "synthetic" in doc["data"] and doc["n_images"] == 12  # n % 5 == 4: 2 per class
    assert json.loads(out.read_text())["synthetic"]
    assert [r["runtime"] for r in doc["rows"]] == ["pytorch eager fp32", "onnxruntime fp32",
                                                  "onnxruntime int8 (static QDQ)"]
    for r in doc["rows"]:
        assert r["images_per_s"] > 0 and 0.0 <= r["val_accuracy"] <= 1.0


def test_benchmarks_refuse_a_missing_data_folder_they_were_given(tmp_path, capsys):
    """Only the default folder is synthesized when absent; a --data that names no folder is a one-line error."""
    for name in ("throughput", "classify_speed", "train_any_layout"):
        with pytest.raises(SystemExit) as exc:
            load_benchmark(name).main(["--data", str(tmp_path / "nowhere")])
        assert exc.value.code == 2
        assert "no such folder" in capsys.readouterr().err
