"""Severstal RLE: Kaggle's 1-indexed, column-major convention, exact round trips, and clear errors."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from tests.conftest import shared_data
from steelscan.data.rle import rle_decode, rle_encode


def test_column_major_one_indexed_4x3():
    # 4 rows x 3 columns; pixel k (1-indexed) walks down column 0 first: (0,0)=1 (1,0)=2 ... (0,1)=5.
    mask = rle_decode("2 3 9 2", shape=(4, 3))
    expected = np.array(
        [
            [0, 0, 1],
            [1, 0, 1],
            [1, 0, 0],
            [1, 0, 0],
        ],
        dtype=np.uint8,
    )
    assert mask.dtype == np.uint8
    assert mask.shape == (4, 3)
    np.testing.assert_array_equal(mask, expected)
    assert rle_encode(mask) == "2 3 9 2"


def test_run_crossing_a_column_and_the_last_pixel():
    # A run continues from the bottom of one column to the top of the next; 12 is the last pixel.
    mask = rle_decode("4 2 12 1", shape=(4, 3))
    assert mask[3, 0] == 1 and mask[0, 1] == 1 and mask[2, 2] == 0 and mask[3, 2] == 1
    assert int(mask.sum()) == 3
    assert rle_encode(mask) == "4 2 12 1"


def test_first_pixel_and_full_image():
    assert rle_decode("1 1", shape=(4, 3))[0, 0] == 1
    full = rle_decode("1 12", shape=(4, 3))
    assert full.all()
    assert rle_encode(full) == "1 12"


def test_default_shape_is_severstal():
    mask = rle_decode("257 1")  # 256 rows: pixel 257 is the top of the second column
    assert mask.shape == (256, 1600)
    assert mask[0, 1] == 1 and int(mask.sum()) == 1


def test_encode_treats_nonzero_as_defect():
    mask = np.zeros((2, 2), dtype=np.float32)
    mask[1, 1] = 0.5
    assert rle_encode(mask) == "4 1"


@pytest.mark.parametrize("empty", ["", "   ", None, float("nan")])
def test_empty_string_or_nan_decodes_to_empty_mask(empty):
    mask = rle_decode(empty, shape=(4, 3))
    assert mask.shape == (4, 3) and mask.dtype == np.uint8
    assert not mask.any()


def test_encode_empty_mask_is_empty_string():
    assert rle_encode(np.zeros((256, 1600), dtype=np.uint8)) == ""


def test_encode_rejects_non_2d():
    with pytest.raises(ValueError, match="2-D"):
        rle_encode(np.zeros((1, 4, 3)))


@pytest.mark.parametrize(
    ("rle", "message"),
    [
        ("1 2 5", "even number"),
        ("1 x", "integers"),
        ("1 2.5", "integers"),
        ("11 3", "past the end"),
        ("13 1", "past the end"),
        ("5 1 1 1", "unsorted"),
        ("1 3 3 1", "overlapping"),
        ("0 2", ">= 1"),
        ("-1 2", ">= 1"),
        ("1 0", "lengths must be >= 1"),
        ("1 -2", "lengths must be >= 1"),
    ],
)
def test_bad_rle_raises_value_error_with_message(rle, message):
    with pytest.raises(ValueError, match=message):
        rle_decode(rle, shape=(4, 3))


def test_non_string_raises():
    with pytest.raises(ValueError, match="string"):
        rle_decode(12, shape=(4, 3))


def test_touching_runs_are_accepted_and_reencode_merged():
    # Adjacent (touching, not overlapping) runs are valid input; the encoder writes the merged run.
    mask = rle_decode("1 2 3 2", shape=(4, 3))
    assert int(mask.sum()) == 4
    assert rle_encode(mask) == "1 4"


def test_random_masks_round_trip():
    rng = np.random.default_rng(0)
    for _ in range(20):
        mask = (rng.random((17, 23)) < 0.3).astype(np.uint8)
        np.testing.assert_array_equal(rle_decode(rle_encode(mask), shape=mask.shape), mask)


def test_all_real_partial_rows_round_trip_exactly():
    path = shared_data("severstal-partial") / "train.csv"
    with path.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2845
    mismatches = []
    for row in rows:
        rle = row["EncodedPixels"]
        mask = rle_decode(rle)
        assert mask.any(), f"{row['ImageId']} class {row['ClassId']} decodes to an empty mask"
        if rle_encode(mask) != rle:
            mismatches.append(row["ImageId"])
    assert not mismatches, f"{len(mismatches)} rows do not re-encode exactly, first {mismatches[:3]}"


def test_real_pixel_count_matches_sum_of_run_lengths():
    path = shared_data("severstal-sample") / "train.csv"
    with path.open(newline="") as fh:
        for row in csv.DictReader(fh):
            lengths = [int(v) for v in row["EncodedPixels"].split()[1::2]]
            assert int(rle_decode(row["EncodedPixels"]).sum()) == sum(lengths)
