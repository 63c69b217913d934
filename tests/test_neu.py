"""NEU-CLS and NEU-DET readers: both NEU-CLS layouts, VOC parsing and its errors, the (class, number) join."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import shared_data
from steelscan.data.neu import (
    NeuClsDataset,
    join_cls_det,
    list_neu_cls,
    list_neu_det,
    load_grey_image,
    load_neu_det_image,
    neu_class_name,
    neu_cls_filename,
    neu_det_stem,
    neu_key,
    parse_voc,
)
from steelscan.core.errors import DataError, ImageError, SteelscanError


def _image(path: Path, value: int = 100, shape=(200, 200), colour: bool = False) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = np.full(shape, value, np.uint8)
    img[10:20, 30:50] = 255 - value
    cv2.imwrite(str(path), np.dstack([img] * 3) if colour else img)
    return img


def _voc(path: Path, objects, size=(200, 200), filename="x.jpg") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    objs = "".join(
        f"<object><name>{name}</name><pose>Unspecified</pose><truncated>0</truncated><difficult>0</difficult>"
        f"<bndbox><xmin>{b[0]}</xmin><ymin>{b[1]}</ymin><xmax>{b[2]}</xmax><ymax>{b[3]}</ymax></bndbox></object>"
        for name, b in objects
    )
    path.write_text(
        f"<annotation><folder>cr</folder><filename>{filename}</filename><size><width>{size[1]}</width>"
        f"<height>{size[0]}</height><depth>1</depth></size><segmented>0</segmented>{objs}</annotation>"
    )
    return path


# ------------------------------------------------------------------------------------------ NEU-CLS


def test_flat_layout(tmp_path):
    for name in ("Sc_12.bmp", "Cr_2.bmp", "Cr_10.bmp", "PS_3.bmp", "RS_7.bmp"):
        _image(tmp_path / name)
    (tmp_path / "README.txt").write_text("not data")  # non-images are ignored
    (tmp_path / ".DS_Store").write_bytes(b"\0")
    (tmp_path / "__MACOSX").mkdir()  # zip artefact, not a class folder
    items = list_neu_cls(tmp_path)
    assert [(it.path.name, it.label, it.class_name, it.number) for it in items] == [
        ("Cr_2.bmp", 0, "crazing", 2),
        ("Cr_10.bmp", 0, "crazing", 10),  # numeric order, not string order
        ("PS_3.bmp", 3, "pitted_surface", 3),
        ("RS_7.bmp", 4, "rolled-in_scale", 7),
        ("Sc_12.bmp", 5, "scratches", 12),
    ]
    assert items[2].key == ("pitted_surface", 3)


def test_class_subfolder_layout_by_prefix_or_name(tmp_path):
    _image(tmp_path / "Cr" / "Cr_1.bmp")
    _image(tmp_path / "scratches" / "5.bmp")
    _image(tmp_path / "Rolled-in_Scale" / "RS_9.png")  # case-insensitive
    items = list_neu_cls(tmp_path)
    assert [(it.class_name, it.number) for it in items] == [("crazing", 1), ("rolled-in_scale", 9), ("scratches", 5)]
    assert [it.label for it in items] == [0, 4, 5]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (["Cr_1.bmp", "Xy_3.bmp"], r"Xy_3.bmp: unknown NEU-CLS class prefix 'Xy'; expected one of Cr, In"),
        (["Cr1.bmp"], r"Cr1.bmp: expected a file name like Cr_12.bmp"),
        (["Cr_1.bmp", "Cr_1.png"], r"crazing No. 1 appears twice"),
        (["defects/Cr_1.bmp"], r"defects: unknown NEU-CLS class folder"),
        (["Cr/In_1.bmp"], r"In_1.bmp: file name class 'In' contradicts its folder 'crazing'"),
        (["Cr_1.bmp", "Cr/Cr_2.bmp"], r"found both"),
    ],
)
def test_cls_layout_errors(tmp_path, files, message):
    for name in files:
        _image(tmp_path / name)
    with pytest.raises(SteelscanError, match=message):
        list_neu_cls(tmp_path)


def test_cls_empty_and_missing_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(SteelscanError, match="expected NEU-CLS images .* found none"):
        list_neu_cls(tmp_path)
    with pytest.raises(DataError, match="NEU-CLS folder not found"):
        list_neu_cls(tmp_path / "nope")


def test_cls_dataset(tmp_path):
    img = _image(tmp_path / "In_4.bmp", value=70)
    ds = NeuClsDataset(tmp_path)
    item = ds[0]
    assert len(ds) == 1 and item["label"] == 1 and item["class_name"] == "inclusion" and item["number"] == 4
    assert item["image"].dtype == np.uint8 and item["image"].shape == (200, 200)
    np.testing.assert_array_equal(item["image"], img)


# ------------------------------------------------------------------------------------------ image loader


def test_loader_reads_colour_as_grey(tmp_path):
    img = _image(tmp_path / "c.png", value=90, colour=True)
    out = load_grey_image(tmp_path / "c.png")
    assert out.shape == (200, 200) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, img)


def test_loader_errors(tmp_path):
    _image(tmp_path / "small.bmp", shape=(100, 200))
    with pytest.raises(SteelscanError, match=r"small.bmp: expected a 200x200 \(HxW\) image, got 100x200"):
        load_grey_image(tmp_path / "small.bmp")
    assert load_grey_image(tmp_path / "small.bmp", shape=None).shape == (100, 200)
    (tmp_path / "text.bmp").write_text("hello")
    with pytest.raises(ImageError, match="text.bmp: expected PNG, JPEG, BMP or TIFF content"):
        load_grey_image(tmp_path / "text.bmp")
    (tmp_path / "empty.bmp").write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty.bmp is empty \(0 bytes\)"):
        load_grey_image(tmp_path / "empty.bmp")
    with pytest.raises(ImageError, match="image not found: .*gone.bmp"):
        load_grey_image(tmp_path / "gone.bmp")


@pytest.mark.parametrize("suffix", [".bmp", ".jpg"])
def test_loader_rejects_truncated_files(tmp_path, suffix):
    path = tmp_path / f"t{suffix}"
    rng = np.random.default_rng(0)
    cv2.imwrite(str(path), rng.integers(0, 256, (200, 200), dtype=np.uint8))
    assert load_grey_image(path).shape == (200, 200)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError, match=f"t{suffix} is (a )?truncated"):
        load_grey_image(path)


# ------------------------------------------------------------------------------------------ NEU-DET


def _det_folder(root: Path) -> Path:
    _image(root / "IMAGES" / "crazing_1.jpg", colour=True)
    _voc(root / "ANNOTATIONS" / "crazing_1.xml", [("crazing", (2, 2, 193, 194))])
    _image(root / "IMAGES" / "scratches_12.jpg", colour=True)
    _voc(root / "ANNOTATIONS" / "scratches_12.xml",
         [("scratches", (1, 1, 200, 200)), ("inclusion", (10, 20, 30, 40))], filename="scratches_12")
    _image(root / "IMAGES" / "rolled-in_scale_3.jpg", colour=True)
    _voc(root / "ANNOTATIONS" / "rolled-in_scale_3.xml", [("rolled-in_scale", (5, 6, 7, 8))])
    return root


def test_det_items_boxes_labels_and_convention(tmp_path):
    items = list_neu_det(_det_folder(tmp_path))
    assert [(it.class_name, it.label, it.number) for it in items] == [
        ("crazing", 0, 1), ("rolled-in_scale", 4, 3), ("scratches", 5, 12)
    ]
    cr, rs, sc = items
    assert cr.boxes.dtype == np.float32 and cr.labels.dtype == np.int64 and cr.size == (200, 200)
    # VOC 1-based inclusive (2, 2, 193, 194) -> 0-based pixel edges, x2/y2 exclusive
    np.testing.assert_array_equal(cr.boxes, [[1, 1, 193, 194]])
    np.testing.assert_array_equal(sc.boxes, [[0, 0, 200, 200], [9, 19, 30, 40]])
    np.testing.assert_array_equal(sc.labels, [5, 1])  # a box of another class than the file name
    assert rs.boxes[0, 2] - rs.boxes[0, 0] == 3  # xmin 5 .. xmax 7 inclusive = 3 pixels
    assert cr.image_path.name == "crazing_1.jpg" and cr.annotation_path.name == "crazing_1.xml"
    image = load_neu_det_image(cr)
    assert image.shape == (200, 200) and image.dtype == np.uint8


@pytest.mark.parametrize(
    ("objects", "message"),
    [
        ([("crazing", (1, 1, 201, 50))], "outside the 200x200 image"),
        ([("crazing", (0, 1, 20, 50))], "outside the 200x200 image"),
        ([("crazing", (1, 1, 20, 201))], "outside the 200x200 image"),
        ([("crazing", (30, 1, 20, 50))], "is empty or outside"),
        ([("crazing", (20, 1, 20, 50))], "is empty or outside"),
        ([("crazing", (1, 9, 20, 5))], "is empty or outside"),
        ([("crazing", (1, 1, 20, 20)), ("rust", (1, 1, 5, 5))],
         "object 1: unknown class 'rust'; expected one of crazing"),
        ([("crazing", ("a", 1, 20, 20))], r"expected a number in <xmin>, got 'a'"),
        ([("crazing", ("1.5", 1, 20, 20))], "expected an integer pixel"),
    ],
)
def test_voc_errors_name_the_file(tmp_path, objects, message):
    path = _voc(tmp_path / "bad_1.xml", objects)
    with pytest.raises(SteelscanError, match=message) as info:
        parse_voc(path)
    assert "bad_1.xml" in str(info.value)


def test_voc_float_coordinates_and_no_objects(tmp_path):
    boxes, labels, size = parse_voc(_voc(tmp_path / "a.xml", [("patches", ("3.0", 4, 10, 12))], size=(100, 150)))
    np.testing.assert_array_equal(boxes, [[2, 3, 10, 12]])
    assert size == (100, 150)
    boxes, labels, _ = parse_voc(_voc(tmp_path / "b.xml", []))
    assert boxes.shape == (0, 4) and labels.shape == (0,)


def test_voc_unparsable_missing_bndbox_dtd(tmp_path):
    (tmp_path / "broken.xml").write_text("<annotation><size>")
    with pytest.raises(SteelscanError, match="broken.xml: XML does not parse"):
        parse_voc(tmp_path / "broken.xml")
    (tmp_path / "nobox.xml").write_text(
        "<annotation><size><width>9</width><height>9</height></size><object><name>crazing</name></object></annotation>"
    )
    with pytest.raises(SteelscanError, match="nobox.xml: object 0 \\(crazing\\) has no <bndbox>"):
        parse_voc(tmp_path / "nobox.xml")
    (tmp_path / "other.xml").write_text("<html><size><width>9</width><height>9</height></size></html>")
    with pytest.raises(SteelscanError, match="other.xml: expected a VOC <annotation>"):
        parse_voc(tmp_path / "other.xml")
    (tmp_path / "xxe.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
        "<annotation><size><width>9</width><height>9</height></size><object><name>&e;</name></object></annotation>"
    )
    with pytest.raises(SteelscanError, match="xxe.xml: XML with a DTD"):
        parse_voc(tmp_path / "xxe.xml")


def test_det_missing_image_orphan_image_and_bad_layout(tmp_path):
    root = _det_folder(tmp_path / "a")
    (root / "IMAGES" / "crazing_1.jpg").unlink()
    with pytest.raises(DataError, match=r"crazing_1.xml: its image .*IMAGES/crazing_1.jpg is missing"):
        list_neu_det(root)
    root = _det_folder(tmp_path / "b")
    _image(root / "IMAGES" / "patches_4.jpg")
    with pytest.raises(SteelscanError, match="1 image.* no annotation .* patches_4.jpg"):
        list_neu_det(root)
    root = _det_folder(tmp_path / "c")
    _voc(root / "ANNOTATIONS" / "rust_1.xml", [])
    with pytest.raises(SteelscanError, match="rust_1.xml: unknown NEU class 'rust'"):
        list_neu_det(root)
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "train.csv").write_text("x")
    with pytest.raises(SteelscanError, match="expected NEU-DET folders IMAGES/ and ANNOTATIONS/, found train.csv"):
        list_neu_det(tmp_path / "d")


def test_det_image_size_must_match_annotation(tmp_path):
    root = _det_folder(tmp_path)
    _image(root / "IMAGES" / "crazing_1.jpg", shape=(100, 100))
    item = list_neu_det(root)[0]
    with pytest.raises(SteelscanError, match="crazing_1.jpg: expected a 200x200"):
        load_neu_det_image(item)


# ------------------------------------------------------------------------------------------ joining


def test_name_helpers():
    assert neu_key("Cr", 7) == neu_key("crazing", 7) == ("crazing", 7)
    assert neu_cls_filename("crazing", 7) == "Cr_7.bmp"
    assert neu_cls_filename("ps", 3) == "PS_3.bmp"
    assert neu_det_stem("RS", 9) == "rolled-in_scale_9"
    assert neu_class_name("Pitted_Surface") == "pitted_surface"
    with pytest.raises(SteelscanError, match="unknown NEU class 'Zz'; expected a prefix Cr, In, Pa, PS, RS, Sc"):
        neu_class_name("Zz")


def test_join_cls_det(tmp_path):
    for name in ("Cr_1.bmp", "Sc_12.bmp", "Pa_5.bmp"):
        _image(tmp_path / "cls" / name)
    det = list_neu_det(_det_folder(tmp_path / "det"))
    pairs = join_cls_det(list_neu_cls(tmp_path / "cls"), det)
    assert [(c.path.name, d.image_path.name) for c, d in pairs] == [
        ("Cr_1.bmp", "crazing_1.jpg"), ("Sc_12.bmp", "scratches_12.jpg")
    ]


# ------------------------------------------------------------------------------------------ real data


def test_real_neu_cls():
    items = list_neu_cls(shared_data("neu-cls"))
    assert len(items) == 1440
    assert [sum(it.label == i for it in items) for i in range(6)] == [240] * 6
    assert not any(it.number % 5 == 0 for it in items)  # the held-out fifth is not in this copy
    assert load_grey_image(items[0].path).shape == (200, 200)


def test_real_neu_det_and_join():
    items = list_neu_det(shared_data("neu-det"))
    assert len(items) == 1440
    assert sum(len(it.labels) for it in items) == 3317
    assert all(it.size == (200, 200) for it in items)
    assert all(((it.boxes[:, :2] >= 0) & (it.boxes[:, 2:] <= 200)).all() for it in items)
    # This copy (1440 of NEU's 1800 images) has 93 images with boxes of another class than the file name.
    assert sum(bool((it.labels != it.label).any()) for it in items) == 93
    pairs = join_cls_det(list_neu_cls(shared_data("neu-cls")), items)
    assert len(pairs) == 1440


def test_real_cr7_and_crazing7_are_the_same_photograph():
    cls_root, det_root = shared_data("neu-cls"), shared_data("neu-det")
    a = load_grey_image(cls_root / neu_cls_filename("crazing", 7)).astype(np.int16)
    b = load_grey_image(det_root / "IMAGES" / f"{neu_det_stem('Cr', 7)}.jpg").astype(np.int16)
    other = load_grey_image(det_root / "IMAGES" / "crazing_8.jpg").astype(np.int16)
    same, different = np.abs(a - b).mean(), np.abs(a - other).mean()
    assert same < 3 and different > 3 * same  # JPEG noise only, versus another photograph
