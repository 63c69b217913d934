"""Readers for every label layout, format detection and splits, on hand-written tiny sets and the real data."""

from __future__ import annotations

import json
import random
import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from steelscan.core.errors import ConfigError, DataError
from steelscan.data.formats import FORMATS, PROBLEM_KINDS, Item, LabelledData, detect_format, read_data
from steelscan.data.splits import split_items
from tests.conftest import shared_data
from tests.layouts import EXPECT, H, W, make_folders, write_image

LAYOUTS = [  # (fixture, EXPECT key, detected format, task)
    ("tiny_folders", "folders", "folders", "classification"),
    ("tiny_folders_split", "folders_split", "folders", "classification"),
    ("tiny_yolo", "yolo", "yolo", "detection"),
    ("tiny_yolo_dict", "yolo", "yolo", "detection"),
    ("tiny_coco", "coco", "coco", "detection"),
    ("tiny_voc", "voc", "voc", "detection"),
    ("tiny_masks", "masks", "masks", "segmentation"),
    ("tiny_rle", "rle", "rle", "segmentation"),
]


def by_name(data: LabelledData) -> dict[str, Item]:
    return {it.name: it for it in data.items}


@pytest.mark.parametrize("fixture, key, fmt, task", LAYOUTS)
def test_every_layout_reads_into_one_shape(request, fixture, key, fmt, task):
    root = request.getfixturevalue(fixture)
    assert detect_format(root) == fmt
    data = read_data(root)
    expect = EXPECT[key]
    assert (data.format, data.task) == (fmt, task)
    assert data.class_names == expect["classes"]
    assert len(data.items) == expect["items"]
    assert data.own_splits == expect["own_splits"]
    assert data.problem_counts() == expect["problems"]
    assert all(p.kind in PROBLEM_KINDS and p.message for p in data.problems)
    assert len({it.name for it in data.items}) == len(data.items)
    k = len(data.class_names)
    for it in data.items:
        assert it.path.is_file() and it.size is not None
        h, w = it.size
        assert it.boxes.dtype == np.float32 and it.boxes.shape == (len(it.labels), 4)
        assert it.labels.dtype == np.int64 and all(0 <= int(c) < k for c in it.labels)
        if len(it.boxes):
            assert (it.boxes[:, :2] >= 0).all() and (it.boxes[:, 2] <= w).all() and (it.boxes[:, 3] <= h).all()
            assert (it.boxes[:, 2:] > it.boxes[:, :2]).all()
        if task == "classification":
            assert 0 <= it.label < k
        assert all(0 <= c < k for c in it.present)
    assert FORMATS[fmt].task == task


# ---------------------------------------------------------------------------------------------------- folders


def test_folders_labels_follow_folder_names(tiny_folders):
    data = read_data(tiny_folders)
    for it in data.items:
        assert data.class_names[it.label] == unicodedata.normalize("NFC", it.path.parent.name)
    assert {it.path.suffix for it in data.items} == {".png", ".jpg", ".bmp", ".tif"}
    assert data.instances_per_class() == [4, 4, 3, 3]
    assert all(it.size == (H, W) for it in data.items)
    assert not any(".thumbnails" in it.name or "MACOSX" in it.name for it in data.items)
    assert data.problems[0].path == "scratch/broken.png"


def test_folders_split_union_and_valid_alias(tiny_folders_split):
    data = read_data(tiny_folders_split)
    assert {it.name.split("/")[0]: it.split for it in data.items} == {"train": "train", "valid": "val", "test": "test"}
    assert data.instances_per_class() == [4, 4, 5, 2]


def test_folders_decomposed_unicode_names_are_one_class(tmp_path):
    write_image(tmp_path / "train" / unicodedata.normalize("NFD", "ölfleck") / "a.png", 1)
    write_image(tmp_path / "val" / unicodedata.normalize("NFC", "ölfleck") / "b.png", 2)
    data = read_data(tmp_path)
    assert data.class_names == ["ölfleck"] and [it.label for it in data.items] == [0, 0]


def test_folders_mixed_split_and_class_folders_refused(tmp_path):
    write_image(tmp_path / "train" / "scratch" / "a.png", 1)
    write_image(tmp_path / "rust" / "b.png", 2)
    with pytest.raises(DataError, match="found both"):
        read_data(tmp_path, "folders")


# ------------------------------------------------------------------------------------------------------- YOLO


def test_yolo_boxes_in_pixels_and_label_mistakes(tiny_yolo):
    items = by_name(read_data(tiny_yolo))
    np.testing.assert_allclose(items["images/train/train_00.png"].boxes, [[24, 12, 40, 36]])
    clipped = items["images/train/train_01.jpg"]
    np.testing.assert_allclose(clipped.boxes[1], [44.8, 19.2, 64, 28.8], rtol=1e-5)
    assert len(items["images/train/train_02.jpg"].boxes) == 1  # class 7 dropped
    assert len(items["images/train/train_05.jpg"].boxes) == 0  # empty txt: defect-free
    assert len(items["images/val/val_11.jpg"].boxes) == 0  # no txt: defect-free, with a problem


def test_yolo_names_mapping_and_txt_list_give_the_same_data(tiny_yolo, tiny_yolo_dict):
    a, b = read_data(tiny_yolo), read_data(tiny_yolo_dict)
    assert a.class_names == b.class_names
    ia, ib = by_name(a), by_name(b)
    assert ia.keys() == ib.keys()
    for name in ia:
        np.testing.assert_array_equal(ia[name].boxes, ib[name].boxes)
        assert ia[name].split == ib[name].split


def test_yolo_root_may_be_the_yaml_itself(tiny_yolo):
    assert detect_format(tiny_yolo / "data.yaml") == "yolo"
    assert len(read_data(tiny_yolo / "data.yaml").items) == EXPECT["yolo"]["items"]


def test_yolo_bad_yaml_is_a_data_error(tmp_path):
    write_image(tmp_path / "images" / "train" / "a.png", 1)
    (tmp_path / "data.yaml").write_text("train: images/train\nval: images/val\nnames: [a]\n")
    with pytest.raises(DataError, match="val"):
        read_data(tmp_path)
    (tmp_path / "data.yaml").write_text("train: images/train\nnames: {0: a, 2: c}\n")
    with pytest.raises(DataError, match="without gaps"):
        read_data(tmp_path)


def test_yolo_unreadable_image_is_skipped(tmp_path):
    write_image(tmp_path / "images" / "train" / "a.png", 1)
    (tmp_path / "images" / "train" / "b.jpg").write_bytes(b"this is no jpeg")
    (tmp_path / "data.yaml").write_text("train: images/train\nnames: [a]\n")
    data = read_data(tmp_path)
    assert [it.name for it in data.items] == ["images/train/a.png"]
    assert data.problem_counts() == {"unreadable_image": 1, "image_without_label": 1}


# ------------------------------------------------------------------------------------------------------- COCO


def test_coco_ids_map_to_indices_and_xywh_to_xyxy(tiny_coco):
    items = by_name(read_data(tiny_coco))
    first = items["images/coco_00.png"]
    np.testing.assert_array_equal(first.boxes, [[8, 6, 28, 26]])
    assert first.labels.tolist() == [0]  # category id 1 -> index 0
    assert len(items["images/coco_04.png"].boxes) == 0  # listed without annotations: defect-free
    assert items["images/coco_01.jpg"].labels.tolist() == [1]  # its iscrowd region is skipped
    np.testing.assert_array_equal(items["images/coco_02.png"].boxes[1], [50, 30, 64, 40])
    assert items["images/coco_10.png"].split == "val"


def test_coco_roboflow_layout_drops_the_project_category(tmp_path):
    from tests.layouts import make_coco

    data = read_data(make_coco(tmp_path, roboflow=True))
    assert data.class_names == EXPECT["coco"]["classes"]
    assert {it.name.split("/")[0]: it.split for it in data.items} == {"train": "train", "valid": "val"}


# -------------------------------------------------------------------------------------------------------- VOC


def test_voc_cvat_export(tiny_voc):
    data = read_data(tiny_voc)
    items = by_name(data)
    first = items["JPEGImages/frame_000000.jpg"]
    np.testing.assert_array_equal(first.boxes, [[10, 8, 30, 24]])  # 1-based inclusive -> 0-based edges
    assert data.class_names[first.labels[0]] == "scratch"
    assert items["JPEGImages/frame_000005.jpg"].boxes.shape == (0, 4)  # no <object>: defect-free
    assert items["JPEGImages/frame_000010.jpg"].split == "val"
    assert items["JPEGImages/frame_000100.jpg"].split is None  # in no ImageSets list
    assert "JPEGImages/frame_000101.jpg" not in items  # its xml is broken: unknown labels, left out
    assert data.instances_per_class()[data.class_names.index("oil-stain")] == 0


def test_voc_refuses_dtd(tmp_path):
    write_image(tmp_path / "JPEGImages" / "a.jpg", 1)
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text(
        '<!DOCTYPE x [<!ENTITY e "boom">]><annotation><object><name>&e;</name></object></annotation>')
    (tmp_path / "Annotations" / "b.xml").write_text("<annotation><object><name>rust</name><bndbox><xmin>1</xmin>"
                                                    "<ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>"
                                                    "<filename>a.jpg</filename></annotation>")
    data = read_data(tmp_path)
    assert data.class_names == ["rust"] and data.problem_counts() == {"bad_label": 1}


# ------------------------------------------------------------------------------------------------------ masks


def test_masks_present_and_problems(tiny_masks):
    data = read_data(tiny_masks)
    items = by_name(data)
    assert items["images/train/m_00.jpg"].present == (0, 1)
    assert items["images/train/m_03.png"].present == ()
    assert items["images/train/m_06.jpg"].present == (0,)  # value 7 is a problem, the item stays
    assert items["images/train/m_08.jpg"].mask_path is None
    assert "images/train/m_07.png" not in items  # mask of the wrong size
    assert items["images/val/m_10.jpg"].mask_path.name == "m_10.png"


def test_masks_need_a_class_list(tmp_path):
    write_image(tmp_path / "images" / "a.png", 1)
    Image.fromarray(np.zeros((H, W), np.uint8)).save((tmp_path / "masks").mkdir() or tmp_path / "masks" / "a.png")
    with pytest.raises(DataError, match="classes.yaml"):
        read_data(tmp_path)
    (tmp_path / "dataset.yaml").write_text("names: {0: pit, 1: scab}\n")
    assert read_data(tmp_path).class_names == ["pit", "scab"]


# -------------------------------------------------------------------------------------------------------- RLE


def test_rle_any_class_count_and_size(tiny_rle):
    data = read_data(tiny_rle, format="severstal")  # the alias
    items = by_name(data)
    four = items["train_images/0004abc.jpg"]
    assert four.size == (120, 300) and four.present == (1, 4) and set(four.rles) == {1, 4}
    assert items["train_images/0003abc.jpg"].present == ()
    assert data.instances_per_class() == [3, 3, 1, 1, 2]


def test_rle_class_names_from_yaml(tiny_rle, tmp_path):
    root = shutil.copytree(tiny_rle, tmp_path / "copy")
    (root / "classes.yaml").write_text("classes: [pit, scab, seam, scale, roll mark, spare]\n")
    assert read_data(root).class_names == ["pit", "scab", "seam", "scale", "roll mark", "spare"]


def test_rle_severstal_like_keeps_four_classes(tmp_path):
    write_image(tmp_path / "train_images" / "a.jpg", 1, grey=True, size=(1600, 256))
    write_image(tmp_path / "train_images" / "b.jpg", 2, grey=True, size=(1600, 256))
    (tmp_path / "train.csv").write_text("ImageId,ClassId,EncodedPixels\na.jpg,2,1 10\n")
    data = read_data(tmp_path)
    assert data.class_names == ["1", "2", "3", "4"] and data.problems == []


def test_rle_labels_only_copy(tmp_path):
    (tmp_path / "train.csv").write_text("ImageId,ClassId,EncodedPixels\na.jpg,3,1 10\n")
    (tmp_path / "image_ids.txt").write_text("a.jpg\nb.jpg\n")
    data = read_data(tmp_path)
    assert [it.present for it in data.items] == [(2,), ()]
    assert data.problem_counts() == {"label_without_image": 1}


# ------------------------------------------------------------------------------------------------ NEU adapters


def test_neu_cls_skips_and_counts_the_held_out_fifth(tmp_path):
    for name in ("Cr_1", "Cr_4", "Cr_5", "Sc_9", "Sc_10"):
        write_image(tmp_path / f"{name}.bmp", 1, grey=True, size=(200, 200))
    data = read_data(tmp_path)
    assert data.format == "neu-cls" and len(data.class_names) == 6
    assert {it.name: (it.split, it.group) for it in data.items} == {
        "Cr_1.bmp": ("train", "1"), "Cr_4.bmp": ("val", "4"), "Sc_9.bmp": ("val", "9")}
    assert data.skipped == {"neu_held_out": 2}


def test_neu_det_bad_file_falls_back_to_per_file_problems(tmp_path):
    xml = ("<annotation><filename>{0}.jpg</filename><size><width>200</width><height>200</height></size>"
           "<object><name>{1}</name><bndbox><xmin>2</xmin><ymin>2</ymin><xmax>50</xmax><ymax>60</ymax>"
           "</bndbox></object></annotation>")
    (tmp_path / "ANNOTATIONS").mkdir()
    for stem, cls in (("crazing_1", "crazing"), ("crazing_4", "crazing"), ("scratches_2", "rust")):
        write_image(tmp_path / "IMAGES" / f"{stem}.jpg", 1, size=(200, 200))
        (tmp_path / "ANNOTATIONS" / f"{stem}.xml").write_text(xml.format(stem, cls))
    assert detect_format(tmp_path) == "neu-det"
    data = read_data(tmp_path)
    assert data.problem_counts() == {"class_out_of_range": 1}  # list_neu_det would have refused the whole set
    items = by_name(data)
    np.testing.assert_array_equal(items["IMAGES/crazing_1.jpg"].boxes, [[1, 1, 50, 60]])
    assert items["IMAGES/crazing_4.jpg"].split == "val" and items["IMAGES/scratches_2.jpg"].group == "2"


# ------------------------------------------------------------------------------------------- detection, names


def test_undetectable_folder_says_what_was_expected(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError, match=r"data.yaml \(YOLO\).*notes.txt"):
        read_data(tmp_path)
    with pytest.raises(DataError, match="found nothing"):
        read_data(tmp_path / "absent")


def test_unknown_format_lists_valid_ones(tiny_folders):
    with pytest.raises(DataError, match="yolo, coco, voc"):
        read_data(tiny_folders, format="kitti")
    assert read_data(tiny_folders, format="ImageFolder").format == "folders"


# ----------------------------------------------------------------------------------------------------- splits


def test_split_own(tiny_yolo):
    data = read_data(tiny_yolo)
    result = split_items(data)
    assert result.record["rule"] == "own"
    assert [it.name for it in result.val] == [it.name for it in data.select("val")]
    json.dumps(result.record)


def test_split_stratified_is_stable_and_covers_every_class(tiny_folders):
    data = read_data(tiny_folders)
    result = split_items(data, val_fraction=0.2, seed=0)
    assert result.record["rule"] == "stratified" and result.test == []
    assert {it.label for it in result.val} == set(range(len(data.class_names)))
    assert not {it.name for it in result.val} & {it.name for it in result.train}
    shuffled = LabelledData(data.task, data.format, data.root, data.class_names,
                            random.Random(3).sample(data.items, len(data.items)))
    assert split_items(shuffled, 0.2, 0).record["val"] == result.record["val"]


def test_split_carves_val_from_train_and_keeps_test(tmp_path):
    root = make_folders(tmp_path, split=True)
    shutil.rmtree(root / "valid")
    result = split_items(read_data(root), val_fraction=0.3)
    assert result.record["rule"] == "carved"
    assert [it.split for it in result.test] == ["test", "test"]
    assert all(it.split == "train" for it in result.val) and len(result.val) == 3


def test_split_keeps_groups_together():
    items = [Item(name=f"{g}_{i}.png", path=Path("x"), group=str(g), label=g % 2) for g in range(20) for i in range(3)]
    data = LabelledData("classification", "folders", Path("."), ["a", "b"], items)
    result = split_items(data, 0.25, seed=1)
    val_groups = {it.group for it in result.val}
    assert val_groups and not val_groups & {it.group for it in result.train}
    assert result.record["counts"] == {"train": 48, "val": 12, "test": 0}
    assert split_items(data, 0.25, seed=2).record["val"] != result.record["val"]


def test_split_rejects_bad_fraction(tiny_folders):
    with pytest.raises(ConfigError):
        split_items(read_data(tiny_folders), val_fraction=1.0)


# -------------------------------------------------------------------------------------------------- real data


def test_real_neu_det():
    data = read_data(shared_data("neu-det"))
    assert data.format == "neu-det" and len(data.class_names) == 6 and len(data.items) == 1440
    assert data.problems == []
    for it in data.items:
        number = int(it.path.stem.rsplit("_", 1)[1])
        assert it.split == ("val" if number % 5 == 4 else "train") and it.group == str(number)
    assert split_items(data).record["rule"] == "own"


def test_real_neu_cls_splits_like_neu_det():
    cls, det = read_data(shared_data("neu-cls")), read_data(shared_data("neu-det"))
    assert cls.class_names == det.class_names
    val_cls = {(cls.class_names[it.label], it.group) for it in cls.select("val")}
    val_det = {(it.path.stem.rsplit("_", 1)[0], it.group) for it in det.select("val")}
    assert val_cls == val_det and len(val_cls) == 360


def test_real_severstal():
    sample = read_data(shared_data("severstal-sample"))
    assert sample.class_names == ["1", "2", "3", "4"] and len(sample.items) == 30 and sample.problems == []
    partial = read_data(shared_data("severstal-partial"))
    assert len(partial.items) == 5028 and sum(not it.present for it in partial.items) == 2361


def test_split_neu_val_remainders(tmp_path):
    for name in ("Cr_1", "Cr_2", "Cr_3", "Cr_4", "Sc_6", "Sc_9"):
        write_image(tmp_path / f"{name}.bmp", 1, grey=True, size=(200, 200))
    data = read_data(tmp_path)
    assert split_items(data).record["val"] == ["Cr_4.bmp", "Sc_9.bmp"]
    assert split_items(data, 0.2, 0, (1, 2)).record["val"] == ["Cr_1.bmp", "Cr_2.bmp", "Sc_6.bmp"]
    with pytest.raises(ConfigError):
        split_items(data, 0.2, 0, (0,))
