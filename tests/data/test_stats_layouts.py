"""`steelscan stats` on every layout: numbers, the problems table, duplicates and few-sample classes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from steelscan.cli import main
from steelscan.data.formats import PROBLEM_KINDS, Item, LabelledData, read_data
from steelscan.data.stats import FEW_SAMPLES, compute_stats, labelled_stats, plot_stats, print_stats
from tests.conftest import shared_data
from tests.layouts import EXPECT, write_image

LAYOUTS = [  # (fixture, EXPECT key, format, task)
    ("tiny_folders", "folders", "folders", "classification"),
    ("tiny_folders_split", "folders_split", "folders", "classification"),
    ("tiny_yolo", "yolo", "yolo", "detection"),
    ("tiny_coco", "coco", "coco", "detection"),
    ("tiny_voc", "voc", "voc", "detection"),
    ("tiny_masks", "masks", "masks", "segmentation"),
    ("tiny_rle", "rle", "rle", "segmentation"),
]


def _kinds(stats: dict) -> dict[str, int]:
    return {r["kind"]: r["count"] for r in stats["problems"]}


def _text(stats: dict) -> str:
    console = Console(record=True, width=160)
    print_stats(stats, console)
    return console.export_text()


@pytest.mark.parametrize("fixture, key, fmt, task", LAYOUTS)
def test_stats_on_every_layout(request, tmp_path, fixture, key, fmt, task):
    root = request.getfixturevalue(fixture)
    s = compute_stats(root)  # the format is detected
    expect = EXPECT[key]
    assert (s["format"], s["task"], s["class_names"]) == (fmt, task, expect["classes"])
    assert s["n_images"] == expect["items"] == sum(s["images_per_split"].values())
    data = read_data(root)
    unsplit = ["unsplit"] if any(it.split is None for it in data.items) else []  # VOC: ids outside ImageSets
    assert list(s["images_per_split"]) == expect["own_splits"] + unsplit
    assert [c["samples"] for c in s["per_class"]] == data.instances_per_class()
    for c in s["per_class"]:
        assert sum(c["per_split"].values()) == c["samples"]
    assert sum(r["images"] for r in s["image_sizes"]) == s["n_images"]
    assert sum(s["channel_modes"].values()) == s["n_images"]
    kinds = _kinds(s)
    few = sum(n < FEW_SAMPLES for n in data.instances_per_class())  # every tiny class is small
    assert kinds == {**expect["problems"], **({"few_samples": few} if few else {})}
    assert json.loads(json.dumps(s)) == s  # JSON-ready as it is
    text = _text(s)
    assert "Samples per class" in text and "Problems" in text and "few_samples" in text
    if task == "detection":
        assert s["n_boxes"] == sum(len(it.boxes) for it in data.items) and "Box sizes" in text
    if fixture in ("tiny_yolo", "tiny_masks"):
        out = plot_stats(s, tmp_path / "p.png")
        assert out.stat().st_size > 1000


def test_tiny_numbers(tiny_yolo, tiny_masks, tiny_rle):
    s = compute_stats(tiny_yolo)
    assert s["images_per_split"] == {"train": 10, "val": 4}
    assert s["n_defect_free"] == 2  # the empty txt and the missing one
    assert s["image_sizes"] == [{"height": 48, "width": 64, "images": 14}]
    assert s["channel_modes"] == {"RGB": 7, "L": 7}
    assert s["boxes_per_image"]["max"] == 2.0 and s["box_size"]["width"]["median"] == 16.0
    by = {c["class"]: c for c in s["per_class"]}
    assert by["crazing"]["per_split"] == {"train": 3, "val": 1}
    m = compute_stats(tiny_masks)
    assert m["n_defect_free"] == 2  # the all-background mask and the image without one
    r = compute_stats(tiny_rle)
    assert r["n_defect_free"] == 3 and "severstal" not in r  # 300x120, 5 classes: not Kaggle's set


def _broken_yolo(tiny_yolo: Path, root: Path) -> Path:
    """tiny_yolo (6 reader problem kinds) + an undecodable image, two byte copies and a 12-sample class."""
    shutil.copytree(tiny_yolo, root)
    images, labels = root / "images" / "train", root / "labels" / "train"
    (images / "broken.png").write_bytes(b"this is not a PNG")
    (labels / "broken.txt").write_text("0 0.5 0.5 0.2 0.2\n")
    for name in ("copy_a", "copy_b"):
        shutil.copy2(images / "train_00.png", images / f"{name}.png")
        shutil.copy2(labels / "train_00.txt", labels / f"{name}.txt")
    for i in range(12):  # "inclusion" (id 1) gets enough samples; the others stay small
        write_image(images / f"many_{i}.jpg", 1000 + i, [(10, 10, 20, 20)])
        (labels / f"many_{i}.txt").write_text("1 0.25 0.3 0.15 0.2\n")
    return root


def test_every_problem_kind_is_found(tiny_yolo, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # rich wraps long paths at 80 columns otherwise
    root = _broken_yolo(tiny_yolo, tmp_path / "broken")
    s = compute_stats(root)
    kinds = _kinds(s)
    assert set(kinds) == set(PROBLEM_KINDS)  # one of each kind
    assert kinds["duplicate_file"] == 1 and kinds["unreadable_image"] == 1
    assert s["duplicate_groups"] == [["images/train/copy_a.png", "images/train/copy_b.png",
                                      "images/train/train_00.png"]]
    few = {e["path"] for r in s["problems"] if r["kind"] == "few_samples" for e in r["examples"]}
    assert few == {"crazing", "rust spot", "scratch"}  # inclusion has 12 + 3 boxes
    assert [r["kind"] for r in s["problems"]] == [k for k in PROBLEM_KINDS if k in kinds]  # table order
    # The CLI prints the table with the first examples, detecting the format itself.
    code = main(["stats", str(root), "--json", str(tmp_path / "s.json")])
    out, err = capsys.readouterr()
    assert code == 0, err
    for kind in PROBLEM_KINDS:
        assert kind in out
    assert "broken.png" in out and "copy_a.png" in out and "no problems found" not in out
    assert json.loads((tmp_path / "s.json").read_text(encoding="utf-8")) == compute_stats(root)


def test_clean_data_says_no_problems(tmp_path, capsys):
    for cls in ("rust spot", "ölfleck"):
        for i in range(FEW_SAMPLES):
            write_image(tmp_path / "d" / cls / f"{i}.png", hash((cls, i)) % 1000, [(i, i, i + 10, i + 10)])
    s = compute_stats(tmp_path / "d", "folders")
    assert s["problems"] == [] and s["duplicate_groups"] == [] and s["n_problems"] == 0
    code = main(["stats", str(tmp_path / "d")])
    out = capsys.readouterr().out
    assert code == 0 and "no problems found" in out and "ölfleck" in out


def test_stats_itself_flags_undecodable_images(tmp_path):
    good = write_image(tmp_path / "a.png", 1)
    bad = tmp_path / "b.png"
    bad.write_bytes(b"\x89PNG but not really")
    items = [Item(name=p.name, path=p, label=0) for p in (good, bad)]
    s = labelled_stats(LabelledData("classification", "test", tmp_path, ["x"], items))
    row = next(r for r in s["problems"] if r["kind"] == "unreadable_image")
    assert row["count"] == 1 and row["examples"][0]["path"] == "b.png"


def test_duplicates_are_grouped_by_content_not_name(tmp_path):
    a = write_image(tmp_path / "x" / "a.png", 1)
    b = write_image(tmp_path / "y" / "a.png", 2)  # same name, other bytes
    c = tmp_path / "z.png"
    shutil.copy2(a, c)
    items = [Item(name=p.relative_to(tmp_path).as_posix(), path=p, boxes=np.zeros((0, 4), np.float32))
             for p in (a, b, c)]
    s = labelled_stats(LabelledData("detection", "test", tmp_path, ["x"], items))
    assert s["duplicate_groups"] == [["x/a.png", "z.png"]]


def test_severstal_is_detected_and_keeps_its_extras(capsys):
    root = shared_data("severstal-sample")
    s = compute_stats(root)  # no --format: read as rle, recognised as Kaggle's Severstal
    assert s["format"] == "rle" and s["severstal"] and s["n_images"] == 30
    assert [c["images"] for c in s["per_class"]] == [0, 1, 20, 19]
    assert s["full_set"]["n_images"] == 12568 and s["defect_pixels"] > 0
    code = main(["stats", str(root)])
    out = capsys.readouterr().out
    assert code == 0 and "full set: 5.76%" in out and "few_samples" in out  # class 1 is absent from the sample
