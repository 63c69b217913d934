"""`steelscan synth neu-coil`: real NEU-DET-layout images laid out as a coil, boxes moved to coil px, the
manifest accepted by the station's geometry, the validation split only, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from steelscan.cli import main
from steelscan.core.errors import DataError, SteelscanError
from steelscan.core.images import read_image
from steelscan.data.synthetic import write_neu_coil
from steelscan.inspection.geometry import geometry_from_manifest
from tests.conftest import shared_data

# NEU's validation split is image numbers n % 5 == 4; 1-3 train, 0 held out (the reader skips those).
VAL = [4, 9, 14, 19, 24, 29]
BOX = (10, 20, 30, 40)  # 0-based, x2/y2 exclusive: VOC xmin=11 ymin=21 xmax=30 ymax=40


def _xml(name: str, objects: list[tuple[str, tuple[int, int, int, int]]], size: int) -> str:
    objs = "".join(f"<object><name>{c}</name><bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin><xmax>{x2}</xmax>"
                   f"<ymax>{y2}</ymax></bndbox></object>" for c, (x1, y1, x2, y2) in objects)
    return (f"<annotation><filename>{name}.jpg</filename><size><width>{size}</width><height>{size}</height>"
            f"<depth>1</depth></size>{objs}</annotation>")


def _image(root: Path, cls: str, n: int, objects: list, size: int = 200) -> None:
    name = f"{cls}_{n}"
    grey = np.random.default_rng(n + len(cls)).integers(40 + n, 120 + n, (size, size), dtype=np.uint8)
    (root / "IMAGES").mkdir(parents=True, exist_ok=True)
    (root / "ANNOTATIONS").mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.stack([grey] * 3, -1)).save(root / "IMAGES" / f"{name}.jpg")  # grey as 3 channels, as NEU
    (root / "ANNOTATIONS" / f"{name}.xml").write_text(_xml(name, objects, size))


@pytest.fixture
def tiny_neu(tmp_path) -> Path:
    """12 validation images (6 crazing, 6 scratches), 3 train images and one of the held-out fifth."""
    root = tmp_path / "neu"
    for n in VAL:
        _image(root, "crazing", n, [("crazing", (0, 0, 200, 100))])
        objects = [("scratches", BOX)] if n == 24 else [("scratches", (50, 0, 70, 200)), ("inclusion", (5, 5, 15, 25))]
        _image(root, "scratches", n, objects)
    for n in (1, 2, 3, 5):
        _image(root, "crazing", n, [("crazing", (0, 0, 50, 50))])
    return root


def test_layout_frames_truth_and_manifest(tiny_neu, tmp_path):
    mixed = json.loads((write_neu_coil(tiny_neu, tmp_path / "mixed").out / "defects_truth.json").read_text())
    first = [Path(s["path"]).name.split("_")[0] for s in mixed["sources"]][:2]
    assert first == ["crazing", "scratches"]  # dealt by class, not in name order
    out = tmp_path / "coil"
    summary = write_neu_coil(tiny_neu, out, order="name")
    assert "real NEU-DET images laid out as a coil" in summary.line() and summary.n_images == 12
    frames = sorted((out / "frames").iterdir())
    assert [p.name for p in frames] == ["000000.png", "000001.png"]
    f0, f1 = (read_image(p) for p in frames)
    assert f0.shape == f1.shape == (200, 1600)

    truth = json.loads((out / "defects_truth.json").read_text())
    names = [Path(s["path"]).name for s in truth["sources"]]
    # natural order within the validation split only: no train image, no held-out one
    assert names == [f"crazing_{n}.jpg" for n in VAL] + [f"scratches_{n}.jpg" for n in VAL]
    third = truth["sources"][10]  # the 3rd image of frame 1: scratches_24
    assert (third["frame"], third["slot"], third["x"], third["y"]) == (1, 2, 400, 200)
    (d,) = [d for d in truth["defects"] if d["source"] == 10]
    assert d["coil_bbox_px"] == [410, 220, 430, 240] and d["bbox"] == [410, 20, 430, 40] and d["frame"] == 1
    assert d["class_name"] == "scratches" and truth["class_names"][d["class"] - 1] == "scratches"
    assert d["along_m"] == pytest.approx(230 * 0.5 / 1000) and d["across_mm"] == pytest.approx(420 * 0.5)
    assert len(truth["defects"]) == 6 + 1 + 5 * 2
    # pixels: each image where its source says, the empty slots the images' mean grey
    src = read_image(Path(truth["sources_root"]) / third["path"])
    np.testing.assert_array_equal(f1[:, 400:600], src)
    means = [read_image(Path(truth["sources_root"]) / s["path"]).mean() for s in truth["sources"]]
    assert np.all(f1[:, 800:] == round(float(np.mean(means))))

    man = yaml.safe_load((out / "manifest.yaml").read_text())
    assert man["content"] == "real NEU-DET images laid out as a coil" and man["n_frames"] == 2
    geometry = geometry_from_manifest(man)
    geometry.validate(man["frame_width_px"], man["frame_height_px"])  # what `steelscan inspect` checks
    assert geometry.strip_width_mm == 800 and geometry.frame_overlap_px == 0


def test_truth_scores_perfectly_against_itself(tiny_neu, tmp_path):
    from steelscan.evaluation.coil import score_coil, truth_sources

    write_neu_coil(tiny_neu, tmp_path / "c", per_frame=4)
    truth = json.loads((tmp_path / "c" / "defects_truth.json").read_text())
    r = score_coil(truth, truth)
    assert r["overall"]["recall"] == 1.0 and r["split"] == 0 and r["merged"] == 0
    sources = truth_sources(truth, tmp_path / "c" / "defects_truth.json")
    assert len(sources) == 12 and all(s.path.is_file() for s in sources)
    assert (sources[5].frame, sources[5].x, sources[5].y) == (1, 200, 200)


def test_refuses_mixed_sizes_bad_split_and_empty_split(tiny_neu, tmp_path):
    _image(tiny_neu, "patches", 4, [("patches", (0, 0, 20, 20))], size=100)
    with pytest.raises(DataError, match="one size"):
        write_neu_coil(tiny_neu, tmp_path / "a")
    with pytest.raises(SteelscanError, match="split must be one of"):
        write_neu_coil(tiny_neu, tmp_path / "b", split="validation")
    with pytest.raises(DataError, match="no test images"):
        write_neu_coil(tiny_neu, tmp_path / "c", split="test")
    with pytest.raises(SteelscanError, match="per_frame"):
        write_neu_coil(tiny_neu, tmp_path / "d", per_frame=0)


def test_cli(tiny_neu, tmp_path, capsys):
    out = tmp_path / "coil"
    assert main(["synth", "neu-coil", str(tiny_neu), str(out), "--per-frame", "5", "--n", "7"]) == 0
    assert "real NEU-DET images laid out as a coil: 7 images" in capsys.readouterr().out
    assert len(list((out / "frames").iterdir())) == 2 and read_image(out / "frames" / "000000.png").shape == (200, 1000)
    assert main(["synth", "neu-coil", str(out)]) == 2
    assert "expects ROOT OUT" in capsys.readouterr().err
    assert main(["synth", "coil", str(tiny_neu), str(out)]) == 2


def test_real_neu_det_val_split_matches_the_model_card(tmp_path):
    root = shared_data("neu-det")
    summary = write_neu_coil(root, tmp_path / "c", limit=16)
    assert summary.frames == 2 and summary.frame_size == (1600, 200)
    from steelscan.data.synthetic.neu_coil import coil_items

    _, items = coil_items(root)
    assert len(items) == 360 and sum(len(it.boxes) for it in items) == 802  # the neu-det card's val split
    assert all(int(it.group) % 5 == 4 for it in items)


@pytest.mark.slow
def test_baseline_detector_on_the_single_images(tiny_neu, tmp_path):
    """The built-in neu-det detector on each source image alone: its boxes inside that image's slot."""
    from steelscan.engine.runs import load_meta
    from steelscan.evaluation.coil import detector_on_sources, score_coil, truth_sources

    write_neu_coil(tiny_neu, tmp_path / "c")
    truth = json.loads((tmp_path / "c" / "defects_truth.json").read_text())
    doc = detector_on_sources(truth_sources(truth, tmp_path / "c"), "neu-det")
    assert doc["score_threshold"] == pytest.approx(load_meta("neu-det").score_threshold)
    assert doc["class_names"] == truth["class_names"]
    for d in doc["defects"]:
        s = truth["sources"][d["source"]]
        x1, y1, x2, y2 = d["coil_bbox_px"]
        assert s["x"] <= x1 < x2 <= s["x"] + 200 and s["y"] <= y1 < y2 <= s["y"] + 200 and d["frame"] == s["frame"]
    r = score_coil(doc, truth)
    assert r["overall"]["truth"] == 17 and r["overall"]["found"] == len(doc["defects"])


def test_interleave_deals_images_round_robin_by_class_so_no_two_of_a_class_touch():
    from pathlib import Path

    import numpy as np

    from steelscan.data.formats.base import Item
    from steelscan.data.synthetic.neu_coil import interleave

    items = [Item(f"{c}_{i}", Path(f"{c}_{i}.jpg"), boxes=np.zeros((1, 4), np.float32), labels=np.array([k]))
             for k, c in enumerate("abcdef") for i in range(4)]
    dealt = interleave(items)
    classes = [int(it.labels[0]) for it in dealt]
    assert sorted(it.name for it in dealt) == sorted(it.name for it in items)
    assert classes[:7] == [0, 1, 2, 3, 4, 5, 0]
    per_frame = 8
    for i in range(len(dealt)):  # neighbours across (i + 1 in the frame) and along (i + per_frame)
        if (i + 1) % per_frame and i + 1 < len(dealt):
            assert classes[i] != classes[i + 1]
        if i + per_frame < len(dealt):
            assert classes[i] != classes[i + per_frame]
