"""`steelscan convert`: writers for yolo / coco / voc / folders, read back through the readers."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from steelscan.cli import main
from steelscan.core.errors import DataError
from steelscan.data.convert import coco as coco_writer
from steelscan.data.convert import convert, write_data
from steelscan.data.formats import Item, LabelledData, read_data
from tests.conftest import shared_data
from tests.layouts import write_image


def _by_stem(data: LabelledData) -> dict[str, Item]:
    out = {it.path.stem: it for it in data.items}
    assert len(out) == len(data.items), "test data must have unique stems"
    return out


def _named_boxes(data: LabelledData, item: Item) -> list[tuple[str, tuple[float, ...]]]:
    return sorted((data.class_names[int(k)], tuple(b)) for b, k in zip(item.boxes.tolist(), item.labels.tolist()))


def _same_boxes(a: LabelledData, ia: Item, b: LabelledData, ib: Item, atol: float = 1.0) -> None:
    na, nb = _named_boxes(a, ia), _named_boxes(b, ib)
    assert [n for n, _ in na] == [n for n, _ in nb], ia.name
    if na:
        assert np.allclose([x for _, x in na], [x for _, x in nb], atol=atol), (ia.name, na, nb)


def _det_data(root: Path, names: list[str]) -> LabelledData:
    """Three images (two share the file name a.png in different split folders) and one defect-free."""
    items = []
    for i, (split, rel) in enumerate([("train", "train/a.png"), ("val", "val/a.png"), ("train", "train/b.jpg")]):
        path = write_image(root / rel, i, [(5, 6, 25, 30)], grey=i == 0)
        boxes = np.array([[5, 6, 25, 30], [30.4, 2.2, 60.6, 20.5]], np.float32)[: 2 if i != 2 else 0]
        items.append(Item(name=rel, path=path, split=split, size=(48, 64), boxes=boxes,
                          labels=np.array([0, len(names) - 1][: len(boxes)], np.int64)))
    return LabelledData("detection", "test", root, names, items)


# ----------------------------------------------------------------------------------------------- round trips


def test_voc_yolo_coco_voc_round_trip_keeps_boxes_names_and_splits(tiny_voc, tmp_path):
    src = read_data(tiny_voc)
    chain = [src]
    for to in ("yolo", "coco", "voc"):
        dst = tmp_path / to
        result = write_data(chain[-1], dst, to)
        assert result.images == len(src.items) and dst.is_dir()
        back = read_data(dst)
        assert back.format == to and back.task == "detection"
        chain.append(back)
    for back in chain[1:]:
        assert back.class_names == src.class_names  # "oil-stain" has no box yet and still travels
        assert back.problems == []  # the writers fix nothing silently and add no problem
        a, b = _by_stem(src), _by_stem(back)
        assert a.keys() == b.keys()
        for stem, it in a.items():
            assert b[stem].split == (it.split or "train")  # an image outside ImageSets goes to train
            _same_boxes(src, it, back, b[stem])


@pytest.mark.parametrize("to", ["yolo", "coco", "voc"])
def test_detection_round_trip_with_spaces_and_non_ascii_names(tmp_path, to):
    names = ["rust spot", "ölfleck", "Zunder <grob> & fein", "擦り傷"]
    src = _det_data(tmp_path / "src", names)
    write_data(src, tmp_path / to, to)
    back = read_data(tmp_path / to)
    assert back.class_names == sorted(names) if to == "voc" else back.class_names == names  # VOC: sorted union
    assert sorted((it.split, len(it.boxes)) for it in back.items) == [("train", 0), ("train", 2), ("val", 2)]
    for it in back.items:
        orig = next(o for o in src.items if o.split == it.split and len(o.boxes) == len(it.boxes))
        _same_boxes(src, orig, back, it)


def test_yolo_to_coco_to_yolo_exact_enough(tiny_yolo, tmp_path):
    src = read_data(tiny_yolo)
    write_data(src, tmp_path / "coco", "coco")
    write_data(read_data(tmp_path / "coco"), tmp_path / "yolo", "yolo")
    back = read_data(tmp_path / "yolo")
    a, b = _by_stem(src), _by_stem(back)
    assert a.keys() == b.keys() and back.class_names == src.class_names
    for stem, it in a.items():
        assert b[stem].split == it.split
        _same_boxes(src, it, back, b[stem], atol=0.01)


def test_file_formats(tmp_path):
    src = _det_data(tmp_path / "src", ["rust spot", "ölfleck"])
    write_data(src, tmp_path / "y", "yolo")
    spec = yaml.safe_load((tmp_path / "y" / "data.yaml").read_text(encoding="utf-8"))
    assert spec["path"] == "." and spec["train"] == "images/train" and spec["val"] == "images/val"
    assert "test" not in spec and spec["names"] == {0: "rust spot", 1: "ölfleck"}
    lines = (tmp_path / "y" / "labels" / "train" / "a.txt").read_text().splitlines()
    assert lines[0] == f"0 {15 / 64:.6f} {18 / 48:.6f} {20 / 64:.6f} {24 / 48:.6f}"
    assert (tmp_path / "y" / "labels" / "train" / "b.txt").read_text() == ""  # defect-free: empty txt
    # Images are copied byte for byte, whatever their format.
    assert (tmp_path / "y" / "images" / "val" / "a.png").read_bytes() == (tmp_path / "src" / "val" / "a.png").read_bytes()

    write_data(src, tmp_path / "c", "coco")
    train = json.loads((tmp_path / "c" / "annotations" / "instances_train.json").read_text(encoding="utf-8"))
    assert [c["id"] for c in train["categories"]] == [1, 2]
    assert {i["file_name"] for i in train["images"]} == {"a.png", "b.jpg"}
    assert all(i["width"] == 64 and i["height"] == 48 for i in train["images"])
    ann = train["annotations"][0]
    assert ann["bbox"] == [5, 6, 20, 24] and ann["area"] == 480 and ann["iscrowd"] == 0 and ann["category_id"] == 1
    val = json.loads((tmp_path / "c" / "annotations" / "instances_val.json").read_text(encoding="utf-8"))
    assert [i["file_name"] for i in val["images"]] == ["val_a.png"]  # the second a.png is renamed, not lost
    assert len({i["id"] for i in train["images"] + val["images"]}) == 3

    write_data(src, tmp_path / "v", "voc")
    root = ET.parse(tmp_path / "v" / "Annotations" / "a.xml").getroot()
    box = root.find("object/bndbox")
    assert [int(box.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")] == [6, 7, 25, 30]  # 1-based inclusive
    second = root.findall("object/bndbox")[1]
    assert [int(second.findtext(t)) for t in ("xmin", "ymin", "xmax", "ymax")] == [31, 3, 61, 20]  # round() first
    assert root.findtext("size/depth") == "1" and root.findtext("filename") == "a.png"
    assert (tmp_path / "v" / "ImageSets" / "Main" / "val.txt").read_text().split() == ["val_a"]


def test_segmentation_becomes_one_box_per_component(tiny_masks, tmp_path):
    src = read_data(tiny_masks)
    result = write_data(src, tmp_path / "coco", "coco")
    back = read_data(tmp_path / "coco")
    assert back.class_names == src.class_names and result.boxes == sum(len(it.boxes) for it in back.items)
    b = _by_stem(back)
    # m_00: value 1 (scratch) at rows 5:15, cols 5:20; value 2 (rust spot) at rows 30:40, cols 40:60.
    assert _named_boxes(back, b["m_00"]) == [("rust spot", (40, 30, 60, 40)), ("scratch", (5, 5, 20, 15))]
    assert len(b["m_03"].boxes) == 0  # an all-background mask is a defect-free image
    assert [int(k) for k in b["m_06"].labels] == [0]  # value 7 is outside the classes: no box
    assert {it.split for it in back.items} == {"train", "val"}


def test_rle_to_yolo_and_coco_without_split(tiny_rle, tmp_path):
    src = read_data(tiny_rle)
    write_data(src, tmp_path / "coco", "coco")
    assert [p.name for p in (tmp_path / "coco" / "annotations").iterdir()] == ["instances_all.json"]
    coco = read_data(tmp_path / "coco")
    assert coco.own_splits == [] and coco.class_names == ["1", "2", "3", "4", "5"]
    b = _by_stem(coco)
    # 0001abc.jpg: class 2 at rows 10:40, cols 20:50.
    assert _named_boxes(coco, b["0001abc"]) == [("2", (20, 10, 50, 40))]
    write_data(src, tmp_path / "yolo", "yolo")
    yolo = read_data(tmp_path / "yolo")
    assert yolo.own_splits == ["train"] and len(yolo.items) == len(src.items)  # no split -> train
    assert yolo.class_names == ["1", "2", "3", "4", "5"]  # strings, not YAML integers


# ----------------------------------------------------------------------------------------------- folders


def test_classification_folders_round_trip(tiny_folders_split, tmp_path):
    src = read_data(tiny_folders_split)
    result = write_data(src, tmp_path / "f", "folders")
    back = read_data(tmp_path / "f")
    assert back.class_names == src.class_names and back.task == "classification"
    assert result.per_split == {"train": 9, "val": 4, "test": 2}
    assert sorted((it.split, back.class_names[it.label], it.path.name) for it in back.items) == \
        sorted((it.split, src.class_names[it.label], it.path.name) for it in src.items)
    assert (tmp_path / "f" / "val" / "ölfleck").is_dir()  # Roboflow's "valid" is written as val


def test_classification_to_boxes_is_refused(tiny_folders, tmp_path):
    with pytest.raises(DataError, match="classification data has no boxes.*--to folders works"):
        convert(tiny_folders, tmp_path / "out", "yolo")
    assert not (tmp_path / "out").exists()


def test_detection_to_folders_writes_crops(tiny_yolo, tmp_path):
    src = read_data(tiny_yolo)
    result = write_data(src, tmp_path / "crops", "folders")
    n_boxes = sum(len(it.boxes) for it in src.items)
    assert result.unit == "crops" and sum(result.per_split.values()) == n_boxes
    back = read_data(tmp_path / "crops")
    assert back.task == "classification" and back.class_names == src.class_names
    assert len(back.items) == n_boxes and back.own_splits == ["train", "val"]
    # train_00.png: class 0, box (24, 12, 40, 36) -> margin max(2 px, 10% of the side) -> crop 22..42 x 10..38.
    crop = tmp_path / "crops" / "train" / "crazing" / "train_00_0.png"
    with Image.open(crop) as im:
        assert im.size == (42 - 22, 38 - 10)
    source = np.array(Image.open(tiny_yolo / "images" / "train" / "train_00.png"))
    assert (np.array(Image.open(crop)) == source[10:38, 22:42]).all()


def test_segmentation_to_folders_crops_each_component(tiny_masks, tmp_path):
    src = read_data(tiny_masks)
    result = write_data(src, tmp_path / "crops", "folders")
    back = read_data(tmp_path / "crops")
    assert back.class_names == sorted(src.class_names)  # class folders read back in sorted order
    assert len(back.items) == sum(result.per_split.values()) == sum(len(it.present) for it in src.items)


def test_unsafe_class_folder_name_is_refused(tmp_path):
    src = _det_data(tmp_path / "src", ["ok", "a/b"])
    with pytest.raises(DataError, match="'a/b'"):
        write_data(src, tmp_path / "f", "folders")
    src = _det_data(tmp_path / "src2", ["ok", ".."])
    with pytest.raises(DataError, match=r"'\.\.'"):
        write_data(src, tmp_path / "f", "folders")
    assert not (tmp_path / "f").exists()


# ----------------------------------------------------------------------------------------------- safety


def test_non_empty_destination_is_refused_and_untouched(tiny_voc, tmp_path):
    dst = tmp_path / "mine"
    dst.mkdir()
    (dst / "notes.txt").write_text("keep me")
    with pytest.raises(DataError, match=f"destination {dst} is not empty"):
        convert(tiny_voc, dst, "yolo")
    assert [p.name for p in dst.iterdir()] == ["notes.txt"] and (dst / "notes.txt").read_text() == "keep me"
    (tmp_path / "file").write_text("x")
    with pytest.raises(DataError, match="not a folder"):
        convert(tiny_voc, tmp_path / "file", "yolo")
    with pytest.raises(DataError, match="cannot create the destination"):
        convert(tiny_voc, tmp_path / "file" / "sub", "yolo")
    empty = tmp_path / "empty"
    empty.mkdir()
    convert(tiny_voc, empty, "yolo")  # an empty folder is fine
    assert (empty / "data.yaml").is_file()


def test_a_failure_leaves_nothing_behind(tiny_voc, tmp_path, monkeypatch):
    calls = []

    def broken(*args):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("disk full")
        return (48, 64)

    monkeypatch.setattr(coco_writer, "item_size", lambda item: broken())
    with pytest.raises(RuntimeError, match="disk full"):
        convert(tiny_voc, tmp_path / "out", "coco")
    assert list(tmp_path.iterdir()) == []  # neither DST nor the staging folder


def test_unknown_target_is_refused(tiny_voc, tmp_path):
    with pytest.raises(DataError, match="unknown target layout 'pdf'"):
        convert(tiny_voc, tmp_path / "o", "pdf")


# ----------------------------------------------------------------------------------------------- CLI


def test_cli_convert(tiny_coco, tmp_path, capsys):
    code = main(["convert", str(tiny_coco), str(tmp_path / "voc"), "--to", "voc"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.strip().splitlines() == [out.strip()]  # one line
    assert "12 images (train 9, val 3)" in out and "3 classes (crazing, patches, rust spot)" in out
    assert str(tmp_path / "voc") in out
    assert read_data(tmp_path / "voc").format == "voc"


def test_cli_convert_errors_are_one_line(tiny_folders, tmp_path, capsys):
    code = main(["convert", str(tiny_folders), str(tmp_path / "y"), "--to", "yolo", "--format", "folders"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and err.startswith("steelscan: error:") and "no boxes" in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    code = main(["convert", str(tiny_folders), str(tmp_path / "y"), "--to", "pdf"])
    assert code == 2


# ----------------------------------------------------------------------------------------------- real data


def _assert_same_detection(src: LabelledData, back: LabelledData) -> None:
    a, b = _by_stem(src), _by_stem(back)
    assert a.keys() == b.keys() and back.class_names == src.class_names
    for stem, it in a.items():
        assert b[stem].split == it.split, stem
        assert np.array_equal(b[stem].labels, it.labels), stem
        assert np.allclose(b[stem].boxes, it.boxes, atol=1e-3), stem


def test_real_neu_det_to_yolo_keeps_boxes_and_split(tmp_path):
    src = read_data(shared_data("neu-det"))
    result = write_data(src, tmp_path / "yolo", "yolo")
    assert result.per_split == {"train": 1080, "val": 360} and result.boxes == 3317
    _assert_same_detection(src, read_data(tmp_path / "yolo"))


@pytest.mark.slow
@pytest.mark.parametrize("to", ["coco", "voc"])
def test_real_neu_det_to_coco_and_voc(tmp_path, to):
    src = read_data(shared_data("neu-det"))
    write_data(src, tmp_path / to, to)
    _assert_same_detection(src, read_data(tmp_path / to))
