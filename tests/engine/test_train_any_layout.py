"""`steelscan train --data ROOT` with no recipe on a plant's own layouts (class folders, YOLO, RLE, mask PNGs),
`steelscan evaluate` of each run on its validation split, resume, and the one-line error of a recipe without data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from steelscan.cli import main
from steelscan.engine.runs import load_checkpoint
from tests.layouts import EXPECT

torch.set_num_threads(1)

COMMON = ["--epochs", "1", "--set", "train.max_steps=2", "--set", "train.batch_size=2", "--set", "train.threads=1"]
# Tiny settings per task; classes, channels, input size (classification), min/max size (detection) and the crop
# (masks) are left to the data.
CLS = ["--model", "mobilenetv3_small", "--set", "data.image_size=32"]
DET = ["--model", "frcnn_mobilenetv3_large", "--set", "optim.lr=0.005",
       "--set", "detector.fpn_channels=16", "--set", "detector.representation_size=32",
       "--set", "detector.rpn_pre_nms_top_n_train=50", "--set", "detector.rpn_post_nms_top_n_train=20",
       "--set", "detector.rpn_pre_nms_top_n_test=20", "--set", "detector.rpn_post_nms_top_n_test=10",
       "--set", "detector.box_batch_size_per_image=16", "--set", "detector.n_samples=2",
       "--set", "detector.frozen_stages=0", "--set", "detector.freeze_bn=false"]
CASES = {
    "folders": ("classification", CLS),
    "folders_split": ("classification", CLS),
    "yolo": ("detection", DET),
    "yolo_dict": ("detection", DET),
    "coco": ("detection", DET),
    "voc": ("detection", DET),
    "rle": ("segmentation", ["--model", "unet_resnet18", "--set", "segmentation.crop=[64,64]",
                             "--set", "segmentation.min_area=[0]"]),
    "masks": ("segmentation", ["--model", "unet_resnet18", "--set", "segmentation.min_area=[0]"]),
}
# The headline keys of `steelscan evaluate --json` per task (besides n_images, class_names, ms_per_image).
KEYS = {"classification": ("accuracy", "macro_f1", "per_class"), "detection": ("map50", "per_class_ap50"),
        "segmentation": ("dice_kaggle", "per_class_dice")}


def _train(argv: list[str], capsys) -> tuple[Path, str]:
    """The run folder of a `steelscan train` (its last stdout line) and the log (stderr, unwrapped)."""
    capsys.readouterr()
    assert main(argv) == 0
    out, err = capsys.readouterr()
    last = out.strip().splitlines()[-1]
    assert last.startswith("run folder: "), last
    run = Path(last.removeprefix("run folder: "))
    assert run.is_dir()
    return run, " ".join(err.split())


def test_a_recipe_without_data_root_is_a_one_line_error(tmp_path, capsys):
    empty = tmp_path / "empty.yaml"
    empty.write_text("{}\n")
    capsys.readouterr()
    assert main(["train", str(empty), "--out-dir", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1
    assert err.startswith("steelscan: error:") and "data.root" in err
    assert main(["train"]) == 2  # neither a recipe nor --data
    assert "got neither" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("layout", list(CASES))
def test_train_data_alone_then_evaluate(layout, tmp_path, capsys, request):
    root = request.getfixturevalue(f"tiny_{layout}")
    task, extra = CASES[layout]
    expect = EXPECT[layout.removesuffix("_dict")]  # yolo_dict: the yolo set with names as a mapping
    run, log = _train(["train", "--data", str(root), "--out-dir", str(tmp_path / "runs"), *COMMON, *extra], capsys)
    if expect["problems"]:
        n = sum(expect["problems"].values())
        assert f"{n} label problem(s) skipped or fixed" in log  # logged, and training went on
    for name in ("config.yaml", "data.json", "split.json", "metrics.json", "curves.png", "model.pt", "last.pt"):
        assert (run / name).is_file(), name
    data = json.loads((run / "data.json").read_text())
    assert data["task"] == task and data["class_names"] == expect["classes"]
    assert data["problems"] == expect["problems"]  # the reader's problems, counted in the run folder
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["task"] == task and len(metrics["history"]) == 1
    model, meta = load_checkpoint(run)
    assert meta.task == task and list(meta.class_names) == expect["classes"]  # classes come from the data
    assert meta.data_format == data["format"]
    split = json.loads((run / "split.json").read_text())
    assert split["val"] and split["train"] and not set(split["val"]) & set(split["train"])

    out = tmp_path / "eval.json"
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", str(root), "--split", "val", "--json", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["task"] == task and res["split"] == "val"
    for key in (*KEYS[task], "n_images", "class_names", "ms_per_image"):
        assert key in res, key
    assert res["class_names"] == expect["classes"] and res["ms_per_image"] > 0
    # the same validation images training chose (box-less yolo images included, as defect-free ones)
    assert res["n_images"] == len(split["val"])


def test_default_recipe_reads_what_it_can_from_the_data(tiny_folders, tiny_yolo, tiny_masks):
    from steelscan.tasks.recipes import train_config

    cls = train_config(data=tiny_folders)
    assert cls.task == "classification" and cls.data.root == str(tiny_folders) and cls.model.name == "efficientnet_lite0"
    assert cls.data.image_size is None and cls.model.in_chans is None  # from the data
    det = train_config(data=tiny_yolo, model="frcnn_mobilenetv3_large")
    assert det.detector.min_size is None and det.model.pretrained is False  # no offline weights for that one
    seg = train_config(data=tiny_masks, epochs=3, sets=["train.batch_size=4"])
    assert seg.segmentation.crop is None and seg.train.epochs == 3 and seg.train.batch_size == 4


def test_resume_continues_from_the_last_epoch(tiny_folders, tmp_path, capsys):
    from steelscan.config import load_config

    run, _ = _train(["train", "--data", str(tiny_folders), "--out-dir", str(tmp_path / "runs"), *COMMON,
                  *CASES["folders"][1]], capsys)
    first = json.loads((run / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in first] == [1]
    again, log = _train(["train", "--resume", str(run), "--set", "train.epochs=2"], capsys)
    assert again == run  # the same folder, continued
    assert "after epoch 1" in log and "epoch 2/2" in log and "epoch 1/2" not in log
    metrics = json.loads((run / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2] and metrics["epochs_run"] == 2
    assert metrics["history"][0] == first[0]  # epoch 1 is the one trained before, not a rerun
    assert load_config(run / "config.yaml").train.epochs == 2  # the folder's config says what it ran
    assert len(list((tmp_path / "runs").iterdir())) == 1

    from steelscan.engine.fit import fit, resume_config

    assert fit(resume_config(run, ["train.epochs=3"]), progress=False) == run  # train.resume in a config
    assert len(json.loads((run / "metrics.json").read_text())["history"]) == 3
    capsys.readouterr()
    assert main(["train", "--resume", str(tmp_path / "nothing-here")]) == 2
    assert "steelscan: error:" in capsys.readouterr().err


def test_evaluate_split_val_is_the_split_training_made(tiny_folders, tmp_path, capsys, monkeypatch):
    """A stratified split depends on the seed: `evaluate --split val` takes the run's own seed from its config."""
    from steelscan.tasks import evaluate as evaluate_module

    run, _ = _train(["train", "--data", str(tiny_folders), "--out-dir", str(tmp_path / "runs"), *COMMON,
                     *CASES["folders"][1], "--set", "seed=3"], capsys)
    seen: dict[str, list[str]] = {}

    class Spy:
        def evaluate_items(self, model, meta, data, items, batch_size, tta):
            seen["items"] = sorted(it.name for it in items)
            return {"task": meta.task}

    monkeypatch.setattr(evaluate_module, "get_task", lambda name: Spy())
    evaluate_module.evaluate_model(run, tiny_folders, "val")
    assert seen["items"] == json.loads((run / "split.json").read_text())["val"]
