"""Coil scoring (`steelscan.evaluation.coil`) and `steelscan evaluate-coil`: exact recall / precision on a
hand-made coil, class-aware vs class-agnostic, split / merged, truth class names, bad files, the baseline path."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from steelscan.cli import main
from steelscan.core.errors import DataError, SteelscanError
from steelscan.data.synthetic.coil import CLASS_NAMES, CoilSpec, coil_truth
from steelscan.evaluation.coil import Source, detector_on_sources, evaluate_coil, score_coil, truth_sources


def _d(i: int, cls, box: list[float]) -> dict:
    return {"id": i, "class": cls, "coil_bbox_px": box}


# t2 is a long scratch, found as two pieces (each IoU 0.25: no match, a split); t4 and t5 are two small pits
# found as one box (it matches one of them, IoU 0.45, and merges both); f1 finds t1 with the wrong class.
TRUTH = {"class_names": ["scratch", "patch", "pits"], "defects": [
    _d(0, "scratch", [0, 0, 100, 100]), _d(1, "patch", [200, 0, 300, 100]), _d(2, "scratch", [400, 0, 500, 1000]),
    _d(3, "pits", [600, 0, 700, 100]), _d(4, "pits", [800, 0, 850, 50]), _d(5, "pits", [860, 0, 910, 50]),
]}
FOUND = {"defects": [
    _d(10, "scratch", [5, 5, 105, 105]), _d(11, "scratch", [200, 0, 300, 100]),
    _d(12, "scratch", [400, 0, 500, 250]), _d(13, "scratch", [400, 500, 500, 750]), _d(14, "pits", [800, 0, 910, 50]),
]}


def test_hand_made_coil_exact_numbers():
    r = score_coil(FOUND, TRUTH)
    assert r["overall"] == {"truth": 6, "found": 5, "tp": 2, "recall": 0.3333, "precision": 0.4}
    assert r["class_agnostic"] == {"truth": 6, "found": 5, "tp": 3, "recall": 0.5, "precision": 0.6}
    assert r["per_class"] == {
        "scratch": {"truth": 2, "found": 4, "tp": 1, "recall": 0.5, "precision": 0.25},
        "patch": {"truth": 1, "found": 0, "tp": 0, "recall": 0.0, "precision": None},
        "pits": {"truth": 3, "found": 1, "tp": 1, "recall": 0.3333, "precision": 1.0},
    }
    assert (r["split"], r["split_truth_ids"]) == (1, [2])
    assert (r["merged"], r["merged_found_ids"]) == (1, [14])
    pairs = {(m["truth"], m["found"]) for m in r["matches"]}
    assert (0, 10) in pairs and len(pairs) == 2 and pairs - {(0, 10)} <= {(4, 14), (5, 14)}
    assert set(r["missed_truth_ids"]) >= {1, 2, 3} and len(r["missed_truth_ids"]) == 4
    assert r["false_found_ids"] == [11, 12, 13]
    assert r["unknown_classes"] == {"truth_only": ["patch"], "found_only": []}


def test_iou_threshold_and_one_to_one():
    truth = {"defects": [_d(0, "a", [0, 0, 100, 100])]}
    found = {"defects": [_d(0, "a", [0, 0, 100, 100]), _d(1, "a", [0, 0, 100, 100])]}  # a duplicate
    r = score_coil(found, truth)
    assert r["overall"]["tp"] == 1 and r["overall"]["precision"] == 0.5 and r["false_found_ids"] == [1]
    # IoU 0.25: no match at 0.3, a match at 0.2
    shifted = {"defects": [_d(0, "a", [0, 0, 100, 25])]}
    assert score_coil(shifted, truth)["overall"]["tp"] == 0
    assert score_coil(shifted, truth, iou=0.2)["overall"]["tp"] == 1


def test_hungarian_finds_the_most_pairs():
    # Greedy by IoU would give f0 to t1 (IoU 0.90) and leave t0 unmatched; the assignment pairs both.
    truth = {"defects": [_d(0, "a", [0, 0, 100, 100]), _d(1, "a", [40, 0, 140, 100])]}
    found = {"defects": [_d(0, "a", [35, 0, 135, 100]), _d(1, "a", [50, 0, 150, 100])]}
    r = score_coil(found, truth, iou=0.4)
    assert r["overall"]["tp"] == 2


def test_exact_self_match_with_nested_truth_boxes_is_neither_split_nor_merged():
    truth = {"defects": [_d(0, "a", [0, 0, 100, 100]), _d(1, "a", [10, 10, 50, 50]), _d(2, "b", [60, 0, 160, 90])]}
    r = score_coil(truth, truth)
    assert r["overall"]["recall"] == 1.0 and r["overall"]["precision"] == 1.0
    assert r["split"] == 0 and r["merged"] == 0


def test_class_names_of_numbered_classes():
    truth = {"class_names": ["pits", "line"], "defects": [_d(0, 2, [0, 0, 10, 10]),
                                                          {**_d(1, 1, [20, 0, 30, 10]), "class_name": "line"}]}
    found = {"defects": [_d(0, "line", [0, 0, 10, 10]), _d(1, "line", [20, 0, 30, 10])]}
    r = score_coil(found, truth)
    assert r["per_class"] == {"line": {"truth": 2, "found": 2, "tp": 2, "recall": 1.0, "precision": 1.0}}
    bare = {"defects": [_d(0, 2, [0, 0, 10, 10])]}
    assert score_coil(found, bare, class_names=["pits", "line"])["overall"]["tp"] == 1
    with pytest.raises(DataError, match="no class_names"):
        score_coil(found, bare)
    with pytest.raises(DataError, match="outside 1..2"):
        score_coil(found, {"class_names": ["pits", "line"], "defects": [_d(0, 3, [0, 0, 10, 10])]})


def test_unknown_classes_are_unmatched_and_listed():
    truth = {"class_names": ["crazing", "inclusion"], "defects": [_d(0, "crazing", [0, 0, 10, 10])]}
    found = {"defects": [_d(0, "scratch", [0, 0, 10, 10])]}
    r = score_coil(found, truth)
    assert r["overall"]["tp"] == 0 and r["class_agnostic"]["tp"] == 1
    assert r["unknown_classes"] == {"truth_only": ["crazing"], "found_only": ["scratch"]}


def test_synthetic_coil_truth_names_its_classes():
    truth = coil_truth(CoilSpec(seed=2, n_frames=6, frame_width=384, frame_height=192, frame_overlap=16,
                                strip_width_mm=450.0, roll_diameter_m=0.08, defects_per_metre=2.0))
    assert truth["class_names"] == list(CLASS_NAMES)
    assert truth["defects"] and all(d["class_name"] == CLASS_NAMES[d["class"] - 1] for d in truth["defects"])
    # the station names classes like this; a perfect station scores 1.0
    found = {"defects": [{"class": d["class_name"], "coil_bbox_px": d["coil_bbox_px"]} for d in truth["defects"]]}
    r = score_coil(found, truth)
    assert r["overall"]["recall"] == 1.0 and r["overall"]["precision"] == 1.0


def test_empty_sides():
    r = score_coil({"defects": []}, TRUTH)
    assert r["overall"] == {"truth": 6, "found": 0, "tp": 0, "recall": 0.0, "precision": None}
    r = score_coil(FOUND, {"defects": []})
    assert r["overall"]["recall"] is None and r["overall"]["precision"] == 0.0 and r["split"] == 0


@pytest.mark.parametrize("text,message", [
    ("{not json", "not JSON"),
    ("[1, 2]", "a \"defects\" list"),
    ('{"defects": {"a": 1}}', "a \"defects\" list"),
    ('{"defects": [{"class": "a", "coil_bbox_px": [1, 2, 3]}]}', "4 numbers"),
    ('{"defects": [{"class": "a", "coil_bbox_px": [1, 2, "3", 4]}]}', "4 numbers"),
    ('{"defects": [{"class": "a", "coil_bbox_px": [10, 2, 5, 4]}]}', "x2 > x1"),
    ('{"defects": [{"coil_bbox_px": [1, 2, 3, 4]}]}', "class name or number"),
    ('{"class_names": "a,b", "defects": []}', "class_names"),
])
def test_bad_truth_files_are_one_line_data_errors(tmp_path, text, message):
    path = tmp_path / "truth.json"
    path.write_text(text)
    found = tmp_path / "defects.json"
    found.write_text('{"defects": []}')
    with pytest.raises(DataError, match=message) as info:
        evaluate_coil(found, path)
    assert "\n" not in str(info.value)


def test_missing_files_and_bad_iou(tmp_path):
    with pytest.raises(DataError, match="not found"):
        evaluate_coil(tmp_path, tmp_path / "nope.json")
    with pytest.raises(SteelscanError, match="iou"):
        score_coil(FOUND, TRUTH, iou=1.5)


def _write(tmp_path: Path) -> tuple[Path, Path]:
    out = tmp_path / "inspection"
    out.mkdir()
    (out / "defects.json").write_text(json.dumps({"coil": {"coil_id": "X"}, **FOUND}))
    truth = tmp_path / "defects_truth.json"
    truth.write_text(json.dumps(TRUTH))
    return out, truth


def test_cli_table_and_json(tmp_path, capsys):
    out, truth = _write(tmp_path)
    assert main(["evaluate-coil", str(out), "--truth", str(truth), "--json", str(tmp_path / "s.json")]) == 0
    printed = " ".join(capsys.readouterr().out.split())  # rich wraps long lines
    assert "station" in printed and "scratch" in printed and "1/4" in printed and "33.3%" in printed
    assert "1 truth defect(s) split" in printed
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["station"]["overall"]["tp"] == 2 and "detector_on_single_images" not in doc


@pytest.mark.parametrize("args,message", [
    (["--truth", "{tmp}/missing.json"], "not found"),
    (["--truth", "{truth}", "--iou", "0"], "iou"),
    (["--truth", "{truth}", "--baseline-model", "neu-det"], "lists no source images"),
])
def test_cli_bad_input_is_one_line_exit_2(tmp_path, capsys, args, message):
    out, truth = _write(tmp_path)
    argv = ["evaluate-coil", str(out)] + [a.format(tmp=tmp_path, truth=truth) for a in args]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("steelscan: error:") and message in err and len(err.splitlines()) == 1


class FakeDetector:
    class_names = ("a", "b")
    score_threshold = 0.3

    def __init__(self) -> None:
        self.calls: list[int] = []

    def predict(self, images):
        self.calls.append(len(images))
        return [{"boxes": np.array([[10, 20, 30, 40]], np.float32), "scores": np.array([0.9], np.float32),
                 "labels": np.array([1])} for _ in images]


def test_baseline_moves_single_image_boxes_to_coil_px(tmp_path, monkeypatch):
    import cv2

    import steelscan.deploy.predictors as predictors

    fake = FakeDetector()
    monkeypatch.setattr(predictors, "load_predictor", lambda *a, **k: fake)
    for name in ("a.png", "b.png"):
        cv2.imwrite(str(tmp_path / name), np.full((50, 50), 100, np.uint8))
    truth = {"sources_root": str(tmp_path), "sources": [{"path": "a.png", "frame": 0, "x": 0, "y": 0},
                                                         {"path": "b.png", "frame": 1, "x": 400, "y": 200}]}
    sources = truth_sources(truth, tmp_path / "defects_truth.json")
    assert sources[1] == Source(tmp_path / "b.png", 1, 400, 200)
    doc = detector_on_sources(sources, "fake")
    assert fake.calls == [2]  # batched
    assert [d["coil_bbox_px"] for d in doc["defects"]] == [[10, 20, 30, 40], [410, 220, 430, 240]]
    assert [d["class"] for d in doc["defects"]] == ["b", "b"] and [d["frame"] for d in doc["defects"]] == [0, 1]
    with pytest.raises(DataError, match="source #0"):
        truth_sources({"sources": [{"path": "a.png", "frame": 0, "x": "0", "y": 0}]}, tmp_path)


def test_cli_baseline_side_by_side(tmp_path, monkeypatch, capsys):
    import cv2

    import steelscan.deploy.predictors as predictors

    monkeypatch.setattr(predictors, "load_predictor", lambda *a, **k: FakeDetector())
    cv2.imwrite(str(tmp_path / "a.png"), np.full((50, 50), 100, np.uint8))
    truth = {"class_names": ["a", "b"], "sources": [{"path": "a.png", "frame": 0, "x": 100, "y": 0}],
             "defects": [_d(0, "b", [110, 20, 130, 40]), _d(1, "a", [0, 0, 10, 10])]}
    (tmp_path / "defects_truth.json").write_text(json.dumps(truth))
    (tmp_path / "defects.json").write_text('{"defects": []}')
    argv = ["evaluate-coil", str(tmp_path / "defects.json"), "--truth", str(tmp_path), "--baseline-model", "fake",
            "--json", str(tmp_path / "s.json")]
    assert main(argv) == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "single images" in printed and "detector on single images (fake, 1 images alone" in printed
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["station"]["overall"]["tp"] == 0
    base = doc["detector_on_single_images"]
    assert base["overall"] == {"truth": 2, "found": 1, "tp": 1, "recall": 0.5, "precision": 1.0}
