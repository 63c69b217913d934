"""The station with a detector: `steelscan inspect` and the service run a detector checkpoint or its ONNX artifact,
behind a gate and with a defect classifier; grading rules must name the coil's classes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from steelscan.cli import main
from tests.detector_helpers import CLASSES, tiny_detector
from tests.service_helpers import COIL_BODY, coil_frames

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    import torch

    from steelscan.core.meta import ModelMeta
    from steelscan.engine.runs import save_checkpoint
    from steelscan.models import create_model

    root = tmp_path_factory.mktemp("det")
    coil_frames(root / "coil", n=3)
    torch.manual_seed(0)
    kwargs = {"num_classes": 2, "in_chans": 1, "pretrained": False}
    names = ("crack", "hole")
    save_checkpoint(root / "cls.pt", create_model("efficientnet_lite0", **kwargs).eval(),
                    ModelMeta(task="classification", model="efficientnet_lite0", model_kwargs=kwargs, class_names=names,
                              input_size=(32, 32)))
    return {"root": root, "coil": root / "coil", "det": tiny_detector(root), "cls": root / "cls.pt", "cls_names": names}


def test_inspect_runs_a_detector_and_names_defects_with_a_classifier(assets, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["inspect", str(assets["coil"]), "--out", str(out), "--model", str(assets["det"])]) == 0
    doc = json.loads((out / "defects.json").read_text())
    assert doc["defects"], "an untrained detector still finds boxes"
    keys = {"id", "class", "confidence", "along_m", "across_mm", "length_mm", "width_mm", "area_mm2", "frame", "bbox",
            "coil_bbox_px", "frames"}
    assert all(keys <= set(d) and d["class"] in CLASSES and "detector_class" not in d for d in doc["defects"])
    html = (out / "report" / "report.html").read_text()
    assert any(name in html for name in CLASSES)

    named = tmp_path / "named"
    assert main(["inspect", str(assets["coil"]), "--out", str(named), "--model", str(assets["det"]),
                 "--classifier", str(assets["cls"])]) == 0
    doc = json.loads((named / "defects.json").read_text())
    assert doc["defects"] and all(d["class"] in assets["cls_names"] and d["detector_class"] in CLASSES
                                  and 0 < d["classifier_confidence"] <= 1 for d in doc["defects"])


def test_inspect_runs_a_one_stage_detector_through_its_onnx_artifact(assets, tmp_path):
    fcos = tiny_detector(tmp_path, "fcos.pt", family="fcos")
    out = tmp_path / "out"
    assert main(["inspect", str(assets["coil"]), "--out", str(out), "--model", str(fcos)]) == 0
    doc = json.loads((out / "defects.json").read_text())
    assert doc["defects"] and all(d["class"] in CLASSES for d in doc["defects"])
    assert list(out.glob("*.onnx")), "the detector ran from the ONNX artifact it exported"


def test_rules_naming_a_class_the_model_lacks_are_refused(assets, tmp_path, capsys):
    from steelscan.grading import GENERIC_RULES

    doc = yaml.safe_load(GENERIC_RULES.read_text())
    doc["classes"] = {"scratch": {"severity": 2.0}}  # the detector's class, but the classifier names the defects
    rules = tmp_path / "rules.yaml"
    rules.write_text(yaml.safe_dump(doc))
    code = main(["inspect", str(assets["coil"]), "--out", str(tmp_path / "o"), "--model", str(assets["det"]),
                 "--classifier", str(assets["cls"]), "--rules", str(rules)])
    err = capsys.readouterr().err
    assert code == 2 and "'scratch'" in err and "crack, hole" in err and "Traceback" not in err


def test_a_segmenter_takes_no_classifier_and_a_classifier_is_no_station_model(assets, tmp_path, capsys):
    from tests.service_helpers import tiny_artifact

    seg = tiny_artifact(tmp_path)
    assert main(["inspect", str(assets["coil"]), "--out", str(tmp_path / "a"), "--model", str(seg),
                 "--classifier", str(assets["cls"])]) == 2
    assert "go with a detector" in capsys.readouterr().err
    assert main(["inspect", str(assets["coil"]), "--out", str(tmp_path / "b"), "--model", str(assets["cls"])]) == 2
    assert "segmenter or a detector" in capsys.readouterr().err


def test_the_detector_artifact_runs_in_inspect_like_its_checkpoint(assets, tmp_path):
    onnx = tmp_path / "det.onnx"
    assert main(["export", str(assets["det"]), "--out", str(onnx)]) == 0
    a, b = tmp_path / "pt", tmp_path / "onnx"
    assert main(["inspect", str(assets["coil"]), "--out", str(a), "--model", str(assets["det"])]) == 0
    assert main(["inspect", str(assets["coil"]), "--out", str(b), "--model", str(onnx)]) == 0
    da = json.loads((a / "defects.json").read_text())["defects"]
    db = json.loads((b / "defects.json").read_text())["defects"]
    assert len(da) == len(db) and [d["class"] for d in da] == [d["class"] for d in db]


def test_the_service_runs_a_detector_station(assets, tmp_path):
    from fastapi.testclient import TestClient

    from steelscan.service.app import create_app
    from steelscan.service.settings import Settings

    frames = sorted((assets["coil"] / "frames").glob("*.png"))
    s = Settings(artifact=str(assets["det"]), db=str(tmp_path / "r.db"), data_dir=tmp_path / "d", threads=1,
                 station_classifier=str(assets["cls"]))
    body = {**COIL_BODY}
    body["frame_width_px"], body["frame_height_px"] = body.pop("frame_width"), body.pop("frame_height")
    with TestClient(create_app(s)) as c:
        assert c.get("/healthz").json()["classes"] == list(assets["cls_names"])
        assert c.post("/v1/coils", json={"coil_id": "D1", **body}).status_code == 201
        for k, f in enumerate(frames):
            r = c.post("/v1/frames", data={"coil_id": "D1", "frame": str(k)},
                       files={"image": ("f.png", f.read_bytes(), "image/png")})
            assert r.status_code == 200, r.text
            assert all(p["detector_class"] in CLASSES for p in r.json()["pieces"])
        detail = c.get("/v1/coils/D1").json()
        assert detail["n_defects"] > 0 and set(detail["counts_by_class"]) <= set(assets["cls_names"])
        defects = c.get("/v1/coils/D1/defects").json()["defects"]
        assert all(d["detector_class"] in CLASSES for d in defects)
        assert c.post("/v1/coils/D1/close").status_code == 200


def test_a_model_no_better_than_predicting_nothing_is_a_warning_everywhere(assets, tmp_path, capsys):
    import torch
    from fastapi.testclient import TestClient

    from steelscan.core.meta import ModelMeta
    from steelscan.deploy.export import export_segmenter
    from steelscan.models.segmenter import build_segmenter, segmenter_normalise
    from steelscan.postprocess import PostProcess
    from steelscan.service.app import create_app
    from steelscan.service.settings import Settings

    torch.manual_seed(0)
    mean, std = segmenter_normalise("unet_efficientnet_lite0")
    meta = ModelMeta(task="segmentation", model="unet_efficientnet_lite0", model_kwargs={"in_chans": 1},
                     class_names=("1", "2", "3", "4"), input_size=(64, 128), mean=mean, std=std,
                     postprocess=PostProcess(threshold=(0.0101,) * 4, min_area=(20,) * 4).as_dict(),
                     val_metrics={"dice_kaggle": 0.74, "all_empty_dice": 0.75})
    art = export_segmenter(build_segmenter("unet_efficientnet_lite0").eval(), meta, tmp_path / "bad.onnx", (64, 128),
                           gate_threshold=0.0)
    out = tmp_path / "out"
    assert main(["inspect", str(assets["coil"]), "--out", str(out), "--model", str(art)]) == 0
    assert "warning:" in capsys.readouterr().out
    doc = json.loads((out / "defects.json").read_text())
    assert doc["warnings"] and "0.75" in doc["warnings"][0]
    assert doc["warnings"][0] in (out / "report" / "report.html").read_text()
    with TestClient(create_app(Settings(artifact=art, db=str(tmp_path / "r.db"), data_dir=tmp_path / "d",
                                        threads=1))) as c:
        assert c.get("/healthz").json()["warnings"] == doc["warnings"]
