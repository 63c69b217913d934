"""Severstal segmentation: crops, losses from the config, gates, post-processing, the tuner, the submission CSV,
and a tiny end-to-end train / tune / evaluate / segment on synthetic strips."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from steelscan.cli import main
from steelscan.config import config_from_dict
from steelscan.core.errors import SteelscanError
from steelscan.tasks.segmentation.data import CropDataset, SegSample, crop_window
from steelscan.losses import BCEDiceLoss, BCELoss, FocalLoss, WeightedBCELoss
from steelscan.postprocess import PostProcess, apply_gate, binarize, ensemble_mean, predict_tta, remove_small_components
from steelscan.tune import tune_postprocess
from tests.conftest import REPO

SEG = {"task": "segmentation", "data": {"format": "severstal"}, "model": {"name": "unet_efficientnet_lite0"},
       "loss": {"name": "bce"}}


def _sample(i: int, defect: bool) -> SegSample:
    image = np.full((64, 256), 100, np.uint8)
    mask = np.zeros((4, 64, 256), np.uint8)
    if defect:
        mask[2, 20:30, 200:210] = 1  # one small defect at the right end
    return SegSample(f"img{i}.jpg", image, mask, "test")


@pytest.mark.parametrize("share", [0.0, 0.3, 0.7, 1.0])
def test_crops_contain_defects_at_the_configured_share(share):
    samples = [_sample(i, defect=i % 4 == 0) for i in range(8)]  # 2 of 8 images have a defect
    ds = CropDataset(samples, (32, 64), share, crops_per_image=50, mean=0.5, std=0.5, seed=3)
    with_defect = np.array([ds[i][1].amax().item() > 0 for i in range(len(ds))])
    wanted = np.array([ds.window(i)[3] for i in range(len(ds))])
    assert with_defect[wanted].all()  # a defect crop always holds its defect
    assert not with_defect[~wanted].any()  # the clean crops found defect-free windows
    assert abs(with_defect.mean() - share) < 0.06, with_defect.mean()
    x, y = ds[0]
    assert x.shape == (1, 32, 64) and y.shape == (4, 32, 64) and y.dtype == torch.float32


def test_crops_are_repeatable_per_epoch_and_differ_across_epochs():
    ds = CropDataset([_sample(0, True), _sample(1, False)], (32, 64), 0.5, 20, 0.5, 0.5, seed=0)
    first = [ds.window(i) for i in range(len(ds))]
    assert first == [ds.window(i) for i in range(len(ds))]
    ds.set_epoch(1)
    assert first != [ds.window(i) for i in range(len(ds))]


def test_crop_window_and_too_large_crops():
    mask = np.zeros((4, 64, 256), np.uint8)
    mask[0, 63, 255] = 1  # the corner pixel: the window must clamp inside the image and still hold it
    rng = np.random.default_rng(0)
    for _ in range(20):
        y0, x0 = crop_window(mask, (32, 64), rng, want_defect=True)
        assert 0 <= y0 <= 32 and 0 <= x0 <= 192 and mask[:, y0 : y0 + 32, x0 : x0 + 64].any()
    with pytest.raises(SteelscanError, match="larger than image"):
        CropDataset([_sample(0, True)], (128, 64), 0.5, 1, 0.5, 0.5)


def test_split_is_by_id_checksum():
    import zlib

    from steelscan.data.formats import Item
    from steelscan.data.splits import checksum_val

    items = [Item(f"train_images/{i:09x}.jpg", Path(f"train_images/{i:09x}.jpg")) for i in range(500)]
    val = checksum_val(items, (4,))
    assert 0.15 < len(val) / len(items) < 0.25
    # the rule every shipped Severstal model was measured with: crc32 of the image file name, % 5 == 4
    assert val == {it.name for it in items if zlib.crc32(it.path.name.encode()) % 5 == 4}
    assert checksum_val(items, (3, 4)) > val


@pytest.mark.parametrize("name,cls", [("bce", BCELoss), ("weighted_bce", WeightedBCELoss), ("bce_dice", BCEDiceLoss),
                                      ("focal", FocalLoss)])
def test_each_loss_is_wired_from_the_config(name, cls):
    from steelscan.losses import SegmentationLoss
    from steelscan.tasks.segmentation.task import make_mask_loss

    cfg = config_from_dict({**SEG, "loss": {"name": name, "pos_weight": [2, 2, 1, 1.5], "presence_weight": 0.5}})
    loss = make_mask_loss(cfg, 4)
    assert isinstance(loss, cls)
    if name in ("weighted_bce", "bce_dice"):
        assert loss.pos_weight.tolist() == [2, 2, 1, 1.5]
    torch.manual_seed(0)
    logits, target = torch.randn(2, 4, 8, 8), (torch.rand(2, 4, 8, 8) > 0.8).float()
    presence = torch.randn(2, 4)
    total = SegmentationLoss(loss, 0.5)((logits, presence), target)
    expected = loss(logits, target) + 0.5 * torch.nn.functional.binary_cross_entropy_with_logits(
        presence, target.flatten(2).amax(2))
    assert torch.isclose(total, expected)


def test_config_rejects_mismatched_losses_and_bad_crops():
    with pytest.raises(SteelscanError, match="does not fit task segmentation"):
        config_from_dict({**SEG, "loss": {"name": "ce"}})
    with pytest.raises(SteelscanError, match="does not fit task classification"):
        config_from_dict({"task": "classification", "loss": {"name": "bce"}})
    with pytest.raises(SteelscanError, match="multiples of 32"):
        config_from_dict({**SEG, "segmentation": {"crop": [250, 512]}})
    # Per-class options take one value or K; K comes from the data, so the count is checked when training starts.
    from steelscan.tasks.segmentation.task import make_mask_loss, postprocess_from_config

    two = config_from_dict({**SEG, "segmentation": {"threshold": [0.5, 0.5]}})
    assert postprocess_from_config(two, 2).threshold == (0.5, 0.5)
    assert postprocess_from_config(config_from_dict(SEG), 5).threshold == (0.5,) * 5  # one value for every class
    with pytest.raises(SteelscanError, match=r"segmentation.threshold needs one value per class \(4\)"):
        postprocess_from_config(two, 4)
    with pytest.raises(SteelscanError, match=r"loss.pos_weight needs one value per class \(3\)"):
        make_mask_loss(config_from_dict({**SEG, "loss": {"name": "weighted_bce", "pos_weight": [1, 2]}}), 3)


def test_hard_and_soft_gates():
    probs = np.full((4, 4, 4), 0.8, np.float32)
    presence = np.array([0.9, 0.2, 0.6, 0.4], np.float32)
    hard = apply_gate(probs, presence, "hard", [0.5, 0.5, 0.7, 0.3])
    assert hard[:, 0, 0].tolist() == pytest.approx([0.8, 0.0, 0.0, 0.8])
    soft = apply_gate(probs, presence, "soft", [0.5] * 4)
    assert soft[:, 0, 0] == pytest.approx(0.8 * presence)
    pp = PostProcess(threshold=(0.5,) * 4, min_area=(0,) * 4, gate="soft")
    assert binarize(probs, pp, presence)[:, 0, 0].tolist() == [1, 0, 0, 0]  # 0.8*0.6=0.48 < 0.5
    with pytest.raises(SteelscanError, match="needs the presence"):
        binarize(probs, pp)


def test_min_area_and_component_removal_on_hand_made_masks():
    probs = np.zeros((4, 20, 20), np.float32)
    probs[0, 0:5, 0:5] = 0.9  # 25 px component
    probs[0, 10, 10] = 0.9  # 1 px speck
    probs[1, 0:3, 0:3] = 0.9  # 9 px: below class 2's minimum area
    probs[2, 5:15, 5:15] = 0.6  # 100 px at 0.6
    pp = PostProcess(threshold=(0.5, 0.5, 0.7, 0.5), min_area=(10, 10, 0, 0), min_component=2)
    out = binarize(probs, pp)
    assert out[0].sum() == 25 and out[0, 10, 10] == 0  # the speck went, the blob stayed
    assert out[1].sum() == 0  # whole class mask dropped: 9 < 10
    assert out[2].sum() == 0  # 0.6 is below class 3's threshold 0.7
    m = np.zeros((6, 6), np.uint8)
    m[0, 0] = m[0, 1] = m[5, 5] = 1
    assert remove_small_components(m, 2).tolist() == (m * (np.arange(36).reshape(6, 6) < 2)).tolist()


def test_tuner_finds_the_known_best_threshold_and_area():
    rng = np.random.default_rng(0)
    n = 20
    probs = np.zeros((n, 4, 16, 32), np.float32)
    truths = np.zeros((n, 4, 16, 32), np.uint8)
    for i in range(n):
        probs[i, 0] = rng.uniform(0, 0.3, (16, 32))  # background below 0.3
        if i % 2 == 0:  # the true defect scores 0.47 to 0.55
            truths[i, 0, 4:12, 4:20] = 1
            probs[i, 0, 4:12, 4:20] = rng.uniform(0.47, 0.55, (8, 16))
        else:  # a distractor of 0.42 on clean images, 40 px
            probs[i, 0, 0:4, 0:10] = 0.42
    presence = np.full((n, 4), 0.5, np.float32)
    base = PostProcess(threshold=(0.5,) * 4, min_area=(0,) * 4)
    tuned, report = tune_postprocess(probs, presence, truths, base, n_folds=4, areas=(0,))
    # 0.45 is the only perfect threshold: it drops the 0.42 distractor and keeps every defect pixel
    assert tuned.threshold[0] == 0.45 and report["per_class"][0]["dice_fit"] == 1.0
    assert report["per_class"][0]["dice_cv"] == 1.0 and report["per_class"][0]["dice_fit"] > report["dice_before"]
    assert not report["per_class"][0]["kept"]
    # values that are already perfect are kept: the search cannot beat them out of sample
    kept, rep_kept = tune_postprocess(probs, presence, truths, PostProcess(threshold=(0.45, 0.5, 0.5, 0.5),
                                                                            min_area=(0,) * 4), n_folds=4)
    assert rep_kept["per_class"][0]["kept"] and kept.threshold[0] == 0.45
    # with a 0.3 threshold forced, a minimum area must remove the 40 px distractor but keep the 128 px defects
    _, rep = tune_postprocess(probs, presence, truths, base, n_folds=4, thresholds=(0.35,), areas=(0, 100, 200))
    assert rep["per_class"][0]["dice_fit"] == 1.0
    assert report["all_empty_dice"] == pytest.approx((0.5 + 3) / 4)
    with pytest.raises(SteelscanError, match="at least 5 images"):
        tune_postprocess(probs[:3], presence[:3], truths[:3], base)


def test_tta_is_a_mean_of_flipped_back_probabilities_and_ensembles_average():
    class Flippable(torch.nn.Module):  # pixelwise: flip-equivariant, so TTA must equal the plain pass
        def forward(self, x):
            return x.repeat(1, 4, 1, 1), x.mean((2, 3)).repeat(1, 4)

    x = torch.randn(2, 1, 8, 16)
    plain, tta = predict_tta(Flippable(), x, False), predict_tta(Flippable(), x, True)
    assert torch.allclose(plain[0], tta[0], atol=1e-6) and torch.allclose(plain[1], tta[1], atol=1e-6)
    a, b = np.zeros((4, 2, 2)), np.ones((4, 2, 2))
    assert ensemble_mean([a, b]).tolist() == np.full((4, 2, 2), 0.5).tolist()
    with pytest.raises(SteelscanError, match="disagree on shape"):
        ensemble_mean([a, np.ones((4, 2, 3))])


def test_submission_csv_round_trips_through_the_rle_decoder(tmp_path):
    from steelscan.data.severstal import write_submission
    from steelscan.data.rle import rle_decode

    rng = np.random.default_rng(1)
    masks = (rng.random((4, 256, 1600)) > 0.97).astype(np.uint8)
    masks[1] = 0
    path = tmp_path / "sub.csv"
    write_submission(path, [("a.jpg", masks)])
    rows = list(csv.reader(path.open()))
    assert rows[0] == ["ImageId", "ClassId", "EncodedPixels"] and len(rows) == 5
    for k, (image_id, class_id, rle) in enumerate(rows[1:]):
        assert image_id == "a.jpg" and int(class_id) == k + 1
        assert np.array_equal(rle_decode(rle, (256, 1600)), masks[k])
    assert rows[2][2] == ""


def test_segmenters_are_registered_and_lite0_loads_offline_weights():
    from steelscan.models.segmenter import build_segmenter
    from steelscan.models import list_models

    assert {"unet_efficientnet_b3", "fpn_efficientnet_b3", "unet_efficientnet_lite0"} <= set(list_models(task="segmentation"))
    net = build_segmenter("unet_efficientnet_lite0", pretrained=True)
    stem = net.net.encoder.model.conv_stem.weight
    assert stem.shape[1] == 1 and stem.abs().sum() > 0
    masks, presence = net(torch.zeros(1, 1, 64, 128))
    assert masks.shape == (1, 4, 64, 128) and presence.shape == (1, 4)
    with pytest.raises(SteelscanError, match="no offline ImageNet weights"):
        build_segmenter("unet_efficientnet_b3", pretrained=True)


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory) -> tuple[Path, Path]:
    from steelscan.data.synthetic import write_severstal

    root = tmp_path_factory.mktemp("seg")
    write_severstal(root / "syn", n=12, seed=5, workers=1)
    out = root / "runs"
    argv = ["train", str(REPO / "configs" / "severstal_tiny.yaml"), "--set", f"data.root={root / 'syn'}",
            "--set", f"out_dir={out}", "--set", "train.threads=1", "--set", "train.max_steps=2"]
    assert main(argv) == 0
    (run,) = out.iterdir()
    return run, root / "syn"


def test_tiny_end_to_end_train_tune_evaluate_segment(seg_run, tmp_path, capsys):
    from steelscan.data.severstal import read_train_csv
    from steelscan.engine.runs import load_checkpoint

    run, syn = seg_run
    m = json.loads((run / "metrics.json").read_text())
    assert m["task"] == "segmentation" and 0 <= m["dice_kaggle"] <= 1 and m["n_images"] >= 1
    assert set(m["per_class_dice"]) == {"1", "2", "3", "4"} and "all_empty_dice" in m
    for name in ("config.yaml", "split.json", "curves.png", "samples.png", "model.pt"):
        assert (run / name).is_file(), name

    assert main(["tune", str(run), "--data", str(syn), "--split", "all", "--folds", "3"]) == 0
    _, meta = load_checkpoint(run)
    tuned = json.loads((run / "tune.json").read_text())
    assert meta.postprocess["tuned"]["dice_fit"] == tuned["dice_fit"]
    assert tuned["dice_fit"] >= tuned["dice_cv"] - 1e-9 and tuned["dice_fit"] >= tuned["all_empty_dice"] - 1e-9

    out_json = tmp_path / "eval.json"
    assert main(["evaluate", str(run), "--data", str(syn), "--json", str(out_json)]) == 0
    ev = json.loads(out_json.read_text())
    assert ev["task"] == "segmentation" and ev["n_images"] == 12
    assert {"dice_kaggle", "per_class_dice", "ms_per_image", "all_empty_dice"} <= set(ev)
    # evaluate uses the saved values: kept classes score as before, searched ones as fitted on these images
    expected = np.mean([r["dice_before"] if r["kept"] else r["dice_fit"] for r in tuned["per_class"]])
    assert ev["dice_kaggle"] == pytest.approx(expected)

    sub = tmp_path / "sub.csv"
    assert main(["segment", str(syn / "train_images"), "--model", str(run), "--out", str(tmp_path / "seg"),
                 "--submission", str(sub)]) == 0
    labels = read_train_csv(sub)  # our own reader accepts it: Kaggle's new format
    assert len(list((tmp_path / "seg" / "masks").glob("*.png"))) == 12
    assert len(list((tmp_path / "seg" / "overlays").glob("*.png"))) == 12
    assert len(sub.read_text().strip().splitlines()) == 1 + 4 * 12 and labels.format == "new"


def test_segment_and_tune_refuse_bad_input(seg_run, tmp_path, capsys):
    run, syn = seg_run
    assert main(["segment", str(tmp_path / "none"), "--model", str(run)]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert main(["tune", "neu-cls", "--data", str(syn)]) == 2
    assert "built-in model" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["evaluate", str(run), "--data", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err  # any layout is read now: the error lists what each layout looks like
    assert "cannot tell the data format" in err and "train.csv + train_images/ (RLE)" in err
    assert main(["evaluate", str(run), "--data", str(tmp_path / "empty"), "--format", "severstal"]) == 2
    assert "expected train.csv (ImageId,ClassId,EncodedPixels) + train_images/" in capsys.readouterr().err


def test_loss_study_trains_each_loss_and_tabulates(seg_run, tmp_path, capsys):
    _, syn = seg_run
    out = tmp_path / "losses"
    argv = ["experiment", "losses", str(REPO / "configs" / "severstal_tiny.yaml"), "--test", str(syn), "--out",
            str(out), "--set", f"data.root={syn}", "--set", "train.max_steps=1", "--set", "train.threads=1"]
    assert main(argv) == 0
    res = json.loads((out / "results.json").read_text())
    assert [r["loss"] for r in res["rows"]] == ["bce", "weighted_bce", "bce_dice", "focal"]
    for r in res["rows"]:
        assert set(r) >= {"val", "val_tuned", "test"} and 0 <= r["val_tuned"]["dice_kaggle"] <= 1
        assert r["test"]["n_images"] == 12 and len(r["val_tuned"]["threshold"]) == 4
    assert (out / "losses.png").is_file()
    text = capsys.readouterr().out
    assert "all-empty baseline" in text and "focal" in text


def test_builtin_severstal_evaluates_offline_on_a_kaggle_folder(seg_run, tmp_path):
    from steelscan.engine.runs import BUILTIN_DIR, load_checkpoint

    assert (BUILTIN_DIR / "severstal.pt").is_file() and (BUILTIN_DIR / "severstal.md").is_file()
    assert (BUILTIN_DIR / "severstal.pt").stat().st_size <= 40 * 2**20
    _, meta = load_checkpoint("severstal")
    assert meta.task == "segmentation" and meta.postprocess["tuned"]  # shipped with tuned values
    _, syn = seg_run
    out = tmp_path / "eval.json"
    assert main(["evaluate", "severstal", "--data", str(syn), "--json", str(out)]) == 0
    ev = json.loads(out.read_text())
    assert ev["n_images"] == 12 and 0 <= ev["dice_kaggle"] <= 1 and "all_empty_dice" in ev


def test_segment_mean_ensemble_of_identical_members_equals_the_single_model(seg_run, tmp_path):
    import cv2

    run, syn = seg_run
    one, two = tmp_path / "one", tmp_path / "two"
    image = sorted((syn / "train_images").iterdir())[0]
    assert main(["segment", str(image), "--model", str(run), "--out", str(one)]) == 0
    assert main(["segment", str(image), "--model", str(run), "--model", str(run), "--out", str(two)]) == 0
    a = cv2.imread(str(one / "masks" / f"{image.stem}.png"), cv2.IMREAD_UNCHANGED)
    b = cv2.imread(str(two / "masks" / f"{image.stem}.png"), cv2.IMREAD_UNCHANGED)
    assert a is not None and np.array_equal(a, b)


def test_tuner_searches_the_component_size_and_the_gate_and_reports_each_fold():
    n = 20
    probs = np.zeros((n, 4, 16, 32), np.float32)
    truths = np.zeros((n, 4, 16, 32), np.uint8)
    presence = np.full((n, 4), 0.1, np.float32)
    for i in range(n):
        if i % 2 == 0:  # a 144 px defect, its presence high
            truths[i, 0, 2:14, 2:14] = 1
            probs[i, 0, 2:14, 2:14] = 0.9
            presence[i, 0] = 0.9
        # two 12 px specks at 0.9 on every image, above the 10 px floor: a minimum area of 0 and no larger
        # component size would paint clean steel
        probs[i, 0, 1 + i % 3 : 4 + i % 3, 18:22] = 0.9
        probs[i, 0, 9:12, 26:30] = 0.9
    base = PostProcess(threshold=(0.5,) * 4, min_area=(0,) * 4)
    tuned, report = tune_postprocess(probs, presence, truths, base, n_folds=4, areas=(0,), components=(10, 30))
    assert tuned.min_component == 30  # only the component size also clears the specks beside a real defect
    assert report["dice_chosen"] > report["dice_before"] and report["per_class"][0]["dice_cv"] == 1.0
    assert len(report["folds"]) == 4 and report["folds_below_all_empty"] == 0
    assert all(r["dice"] >= r["all_empty_dice"] for r in report["folds"])
    # without the component search the gate keeps clean images clean (their presence is 0.1), not the specks
    # beside a defect
    gated, rep = tune_postprocess(probs, presence, truths, base, n_folds=4, areas=(0,))
    assert gated.gate == "hard" and 0.1 < gated.gate_threshold[0] <= 0.9 and gated.min_component == 0
    assert rep["per_class"][0]["dice_before"] < rep["per_class"][0]["dice_cv"] < 1.0
    assert gated.gate_threshold[1:] == (0.0, 0.0, 0.0)  # classes without defects keep "no gate"
    # folds given by the caller (e.g. those out-of-fold predictions were made by) are used as they are
    folds = np.arange(n) % 4
    _, given = tune_postprocess(probs, presence, truths, base, n_folds=4, areas=(0,), folds=folds)
    assert [r["n_images"] for r in given["folds"]] == [5, 5, 5, 5]
    with pytest.raises(SteelscanError, match="fold"):
        tune_postprocess(probs, presence, truths, base, n_folds=4, folds=np.zeros(n, int))


def test_components_below_the_floor_never_survive_binarize():
    from steelscan.postprocess import MIN_COMPONENT_FLOOR, binarize

    probs = np.zeros((4, 32, 32), np.float32)
    probs[0, 2:4, 2:5] = 0.9  # 6 px: a speck
    probs[0, 10:20, 10:20] = 0.9  # 100 px: a defect
    mask = binarize(probs, PostProcess(min_area=(0,) * 4, min_component=0))
    assert MIN_COMPONENT_FLOOR == 10 and mask[0, 2:4, 2:5].sum() == 0 and mask[0].sum() == 100
