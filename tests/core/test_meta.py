"""ModelMeta.baseline_warning: a model no better than predicting no defects is called out, from whichever
scores its metadata holds; nothing known, nothing said."""

from __future__ import annotations

import math

import pytest

from steelscan.core.meta import ModelMeta


def meta(val_metrics: dict | None = None, tuned: dict | None = None) -> ModelMeta:
    post = {"threshold": [0.5, 0.5], "tuned": tuned} if tuned is not None else None
    return ModelMeta(task="segmentation", model="unet_x", class_names=("1", "2"), input_size=(64, 64),
                     val_metrics=val_metrics or {}, postprocess=post)


def test_nothing_known_nothing_said():
    assert meta().baseline_warning() is None
    assert meta({"map50": 0.7}).baseline_warning() is None  # a detector's metrics: no all-empty baseline
    assert meta({"dice_kaggle": 0.5}).baseline_warning() is None  # a score without its baseline
    for junk in (None, True, math.nan, "0.5"):
        assert meta({"dice_kaggle": junk, "all_empty_dice": 0.9}).baseline_warning() is None, junk
    assert ModelMeta(task="segmentation", model="m", class_names=("1",), input_size=(8, 8),
                     postprocess={"tuned": [1, 2]}).baseline_warning() is None


@pytest.mark.parametrize("key", ["dice_kaggle", "kaggle_dice"])
def test_validation_scores_at_or_below_the_baseline_warn(key):
    warning = meta({key: 0.84, "all_empty_dice": 0.86}).baseline_warning()
    assert warning == ("model unet_x scored Kaggle Dice 0.8400 on its validation data, no better than predicting "
                       "no defects at all (0.8600): do not trust its findings")
    assert meta({key: 0.86, "all_empty_dice": 0.86}).baseline_warning() is not None  # equal is no better
    assert meta({key: 0.87, "all_empty_dice": 0.86}).baseline_warning() is None


def test_tuning_report_when_no_validation_scores():
    tuned = {"dice_chosen": 0.80, "dice_cv": 0.95, "all_empty_dice": 0.85, "split": "val"}
    warning = meta(tuned=tuned).baseline_warning()
    assert warning is not None and "0.8000 on its tuning data (val split)" in warning and "(0.8500)" in warning
    assert "\n" not in warning
    # dice_cv when the report has no dice_chosen
    assert meta(tuned={"dice_cv": 0.95, "all_empty_dice": 0.85}).baseline_warning() is None
    assert meta(tuned={"dice_cv": 0.70, "all_empty_dice": 0.85}).baseline_warning() is not None
    # validation scores, when present, decide over the tuning report
    assert meta({"dice_kaggle": 0.9, "all_empty_dice": 0.85}, tuned).baseline_warning() is None


def test_shipped_severstal_model_beats_its_baseline():
    from steelscan.engine.runs import read_checkpoint, resolve_model

    m = read_checkpoint(resolve_model("severstal"), mmap=True)[1]
    tuned = m.postprocess["tuned"]
    assert tuned["dice_chosen"] > tuned["all_empty_dice"] and m.baseline_warning() is None
    worse = m.model_copy(update={"postprocess": {**m.postprocess, "tuned": {**tuned, "dice_chosen": 0.5}}})
    assert "no better than predicting no defects" in worse.baseline_warning()
