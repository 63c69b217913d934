"""Severstal reader: both train.csv formats, the dataset (images, masks-only), tiles and boxes."""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import shared_data
from steelscan.data.rle import rle_decode, rle_encode
from steelscan.data.severstal import (
    SeverstalDataset,
    mask_to_boxes,
    read_image_ids,
    read_train_csv,
    split_tiles,
    tile_offsets,
)
from steelscan.core.errors import DataError, ImageError, SteelscanError

SHAPE = (8, 12)  # small (H, W) for hand-made masks; the reader takes any shape


def _mask(*pixels: tuple[int, int]) -> np.ndarray:
    m = np.zeros(SHAPE, dtype=np.uint8)
    for y, x in pixels:
        m[y, x] = 1
    return m


A1 = _mask((0, 0), (1, 0), (2, 0))  # image a.png class 1
A3 = _mask((5, 7), (5, 8))  # image a.png class 3
B4 = _mask((7, 11))  # image b.png class 4, the last pixel


def _write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _new_csv(path: Path) -> Path:
    return _write_csv(
        path,
        "ImageId,ClassId,EncodedPixels\n"
        f"a.png,1,{rle_encode(A1)}\n"
        f"a.png,3,{rle_encode(A3)}\n"
        f"b.png,4,{rle_encode(B4)}\n",
    )


def _old_csv(path: Path) -> Path:
    rows = ["ImageId_ClassId,EncodedPixels"]
    for image_id, masks in (("a.png", {1: A1, 3: A3}), ("b.png", {4: B4}), ("c.png", {})):
        for k in range(1, 5):
            rows.append(f"{image_id}_{k},{rle_encode(masks[k]) if k in masks else ''}")
    return _write_csv(path, "\n".join(rows) + "\n")


def _image_folder(root: Path, ids=("a.png", "b.png", "c.png")) -> dict[str, np.ndarray]:
    (root / "train_images").mkdir(parents=True, exist_ok=True)
    images = {}
    rng = np.random.default_rng(1)
    for image_id in ids:
        images[image_id] = rng.integers(0, 256, SHAPE, dtype=np.uint8)
        cv2.imwrite(str(root / "train_images" / image_id), images[image_id])
    return images


# ------------------------------------------------------------------------------------------ train.csv


def test_new_format(tmp_path):
    labels = read_train_csv(_new_csv(tmp_path / "train.csv"))
    assert labels.format == "new"
    assert labels.image_ids == ["a.png", "b.png"]
    rows = [(r.image_id, r.class_id, r.line) for r in labels.rows]
    assert rows == [("a.png", 1, 2), ("a.png", 3, 3), ("b.png", 4, 4)]
    assert [r.class_id for r in labels.rows_for("a.png")] == [1, 3]
    assert labels.rows_for("c.png") == []


def test_old_format_lists_defect_free_images_and_gives_the_same_masks(tmp_path):
    old = SeverstalDataset(_old_csv(tmp_path / "old.csv"), shape=SHAPE)
    assert old.labels.format == "old"
    assert old.image_ids == ["a.png", "b.png", "c.png"]  # c.png: four empty rows = defect-free
    assert len(old.labels.rows) == 3
    new = SeverstalDataset(_new_csv(tmp_path / "new.csv"), image_ids=["a.png", "b.png", "c.png"], shape=SHAPE)
    for i in range(3):
        np.testing.assert_array_equal(old[i]["mask"], new[i]["mask"])
    assert not old[2]["mask"].any()


def test_old_format_image_id_may_contain_underscores(tmp_path):
    path = _write_csv(tmp_path / "t.csv", "ImageId_ClassId,EncodedPixels\nx_y.jpg_2,1 3\n")
    labels = read_train_csv(path)
    assert labels.rows[0].image_id == "x_y.jpg" and labels.rows[0].class_id == 2


def test_bom_and_blank_lines_are_tolerated(tmp_path):
    path = tmp_path / "t.csv"
    path.write_bytes(b"\xef\xbb\xbfImageId,ClassId,EncodedPixels\r\n\r\na.jpg,1,1 2\r\n")
    assert read_train_csv(path).rows[0].rle == "1 2"


@pytest.mark.parametrize("text", ["ImageId,EncodedPixels\n", "id,class,rle\nx,1,1 1\n", ""])
def test_unknown_header_names_file_and_header(tmp_path, text):
    path = _write_csv(tmp_path / "weird.csv", text)
    with pytest.raises(SteelscanError, match="weird.csv") as info:
        read_train_csv(path)
    assert "header" in str(info.value) and "ImageId,ClassId,EncodedPixels" in str(info.value)
    if text:
        assert repr(text.splitlines()[0]) in str(info.value)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("a.jpg,5,1 1", "ClassId must be an integer 1..4"),
        ("a.jpg,x,1 1", "ClassId must be an integer 1..4"),
        ("a.jpg,1", "expected 3 fields"),
        ("a.jpg,1,1 1,extra", "expected 3 fields"),
        (",1,1 1", "empty ImageId"),
    ],
)
def test_bad_rows_name_the_line(tmp_path, row, message):
    path = _write_csv(tmp_path / "t.csv", f"ImageId,ClassId,EncodedPixels\nok.jpg,1,1 1\n{row}\n")
    with pytest.raises(SteelscanError, match=message) as info:
        read_train_csv(path)
    assert "line 3" in str(info.value) and "t.csv" in str(info.value)


def test_duplicate_image_class_row_is_an_error(tmp_path):
    path = _write_csv(tmp_path / "t.csv", "ImageId,ClassId,EncodedPixels\na.jpg,1,1 1\na.jpg,1,5 1\n")
    with pytest.raises(SteelscanError, match="duplicate row .* line 2"):
        read_train_csv(path)


def test_binary_csv_is_a_clear_error(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(b"ImageId,ClassId,EncodedPixels\n\xff\xfe\x00\x01")
    with pytest.raises(SteelscanError, match="train.csv: not a readable CSV"):
        read_train_csv(path)


def test_missing_csv(tmp_path):
    with pytest.raises(DataError, match="nope.csv"):
        read_train_csv(tmp_path / "nope.csv")


def test_image_ids_txt(tmp_path):
    path = _write_csv(tmp_path / "ids.txt", "a.jpg\n\nb.jpg\n")
    assert read_image_ids(path) == ["a.jpg", "b.jpg"]
    with pytest.raises(SteelscanError, match="duplicate image id 'a.jpg'"):
        read_image_ids(_write_csv(tmp_path / "dup.txt", "a.jpg\nb.jpg\na.jpg\n"))
    with pytest.raises(SteelscanError, match="holds none"):
        read_image_ids(_write_csv(tmp_path / "empty.txt", "\n"))


# ------------------------------------------------------------------------------------------ dataset


def test_dataset_with_images_includes_defect_free(tmp_path):
    _new_csv(tmp_path / "train.csv")
    images = _image_folder(tmp_path)
    ds = SeverstalDataset.from_root(tmp_path, shape=SHAPE)
    assert not ds.masks_only and len(ds) == 3
    assert ds.image_ids == ["a.png", "b.png", "c.png"]  # c.png has no csv row: defect-free, still an item
    item = ds[0]
    assert set(item) == {"image_id", "image", "mask"}
    assert item["image"].dtype == np.uint8 and item["image"].shape == SHAPE
    np.testing.assert_array_equal(item["image"], images["a.png"])  # PNG: lossless
    assert item["mask"].dtype == np.uint8 and item["mask"].shape == (4, *SHAPE)
    np.testing.assert_array_equal(item["mask"][0], A1)  # ClassId 1 -> channel 0
    np.testing.assert_array_equal(item["mask"][2], A3)
    assert not item["mask"][[1, 3]].any()
    assert set(np.unique(item["mask"])) <= {0, 1}
    np.testing.assert_array_equal(ds[1]["mask"][3], B4)
    assert not ds[2]["mask"].any()
    np.testing.assert_array_equal(ds.class_presence(), [[1, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0]])


def test_masks_only_with_image_ids_txt(tmp_path):
    _new_csv(tmp_path / "train.csv")
    (tmp_path / "image_ids.txt").write_text("a.png\nb.png\nc.png\nd.png\n")
    ds = SeverstalDataset.from_root(tmp_path, shape=SHAPE)
    assert ds.masks_only and len(ds) == 4
    assert set(ds[3]) == {"image_id", "mask"} and not ds[3]["mask"].any()


def test_image_ids_txt_wins_over_the_image_folder(tmp_path):
    _new_csv(tmp_path / "train.csv")
    _image_folder(tmp_path)
    (tmp_path / "image_ids.txt").write_text("a.png\nb.png\n")
    ds = SeverstalDataset.from_root(tmp_path, shape=SHAPE)
    assert ds.image_ids == ["a.png", "b.png"] and "image" in ds[1]


def test_csv_only_warns_that_defect_free_images_are_unknown(tmp_path, caplog):
    _new_csv(tmp_path / "train.csv")
    with caplog.at_level(logging.WARNING):
        ds = SeverstalDataset.from_root(tmp_path, shape=SHAPE)
    assert ds.image_ids == ["a.png", "b.png"]
    assert "defect-free images are unknown" in caplog.text


def test_labels_outside_the_id_list_are_an_error(tmp_path):
    _new_csv(tmp_path / "train.csv")
    (tmp_path / "image_ids.txt").write_text("a.png\n")
    with pytest.raises(SteelscanError, match="labels for 1 image.*b.png"):
        SeverstalDataset.from_root(tmp_path, shape=SHAPE)


def test_from_root_without_train_csv_says_what_it_found(tmp_path):
    (tmp_path / "IMAGES").mkdir()
    with pytest.raises(SteelscanError, match=r"expected a Severstal folder with train.csv.*IMAGES/"):
        SeverstalDataset.from_root(tmp_path)
    with pytest.raises(DataError, match="missing"):
        SeverstalDataset.from_root(tmp_path / "missing")


def test_image_named_in_csv_but_missing_from_folder(tmp_path):
    _new_csv(tmp_path / "train.csv")
    _image_folder(tmp_path, ids=("a.png", "c.png"))
    with pytest.raises(DataError, match=r"train_images/b.png"):
        SeverstalDataset.from_root(tmp_path, shape=SHAPE)


def test_unreadable_deleted_or_wrong_size_image_names_the_file(tmp_path):
    _new_csv(tmp_path / "train.csv")
    _image_folder(tmp_path)
    ds = SeverstalDataset.from_root(tmp_path, shape=SHAPE)
    (tmp_path / "train_images" / "a.png").write_bytes(b"not an image")
    with pytest.raises(ImageError, match=r"a.png: expected PNG, JPEG, BMP or TIFF content"):
        ds[0]
    (tmp_path / "train_images" / "b.png").unlink()
    with pytest.raises(ImageError, match=r"image not found: .*b.png"):
        ds[1]
    cv2.imwrite(str(tmp_path / "train_images" / "c.png"), np.zeros((8, 13), np.uint8))
    with pytest.raises(SteelscanError, match=r"c.png: expected a 8x12 \(HxW\) image, got 8x13"):
        ds[2]


@pytest.mark.parametrize("rle", ["1 2 3", "95 5", "5 1 1 1"])
def test_bad_rle_names_file_line_image_and_class(tmp_path, rle):
    path = _write_csv(tmp_path / "train.csv", f"ImageId,ClassId,EncodedPixels\nok.jpg,1,1 1\nbad.jpg,2,{rle}\n")
    ds = SeverstalDataset(path, shape=SHAPE)
    ds[0]
    with pytest.raises(SteelscanError, match=r"train.csv: line 3 \(image bad.jpg, class 2\): bad RLE"):
        ds[1]


def test_real_sample_layout(tmp_path):
    root = shared_data("severstal-sample")
    ds = SeverstalDataset.from_root(root)
    assert len(ds) == 30 and ds.id_source == "folder"
    item = ds[0]
    assert item["image"].shape == (256, 1600) and item["image"].dtype == np.uint8
    for row in ds.labels.rows_for(item["image_id"]):
        assert rle_encode(item["mask"][row.class_id - 1]) == row.rle
    np.testing.assert_array_equal(ds.class_presence().sum(0), [0, 1, 20, 19])


def test_real_partial_masks_only():
    ds = SeverstalDataset.from_root(shared_data("severstal-partial"))
    assert ds.masks_only and len(ds) == 5028
    presence = ds.class_presence()
    assert int((~presence.any(1)).sum()) == 2361
    assert "image" not in ds[0]


# ------------------------------------------------------------------------------------------ tiles


def test_split_tiles_image_and_mask():
    image = np.arange(256 * 1600, dtype=np.int64).reshape(256, 1600)
    tiles, offsets = split_tiles(image)
    assert offsets == [0, 400, 800, 1200]
    assert [t.shape for t in tiles] == [(256, 400)] * 4
    np.testing.assert_array_equal(np.concatenate(tiles, axis=1), image)
    np.testing.assert_array_equal(tiles[2], image[:, 800:1200])
    mask = np.zeros((4, 256, 1600), np.uint8)
    mask[3, 10, 1234] = 1
    mtiles, moffsets = split_tiles(mask)
    assert [t.shape for t in mtiles] == [(4, 256, 400)] * 4
    _, y, x = np.argwhere(mtiles[3])[0]
    assert (y, x + moffsets[3]) == (10, 1234)  # tile coordinates map back with the offset
    assert np.stack(mtiles).shape == (4, 4, 256, 400)


def test_split_tiles_torch_and_other_counts():
    torch = pytest.importorskip("torch")
    tiles, offsets = split_tiles(torch.zeros(2, 6, 10), n_tiles=5)
    assert offsets == [0, 2, 4, 6, 8] and tuple(tiles[0].shape) == (2, 6, 2)


@pytest.mark.parametrize(
    ("shape", "n_tiles", "message"),
    [((256, 1601), 4, "not divisible"), ((256, 1600), 0, "positive integer"), ((1600,), 4, r"\[H, W\]"),
     ((1, 1, 256, 1600), 4, r"\[C, H, W\]")],
)
def test_split_tiles_errors(shape, n_tiles, message):
    with pytest.raises(ValueError, match=message):
        split_tiles(np.zeros(shape), n_tiles=n_tiles)


def test_tile_offsets():
    assert tile_offsets(1600) == [0, 400, 800, 1200]
    with pytest.raises(ValueError, match="1600 is not divisible into 3"):
        tile_offsets(1600, 3)


# ------------------------------------------------------------------------------------------ boxes


def test_mask_to_boxes_exclusive_xyxy_per_component_and_class():
    mask = np.zeros((4, 10, 20), np.uint8)
    mask[0, 2:5, 3:7] = 1  # 3 rows x 4 columns at x=3, y=2
    mask[0, 8, 15] = 1  # one pixel
    mask[2, 0:2, 0:2] = 1
    mask[2, 2, 2] = 1  # touches diagonally: 8-connected, one component
    boxes, labels = mask_to_boxes(mask)
    assert boxes.dtype == np.float32 and labels.dtype == np.int64
    np.testing.assert_array_equal(boxes, [[3, 2, 7, 5], [15, 8, 16, 9], [0, 0, 3, 3]])
    np.testing.assert_array_equal(labels, [0, 0, 2])
    # x2 - x1 is the width in pixels
    assert boxes[0, 2] - boxes[0, 0] == 4 and boxes[0, 3] - boxes[0, 1] == 3


def test_mask_to_boxes_min_area_and_empty():
    mask = np.zeros((2, 10, 20), np.uint8)
    mask[1, 2:5, 3:7] = 1  # area 12
    mask[1, 8, 15] = 1  # area 1
    boxes, labels = mask_to_boxes(mask, min_area=12)
    np.testing.assert_array_equal(boxes, [[3, 2, 7, 5]])
    np.testing.assert_array_equal(labels, [1])
    boxes, labels = mask_to_boxes(np.zeros((4, 5, 5), np.uint8))
    assert boxes.shape == (0, 4) and boxes.dtype == np.float32 and labels.shape == (0,) and labels.dtype == np.int64


def test_mask_to_boxes_2d_and_errors():
    boxes, labels = mask_to_boxes(_mask((1, 1)))
    np.testing.assert_array_equal(boxes, [[1, 1, 2, 2]])
    np.testing.assert_array_equal(labels, [0])
    with pytest.raises(ValueError, match="got shape"):
        mask_to_boxes(np.zeros((1, 1, 4, 4)))
    with pytest.raises(ValueError, match="min_area"):
        mask_to_boxes(np.zeros((4, 4)), min_area=-1)


def test_mask_to_boxes_round_trip_with_rle():
    m = rle_decode("3 2 20 4", shape=(8, 4))  # column 0 rows 2-3; column 2 rows 3-6
    boxes, _ = mask_to_boxes(m)
    np.testing.assert_array_equal(boxes, [[0, 2, 1, 4], [2, 3, 3, 7]])
