"""`steelscan stats`: numbers on hand-made folders, the CLI end to end, one-line errors, real data."""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import shared_data
from steelscan.cli import main
from steelscan.data.classes import SEVERSTAL_SHAPE
from steelscan.data.rle import rle_encode
from steelscan.data.stats import compute_stats, plot_stats, print_stats
from steelscan.core.errors import SteelscanError

H, W = SEVERSTAL_SHAPE
N_PIXELS = H * W


def _severstal_folder(root: Path, with_images: bool = True) -> Path:
    """4 images: a (class 1: 100 px, class 3: 300 px, 50 of them shared), b (class 3: 1000 px), c and d defect-free."""
    root.mkdir(parents=True, exist_ok=True)
    a1 = np.zeros(SEVERSTAL_SHAPE, np.uint8)
    a1[0:10, 0:10] = 1
    a3 = np.zeros(SEVERSTAL_SHAPE, np.uint8)
    a3[5:10, 0:10] = 1  # 50 pixels shared with a1
    a3[100:110, 500:525] = 1  # + 250
    b3 = np.zeros(SEVERSTAL_SHAPE, np.uint8)
    b3[0:100, 1590:1600] = 1  # 1000
    (root / "train.csv").write_text(
        "ImageId,ClassId,EncodedPixels\n"
        f"a.jpg,1,{rle_encode(a1)}\na.jpg,3,{rle_encode(a3)}\nb.jpg,3,{rle_encode(b3)}\n"
    )
    ids = ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    if with_images:
        (root / "train_images").mkdir()
        for image_id in ids:
            cv2.imwrite(str(root / "train_images" / image_id), np.full(SEVERSTAL_SHAPE, 128, np.uint8))
    else:
        (root / "image_ids.txt").write_text("\n".join(ids) + "\n")
    return root


def _neu_det_folder(root: Path) -> Path:
    for stem, objects in (
        ("crazing_1", [("crazing", (1, 1, 10, 20)), ("crazing", (1, 1, 30, 40))]),  # 10x20, 30x40
        ("scratches_2", [("scratches", (11, 11, 20, 200)), ("inclusion", (1, 1, 4, 4))]),  # 10x190, 4x4
    ):
        (root / "IMAGES").mkdir(parents=True, exist_ok=True)
        (root / "ANNOTATIONS").mkdir(exist_ok=True)
        cv2.imwrite(str(root / "IMAGES" / f"{stem}.jpg"), np.zeros((200, 200), np.uint8))
        objs = "".join(
            f"<object><name>{n}</name><bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax>"
            f"<ymax>{b[3]}</ymax></bndbox></object>"
            for n, b in objects
        )
        (root / "ANNOTATIONS" / f"{stem}.xml").write_text(
            f"<annotation><size><width>200</width><height>200</height><depth>1</depth></size>{objs}</annotation>"
        )
    return root


def _neu_cls_folder(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, value in (("Cr_1.bmp", 100), ("Cr_2.bmp", 120), ("Sc_3.bmp", 50)):
        cv2.imwrite(str(root / name), np.full((200, 200), value, np.uint8))
    return root


def _cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------------------------------------------ numbers


@pytest.mark.parametrize("with_images", [True, False])
def test_severstal_numbers(tmp_path, with_images):
    s = compute_stats(_severstal_folder(tmp_path, with_images), "severstal")
    assert s["n_images"] == 4 and s["n_defect_free"] == 2 and s["n_defective"] == 2 and s["n_multi_class"] == 1
    assert s["masks_only"] is (not with_images)
    assert s["image_ids_from"] == ("train_images/" if with_images else "image_ids.txt")
    assert [c["images"] for c in s["per_class"]] == [1, 0, 2, 0]
    assert [c["pixels"] for c in s["per_class"]] == [100, 0, 1300, 0]
    assert s["per_class"][2]["image_share"] == pytest.approx(0.5)
    assert s["per_class"][0]["share_of_defect_pixels"] == pytest.approx(100 / 1400)
    assert s["per_class"][2]["pixel_share"] == pytest.approx(1300 / (4 * N_PIXELS))
    assert s["defect_pixels"] == 1350 and s["overlap_pixels"] == 50  # union, overlap counted once
    assert s["defect_pixel_share_of_defective_images"] == pytest.approx(1350 / (2 * N_PIXELS))
    assert s["defect_pixel_share"] == pytest.approx(1350 / (4 * N_PIXELS))
    assert s["full_set"]["defect_pixel_share_of_defective_images"] == 0.0576
    assert s["per_class"][2]["full_set_images"] == 5150


def test_neu_det_numbers(tmp_path):
    s = compute_stats(_neu_det_folder(tmp_path), "neu-det")
    assert s["n_images"] == 2 and s["n_boxes"] == 4 and s["n_defect_free"] == 0
    by = {c["class"]: c for c in s["per_class"]}
    assert by["crazing"]["boxes"] == 2 and by["crazing"]["images"] == 1
    assert by["crazing"]["width"] == {"min": 10.0, "median": 20.0, "max": 30.0}
    assert by["crazing"]["area"] == {"min": 200.0, "median": 700.0, "max": 1200.0}
    assert by["inclusion"]["images"] == 0 and by["inclusion"]["images_with_boxes"] == 1
    assert by["scratches"]["height"]["max"] == 190.0
    assert by["patches"]["boxes"] == 0 and by["patches"]["width"]["min"] is None
    assert s["images_with_other_class_boxes"] == 1 and s["other_class_boxes"] == 1
    assert s["boxes_per_image"]["mean"] == 2.0


def test_neu_cls_numbers(tmp_path):
    s = compute_stats(_neu_cls_folder(tmp_path), "neu-cls")
    assert s["n_images"] == 3
    assert [c["images"] for c in s["per_class"]] == [2, 0, 0, 0, 0, 1]
    assert s["per_class"][0]["mean_grey"] == pytest.approx(110) and s["per_class"][0]["numbers"] == [1, 2]
    assert s["per_class"][1]["numbers"] is None


def test_unknown_format_and_missing_path(tmp_path):
    with pytest.raises(SteelscanError, match="unknown data format 'pdf'"):
        compute_stats(tmp_path, "pdf")
    with pytest.raises(SteelscanError, match="data folder not found"):
        compute_stats(tmp_path / "nope", "severstal")


def test_print_and_plot_from_the_dict(tmp_path):
    from rich.console import Console

    s = compute_stats(_severstal_folder(tmp_path / "sev"), "severstal")
    console = Console(record=True, width=120)
    print_stats(s, console)
    text = console.export_text()
    assert "defect-free" in text and "5.76%" in text and "full set" in text
    out = plot_stats(s, tmp_path / "plots" / "s.png")
    assert cv2.imread(str(out)).shape[2] == 3
    with pytest.raises(SteelscanError, match=r"\.png"):
        plot_stats(s, tmp_path / "s.pdf")


# ------------------------------------------------------------------------------------------ CLI


def test_cli_severstal_json_and_plot(tmp_path, capsys):
    root = _severstal_folder(tmp_path / "sev", with_images=False)
    code, out, err = _cli(["stats", root, "--format", "severstal", "--json", tmp_path / "o" / "s.json",
                           "--plot", tmp_path / "s.png"], capsys)
    assert code == 0, err
    assert err == ""  # no progress bar when stderr is not a terminal
    assert "defect-free" in out and "pixels of defective images" in out and "full set: 5.76%" in out
    assert json.loads((tmp_path / "o" / "s.json").read_text()) == compute_stats(root, "severstal")
    image = cv2.imread(str(tmp_path / "s.png"))
    assert image is not None and image.shape[0] > 200


@pytest.mark.parametrize(("fmt", "maker", "expect"), [("neu-det", _neu_det_folder, "box sizes"),
                                                       ("neu-cls", _neu_cls_folder, "NEU-CLS images per class")])
def test_cli_neu(tmp_path, capsys, fmt, maker, expect):
    code, out, err = _cli(["stats", maker(tmp_path / "d"), "-f", fmt, "--plot", tmp_path / "p.png"], capsys)
    assert code == 0, err
    assert expect in out and (tmp_path / "p.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("layout", "fmt", "message"),
    [
        ("missing", "severstal", "data folder not found"),
        ("neu-det", "severstal", "expected a Severstal folder with train.csv"),
        ("severstal", "neu-det", "expected NEU-DET folders IMAGES/ and ANNOTATIONS/"),
        ("severstal", "neu-cls", "unknown NEU-CLS class folder"),
        ("neu-det", "neu-cls", "unknown NEU-CLS class folder"),
        ("bad-csv", "severstal", "unknown train.csv header"),
        ("bad-rle", "severstal", r"line 2 \(image a.jpg, class 1\): bad RLE"),
    ],
)
def test_cli_bad_input_is_one_line_without_traceback(tmp_path, capsys, layout, fmt, message):
    root = tmp_path / "data"
    if layout == "severstal":
        _severstal_folder(root)
    elif layout == "neu-det":
        _neu_det_folder(root)
    elif layout in ("bad-csv", "bad-rle"):
        root.mkdir()
        header = "ImageId,Class,Pixels" if layout == "bad-csv" else "ImageId,ClassId,EncodedPixels"
        (root / "train.csv").write_text(f"{header}\na.jpg,1,1 2 3\n")
        (root / "image_ids.txt").write_text("a.jpg\n")
    code, out, err = _cli(["stats", root, "--format", fmt], capsys)
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("steelscan: error:") and "Traceback" not in err
    assert re.search(message, lines[0]), lines[0]


def test_cli_rejects_unknown_format_value(tmp_path, capsys):
    code, _, err = _cli(["stats", tmp_path, "--format", "pdf"], capsys)
    assert code == 2 and "Traceback" not in err and "unknown data format 'pdf'" in err


# ------------------------------------------------------------------------------------------ real data


def test_real_severstal_partial(tmp_path, capsys):
    root = shared_data("severstal-partial")
    code, out, err = _cli(["stats", root, "--format", "severstal", "--json", tmp_path / "s.json"], capsys)
    assert code == 0, err
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["masks_only"] and s["image_ids_from"] == "image_ids.txt"
    assert (s["n_images"], s["n_defect_free"]) == (5028, 2361)
    assert [c["images"] for c in s["per_class"]] == [365, 99, 2061, 320]
    assert sum(c["pixels"] for c in s["per_class"]) >= s["defect_pixels"] > 0
    assert 0.04 < s["defect_pixel_share_of_defective_images"] < 0.08  # full set: 5.76%
    assert "full set: 5.76%" in out and "5902" in out


@pytest.mark.parametrize(("name", "fmt", "n_images"), [("severstal-sample", "severstal", 30),
                                                        ("neu-cls", "neu-cls", 1440), ("neu-det", "neu-det", 1440)])
def test_real_other_folders(tmp_path, capsys, name, fmt, n_images):
    code, out, err = _cli(["stats", shared_data(name), "-f", fmt, "--json", tmp_path / "s.json"], capsys)
    assert code == 0, err
    s = json.loads((tmp_path / "s.json").read_text())
    assert s["n_images"] == n_images
    if fmt == "neu-det":
        assert s["n_boxes"] == 3317 and [c["images"] for c in s["per_class"]] == [240] * 6
    if name == "severstal-sample":
        assert s["n_defect_free"] == 0 and [c["images"] for c in s["per_class"]] == [0, 1, 20, 19]
