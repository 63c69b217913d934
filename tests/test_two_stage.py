"""The 2-stage pipeline (Wang 2021): clean synthetic images, the gate's routing, its accounting on hand cases,
Severstal tiles, and a smoke run with a tiny real gate and detector (numbers from it are synthetic/smoke)."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torch.nn as nn

from steelscan.cli import main
from steelscan.config import load_config
from steelscan.tasks.detection.data import DetSample
from steelscan.data.rle import rle_encode
from steelscan.data.severstal import SeverstalDataset, mask_to_boxes
from steelscan.data.synthetic import neu_clean_image, write_neu_clean
from steelscan.core.errors import SteelscanError
from steelscan.core.meta import ModelMeta
from steelscan.deploy.predictors import ClassifierPredictor, DetectorPredictor, TorchBackend, load_predictor
from steelscan.engine.fit import fit
from steelscan.models.detector import LABEL_OFFSET
from steelscan.engine.runs import load_checkpoint
from steelscan.two_stage import (
    defect_column, evaluate_two_stage, found_boxes, gate_probabilities, gate_settings, labelled_mix,
    severstal_tiles, two_stage_detect,
)
from tests.conftest import REPO

torch.set_num_threads(1)


def _hashes(root: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.iterdir())}


# ------------------------------------------------------------------------------------ clean synthetic images


def test_neu_clean_writer_format_and_determinism(tmp_path):
    summary = write_neu_clean(tmp_path / "a", 4, seed=5, workers=1)
    files = sorted((tmp_path / "a").iterdir())
    assert [p.name for p in files] == [f"clean_{k}.bmp" for k in range(1, 5)]
    for p in files:
        img = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
        assert img.shape == (200, 200) and img.dtype == np.uint8 and img.std() > 1  # textured, not flat
    assert summary.defect_free == 4 and sum(summary.per_class.values()) == 4
    write_neu_clean(tmp_path / "b", 4, seed=5, workers=1)
    write_neu_clean(tmp_path / "c", 4, seed=6, workers=1)
    write_neu_clean(tmp_path / "d", 2, seed=5, first_number=3, workers=1)  # an image depends on (seed, number)
    a, b, c, d = (_hashes(tmp_path / x) for x in "abcd")
    assert a == b and all(a[k] != c[k] for k in a) and d == {k: a[k] for k in ("clean_3.bmp", "clean_4.bmp")}
    _, style = neu_clean_image(5, 1, styles=["Pa"])
    assert style == "patches"
    with pytest.raises(SteelscanError, match="positive"):
        write_neu_clean(tmp_path / "x", 0)
    with pytest.raises(SteelscanError, match="unknown NEU class 'rust'"):
        write_neu_clean(tmp_path / "x", 2, styles=["rust"])
    assert not (tmp_path / "x").exists()


def test_synth_cli_neu_clean(tmp_path, capsys):
    assert main(["synth", "neu-clean", str(tmp_path / "c"), "--n", "3", "--seed", "1", "--workers", "1",
                 "--classes", "Cr,Sc"]) == 0
    assert "neu-clean: 3 images" in capsys.readouterr().out
    assert len(list((tmp_path / "c").glob("clean_*.bmp"))) == 3


# --------------------------------------------------------------------------- routing with stubs (exact answers)


def _image(k: int) -> np.ndarray:
    return np.full((32, 32), 10 * k, np.uint8)  # image k is recognisable by its grey level


def _id(x: torch.Tensor) -> int:
    return int(round(float(x.flatten()[0]) * 255 / 10))


class SpyDetector(nn.Module):
    """Answers per image id from a table of (box, score, NEU label); records the ids it was shown."""

    def __init__(self, table: dict[int, list] | None = None, sleep_s: float = 0.0):
        super().__init__()
        self.table, self.sleep_s, self.seen = table or {}, sleep_s, []

    def forward(self, images):
        out = []
        for x in images:
            k = _id(x)
            self.seen.append(k)
            time.sleep(self.sleep_s)
            rows = self.table.get(k, [])
            out.append({"boxes": torch.tensor([r[0] for r in rows], dtype=torch.float32).reshape(-1, 4),
                        "scores": torch.tensor([r[1] for r in rows], dtype=torch.float32),
                        "labels": torch.tensor([r[2] + LABEL_OFFSET for r in rows], dtype=torch.int64)})
        return out


def _gate(p_by_id: dict[int, float]):
    return lambda images: np.array([p_by_id[int(im[0, 0]) // 10] for im in images])


DET_META = ModelMeta(task="detection", model="spy", class_names=("crazing", "inclusion", "patches", "pitted_surface",
                                                                "rolled-in_scale", "scratches"),
                     input_size=(32, 32), label_offset=LABEL_OFFSET, score_threshold=0.3)


def _spy(det: SpyDetector, score_threshold: float = 0.0) -> DetectorPredictor:
    return DetectorPredictor(DET_META, TorchBackend(det), score_threshold=score_threshold)


def test_gate_skips_images_below_the_threshold_and_never_shows_them_to_the_detector():
    p = {1: 0.9, 2: 0.1, 3: 0.5, 4: 0.29, 5: 0.3}
    images = [_image(k) for k in p]
    det = SpyDetector({k: [([1, 1, 9, 9], 0.9, 0)] for k in p})
    res = two_stage_detect(_gate(p), _spy(det), images, threshold=0.3)
    assert sorted(det.seen) == [1, 3, 5]  # 0.3 itself passes: P(defect) >= threshold
    assert res.passed.tolist() == [True, False, True, False, True]
    assert [len(d["boxes"]) for d in res.detections] == [1, 0, 1, 0, 1]
    assert res.timing["n_passed"] == 3 and res.timing["n_images"] == 5
    np.testing.assert_allclose(res.p_defect, list(p.values()))

    det.seen.clear()
    assert two_stage_detect(_gate(p), _spy(det), images, threshold=0.0).passed.all()
    assert sorted(det.seen) == [1, 2, 3, 4, 5]
    det.seen.clear()
    none = two_stage_detect(_gate(p), _spy(det), images, threshold=1.01)
    assert det.seen == [] and not none.passed.any() and all(len(d["scores"]) == 0 for d in none.detections)
    for bad in (-0.1, float("nan"), "high"):
        with pytest.raises(SteelscanError, match="gate threshold"):
            two_stage_detect(_gate(p), _spy(det), images, threshold=bad)


def test_gate_probabilities_from_a_classifier_and_bad_gates():
    class Const(nn.Module):  # logits for (clean, defect) with P(defect) = 0.8
        def forward(self, x):
            return torch.log(torch.tensor([[0.2, 0.8]])).expand(len(x), 2)

    meta = ModelMeta(task="classification", model="const", class_names=("clean", "defect"), input_size=(16, 16))
    gate = ClassifierPredictor(meta, TorchBackend(Const()))
    np.testing.assert_allclose(gate_probabilities(gate, [_image(1), _image(2)]), [0.8, 0.8], rtol=1e-5)
    flipped = ClassifierPredictor(meta.model_copy(update={"class_names": ("defect", "clean")}), TorchBackend(Const()))
    np.testing.assert_allclose(gate_probabilities(flipped, [_image(1)]), [0.2], rtol=1e-5)
    # a 3-channel gate takes grey images (and grey gates RGB ones): the predictor converts the channels
    rgb_gate = ClassifierPredictor(meta.model_copy(update={"in_chans": 3}), TorchBackend(Const()))
    np.testing.assert_allclose(gate_probabilities(rgb_gate, [_image(1), np.zeros((20, 30, 3), np.uint8)]), [0.8, 0.8],
                               rtol=1e-5)
    assert defect_column(meta.model_copy(update={"class_names": ("ok", "clean")})) == (1, True)
    with pytest.raises(SteelscanError, match="needs a 'defect' or 'clean' class"):
        defect_column(meta.model_copy(update={"class_names": ("crazing", "inclusion")}))
    with pytest.raises(SteelscanError, match="must be a classifier"):
        defect_column(DET_META)
    with pytest.raises(SteelscanError, match=r"expected 1 probabilities in \[0, 1\]"):
        gate_probabilities(lambda ims: np.array([1.5]), [_image(1)])
    with pytest.raises(SteelscanError, match=r"image 0: expected a uint8 grey \[H, W\] or RGB \[H, W, 3\] array"):
        gate_probabilities(lambda ims: np.zeros(1), [np.zeros((8, 8, 4), np.uint8)])


def _truth(*boxes) -> tuple[np.ndarray, np.ndarray]:
    return (np.array([b[:4] for b in boxes], np.float32).reshape(-1, 4), np.array([b[4] for b in boxes], np.int64))


def test_time_and_recall_accounting_on_a_hand_case():
    # id: (P(defect), truth boxes (x1, y1, x2, y2, class), the detector's answer (box, score, class))
    case = {
        1: (0.9, [(0, 0, 10, 10, 0), (20, 20, 30, 30, 1)], [([0, 0, 10, 10], 0.9, 0), ([20, 20, 30, 30], 0.9, 1)]),
        2: (0.1, [(5, 5, 15, 15, 2)], [([5, 5, 15, 15], 0.8, 2)]),  # defective, skipped: its box is lost
        3: (0.5, [], []),  # clean, passed: costs time only
        4: (0.05, [], [([0, 0, 8, 8], 0.6, 0)]),  # clean, skipped: the gate removes a false positive
        5: (0.7, [(0, 0, 20, 20, 0)], [([0, 0, 20, 20], 0.7, 1)]),  # found, with the wrong class
    }
    samples = [DetSample(f"img{k}", _image(k), *_truth(*c[1])) for k, c in case.items()]
    det = SpyDetector({k: c[2] for k, c in case.items()}, sleep_s=0.01)
    r = evaluate_two_stage(_gate({k: c[0] for k, c in case.items()}), _spy(det), samples, 0.3, repeats=2)
    assert (r["n_images"], r["n_defective"], r["n_clean"], r["n_truth_boxes"]) == (5, 3, 2, 4)
    assert r["skipped_share"] == pytest.approx(0.4)
    assert r["gate"] == pytest.approx({"recall": 2 / 3, "precision": 2 / 3, "tp": 2, "fp": 1, "fn": 1, "tn": 1,
                                       "clean_skipped_share": 0.5})
    w, g = r["without_gate"], r["with_gate"]
    assert (w["recall"], g["recall"], r["recall_lost"]) == pytest.approx((0.75, 0.5, 0.25))
    assert (w["recall_any_class"], g["recall_any_class"]) == pytest.approx((1.0, 0.75))
    # AP per class with truth: without the gate crazing 0.5 (TP 0.9 then FP 0.6), inclusion 1, patches 1;
    # with it the patches box is never detected (0) while crazing keeps 0.5 (its FP was skipped, recall stays 1/2).
    assert (w["map50"], g["map50"], r["map50_lost"]) == pytest.approx((2.5 / 3, 1.5 / 3, 1 / 3))
    t = r["time"]
    assert t["time_saved_share"] == pytest.approx(1 - t["ms_per_image_with_gate"] / t["ms_per_image_without_gate"])
    assert 0.2 < t["time_saved_share"] < 0.55  # 10 ms per detected image: 5 alone vs 3 behind the gate
    assert [i["passed"] for i in r["images"]] == [True, False, True, False, True]
    json.dumps(r)  # plain JSON


def test_found_boxes_respects_score_and_class():
    preds = [{"boxes": np.array([[0, 0, 10, 10]], np.float32), "scores": np.array([0.2]), "labels": np.array([0])}]
    truths = [{"boxes": np.array([[0, 0, 10, 10]], np.float32), "labels": np.array([0])}]
    assert found_boxes(preds, truths, 0.3).tolist() == [False] and found_boxes(preds, truths, 0.1).tolist() == [True]
    truths[0]["labels"] = np.array([3])
    assert found_boxes(preds, truths, 0.1).tolist() == [False]
    assert found_boxes(preds, truths, 0.1, class_aware=False).tolist() == [True]


def test_gate_settings_precedence():
    meta = DET_META.model_copy(update={"two_stage": {"gate": "runs/gate", "gate_threshold": 0.45}})
    assert gate_settings(meta) == ("runs/gate", 0.45)
    assert gate_settings(meta, "other", 0.2) == ("other", 0.2)
    assert gate_settings(meta, no_gate=True) == (None, 0.45)
    assert gate_settings(DET_META) == (None, 0.3)
    cfg = load_config(None, ["task=detection", "two_stage.gate_threshold=0.5", "two_stage.gate=g"])
    assert cfg.two_stage.gate_threshold == 0.5 and cfg.two_stage.gate == "g"
    with pytest.raises(SteelscanError, match="two_stage.gate_threshold"):
        load_config(None, ["two_stage.gate_threshold=1.5"])
    with pytest.raises(SteelscanError, match="did you mean 'two_stage.gate_threshold'"):
        load_config(None, ["two_stage.gate_treshold=0.5"])
    recipe = load_config(REPO / "configs" / "neu_gate_mnv3s.yaml")
    # task null: it follows from the data (neu-cls is a classification layout)
    assert recipe.data.binary and recipe.data.clean_root and recipe.task in (None, "classification")


# ------------------------------------------------------------------------------------------- Severstal tiles


def _kaggle(root: Path, images: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    (root / "train_images").mkdir(parents=True)
    rows = ["ImageId,ClassId,EncodedPixels"]
    for name, (image, mask) in images.items():
        cv2.imwrite(str(root / "train_images" / name), image)
        rows += [f"{name},{k + 1},{rle_encode(mask[k])}" for k in range(4) if mask[k].any()]
    (root / "train.csv").write_text("\n".join(rows) + "\n")
    return root


def test_severstal_tiles_by_hand(tmp_path):
    mask = np.zeros((4, 256, 1600), np.uint8)
    mask[2, 30:60, 390:410] = 1  # class 3 across the border between tiles 0 and 1
    mask[0, 100:110, 1250:1300] = 1  # class 1 inside tile 3
    image = np.full((256, 1600), 120, np.uint8)
    ds = SeverstalDataset.from_root(_kaggle(tmp_path, {"a.png": (image, mask), "b.png": (image, mask * 0)}))
    tiles = severstal_tiles(ds)
    assert len(tiles) == 8 and all(t.image.shape == (256, 400) for t in tiles)
    assert [t.x_offset for t in tiles[:4]] == [0, 400, 800, 1200] and tiles[0].image_id == "a.png"
    assert [t.boxes.tolist() for t in tiles[:4]] == [[[390, 30, 400, 60]], [[0, 30, 10, 60]], [], [[50, 100, 100, 110]]]
    assert [t.labels.tolist() for t in tiles[:4]] == [[2], [2], [], [0]]
    assert all(len(t.boxes) == 0 for t in tiles[4:])  # a defect-free image: four clean tiles
    assert len(severstal_tiles(ds, limit=1)) == 4


def test_severstal_tiles_map_back_to_the_full_image_boxes(tmp_path):
    from steelscan.data.synthetic import write_severstal

    write_severstal(tmp_path, 3, seed=4, workers=1)
    ds = SeverstalDataset.from_root(tmp_path)
    tiles = severstal_tiles(ds)
    assert len(tiles) == 4 * len(ds)
    for i in range(len(ds)):
        item, own = ds[i], tiles[4 * i : 4 * i + 4]
        np.testing.assert_array_equal(np.concatenate([t.image for t in own], axis=1), item["image"])
        full_boxes, full_labels = mask_to_boxes(item["mask"])
        back = [(b + np.array([t.x_offset, 0, t.x_offset, 0]), lab) for t in own for b, lab in zip(t.boxes, t.labels)]
        assert all(0 <= b[0] < b[2] <= 400 for t in own for b in t.boxes)
        # Each tile piece lies inside a full-image box of its class; the pieces inside a box span it exactly.
        for fb, fl in zip(full_boxes, full_labels):
            inside = [b for b, lab in back if lab == fl and (b[:2] >= fb[:2]).all() and (b[2:] <= fb[2:]).all()]
            assert inside
            span = np.concatenate([np.min([b[:2] for b in inside], 0), np.max([b[2:] for b in inside], 0)])
            np.testing.assert_array_equal(span, fb)
        assert all(any((b[:2] >= fb[:2]).all() and (b[2:] <= fb[2:]).all() and lab == fl
                       for fb, fl in zip(full_boxes, full_labels)) for b, lab in back)


def test_severstal_tiles_need_images(tmp_path):
    (tmp_path / "train.csv").write_text("ImageId,ClassId,EncodedPixels\n")
    (tmp_path / "image_ids.txt").write_text("a.jpg\n")
    with pytest.raises(SteelscanError, match="severstal tiles need the images"):
        severstal_tiles(SeverstalDataset.from_root(tmp_path))


# -------------------------------------------------------------------- smoke: a tiny real gate and detector


@pytest.fixture(scope="module")
def smoke(tmp_path_factory) -> dict[str, Path]:
    from steelscan.data.synthetic import write_neu_cls, write_neu_det

    root = tmp_path_factory.mktemp("two_stage")
    three = {"crazing": 4, "patches": 4, "scratches": 4}  # numbers 1..4 of each: No. 4 is validation
    write_neu_cls(root / "cls", 0, seed=1, class_counts=three, workers=1)
    write_neu_det(root / "det", 0, seed=1, class_counts=three, workers=1)
    write_neu_clean(root / "clean", 10, seed=1, workers=1)
    gate = fit(load_config(None, ["model.name=mobilenetv3_small", "data.image_size=48", "data.binary=true",
                                  f"data.root={root / 'cls'}", f"data.clean_root={root / 'clean'}", "train.epochs=1",
                                  "train.batch_size=8", "train.max_steps=2", "train.threads=1",
                                  f"out_dir={root / 'gate'}"]), progress=False)
    det = fit(load_config(REPO / "configs" / "neu_det_tiny.yaml", [
        f"data.root={root / 'det'}", f"data.clean_root={root / 'clean'}", f"out_dir={root / 'detector'}",
        "train.threads=1", "detector.n_samples=1", f"two_stage.gate={gate}", "two_stage.gate_threshold=0.4"]),
        progress=False)
    return {"root": root, "gate": gate, "det": det}


def test_gate_trains_on_neu_and_clean_images(smoke):
    split = json.loads((smoke["gate"] / "split.json").read_text())
    assert sum(len(v) for v in split["clean_images"].values()) == 10
    _, meta = load_checkpoint(smoke["gate"])
    assert meta.class_names == ("clean", "defect") and defect_column(meta) == (1, False)
    _, det_meta = load_checkpoint(smoke["det"])
    assert det_meta.two_stage == {"gate": str(smoke["gate"]), "gate_threshold": 0.4}


def test_smoke_evaluation_with_real_models(smoke):
    gate, det = load_predictor(smoke["gate"]), load_predictor(smoke["det"])
    root = smoke["root"]
    samples = labelled_mix(root / "det", root / "clean", "val")
    n_clean = sum(len(s.boxes) == 0 for s in samples)
    r = evaluate_two_stage(gate, det, samples, 0.4)
    assert r["n_images"] == 3 + n_clean and r["n_defective"] == 3
    assert 0 <= r["skipped_share"] <= 1 and r["time"]["ms_per_image_without_gate"] > 0
    assert r["gate"]["tp"] + r["gate"]["fn"] == 3
    assert len(labelled_mix(root / "det", root / "clean", "all")) == 12 + 10
    with pytest.raises(SteelscanError, match="split: expected val or all"):
        labelled_mix(root / "det", None, "test")


def test_smoke_cli_detect_with_the_saved_gate_and_benchmark(smoke, tmp_path, capsys):
    root, det = smoke["root"], str(smoke["det"])
    out = tmp_path / "d.json"
    assert main(["detect", str(root / "clean"), "--model", det, "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["gate"] == str(smoke["gate"]) and res["gate_threshold"] == 0.4
    assert all("p_defect" in p and p["gate_passed"] == (p["p_defect"] >= 0.4) for p in res["predictions"])
    assert all(not p["detections"] for p in res["predictions"] if not p["gate_passed"])
    assert main(["detect", str(root / "clean"), "--model", det, "--no-gate", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["gate"] is None

    bench = tmp_path / "b.json"
    assert main(["benchmark", "two-stage", "-d", det, "--defective", str(root / "det"), "--clean", str(root / "clean"),
                 "--repeats", "1", "--json", str(bench)]) == 0
    assert "gate + detector" in capsys.readouterr().out
    r = json.loads(bench.read_text())
    assert r["gate_threshold"] == 0.4 and r["classes_match"] and r["data"]["split"] == "val"

    from steelscan.data.synthetic import write_severstal

    write_severstal(tmp_path / "sev", 1, seed=2, workers=1)
    assert main(["benchmark", "two-stage", "-d", det, "--severstal", str(tmp_path / "sev"), "--gate-threshold", "0",
                 "--repeats", "1", "--json", str(bench)]) == 0
    r = json.loads(bench.read_text())
    assert r["n_images"] == 4 and r["skipped_share"] == 0 and not r["classes_match"]
    assert "any class" in capsys.readouterr().err

    assert main(["benchmark", "two-stage", "-d", det]) == 2
    assert "exactly one of --defective" in capsys.readouterr().err
    assert main(["benchmark", "two-stage", "-d", det, "--gate", det, "--defective", str(root / "det")]) == 2
    assert "the gate must be a classifier" in capsys.readouterr().err
