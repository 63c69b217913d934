"""The training engine: config validation, augmentation, improved cutout, TTA, imbalance tools."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from steelscan.config import load_config
from steelscan.core.errors import SteelscanError
from steelscan.data.formats.base import Item
from steelscan.data.neu import neu_split
from steelscan.data.transforms import improved_cutout
from steelscan.tasks.classification.evaluate import predict_logits
from steelscan.tasks.classification.data import balanced_sampler, class_weights, oversample


def test_unknown_key_suggests_the_closest_valid_key(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("train:\n  epoch: 3\n")
    with pytest.raises(SteelscanError, match=r"unknown key 'train.epoch' \(did you mean 'train.epochs'\?\)"):
        load_config(cfg)
    with pytest.raises(SteelscanError, match=r"unknown key 'modle' \(did you mean 'model'\?\)"):
        load_config(None, ["modle.name=resnet18"])


def test_overrides_are_yaml_values_and_types_are_checked():
    cfg = load_config(None, ["train.epochs=7", "data.val_remainders=[1, 2]", "model.dcn=true"])
    assert cfg.train.epochs == 7 and cfg.data.val_remainders == (1, 2) and cfg.model.dcn is True
    with pytest.raises(SteelscanError, match="'train.epochs'"):
        load_config(None, ["train.epochs=many"])
    with pytest.raises(SteelscanError, match="expects key=value"):
        load_config(None, ["train.epochs"])


def test_bad_yaml_and_missing_file_are_one_line_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [unclosed\n")
    with pytest.raises(SteelscanError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(SteelscanError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


def test_split_by_number_never_uses_heldout_numbers():
    for n in (5, 100):
        with pytest.raises(SteelscanError, match="held out for independent evaluation"):
            neu_split(n)
    with pytest.raises(SteelscanError, match="expected a NEU image number"):
        neu_split(0)
    assert neu_split(4) == "val" and neu_split(9) == "val"
    assert {neu_split(n) for n in (1, 2, 3, 6, 7, 8)} == {"train"}


def test_improved_cutout_blanks_a_real_box_and_reports_boxes_left():
    rng = np.random.default_rng(0)
    image = (np.arange(40 * 40).reshape(40, 40) % 251).astype(np.uint8)
    boxes = np.array([[5, 5, 15, 15]], dtype=np.float32)
    out, left = improved_cutout(image, boxes, rng)
    assert left == 0
    patch = out[5:15, 5:15]
    assert (patch == patch[0, 0]).all() and not (image[5:15, 5:15] == patch[0, 0]).all()
    assert np.array_equal(out[20:, 20:], image[20:, 20:])  # outside the box untouched
    # keep_one protects the last box of a multi-class sample
    same, left = improved_cutout(image, boxes, rng, keep_one=True)
    assert left == 1 and np.array_equal(same, image)


def test_improved_cutout_flips_binary_label(tmp_path):
    import cv2

    from steelscan.tasks.classification.data import ClassificationSet

    path = tmp_path / "Cr_1.bmp"
    cv2.imwrite(str(path), np.full((200, 200), 120, np.uint8))
    item = Item("Cr_1.bmp", path, group="1", label=0)
    ds = ClassificationSet([item], [1], size=64, mean=0.5, std=0.5, binary=True,
                           boxes={"Cr_1.bmp": np.array([[10, 10, 50, 50]], np.float32)}, improved_cutout_p=1.0)
    _, label = ds[0]
    assert label == 0
    ds.cutout_p = 0.0
    assert ds[0][1] == 1


def test_tta_is_the_mean_of_none_hflip_vflip():
    class Probe(torch.nn.Module):
        def forward(self, x):  # a non-symmetric function of the image
            return x[:, :, 0, :3].flatten(1)

    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    expected = (Probe()(x) + Probe()(x.flip(-1)) + Probe()(x.flip(-2))) / 3
    assert torch.allclose(predict_logits(Probe(), x, tta=True), expected)
    assert torch.allclose(predict_logits(Probe(), x, tta=False), Probe()(x))


def test_imbalance_tools():
    labels = [0] * 90 + [1] * 10
    w = class_weights(labels, 2)
    assert w[1] / w[0] == pytest.approx(9.0)
    drawn = torch.tensor(list(balanced_sampler(labels, seed=0)))
    minority_share = (drawn >= 90).float().mean().item()
    assert 0.35 < minority_share < 0.65  # about half, not 10%
    items = [Item(f"Cr_{n}", None, label=0) for n in (1, 2, 3)] + [Item("In_1", None, label=1)]
    out = oversample(items, ["crazing", "inclusion"], {"crazing": 8})
    assert sum(it.label == 0 for it in out) == 8 and len(out) == 9


def test_train_transform_switches(tmp_path):
    from steelscan.config import AugmentConfig
    from steelscan.tasks.augment import train_transform

    full = train_transform(AugmentConfig(cutout=1.0, brightness_contrast=0.3), size=64, seed=0)
    names = [type(t).__name__ for t in full.transforms]
    assert names == ["RandomResizedCrop", "HorizontalFlip", "VerticalFlip", "RandomBrightnessContrast", "CoarseDropout"]
    bare = train_transform(AugmentConfig(hflip=False, vflip=False, brightness_contrast=0, random_resized_crop=None), 64)
    assert [type(t).__name__ for t in bare.transforms] == ["Resize"]
    image = np.random.default_rng(0).integers(0, 255, (200, 200), dtype=np.uint8)
    assert full(image=image)["image"].shape == (64, 64)
    # Seeded: the same seed gives the same augmented image.
    a = train_transform(AugmentConfig(), 64, seed=5)(image=image)["image"]
    b = train_transform(AugmentConfig(), 64, seed=5)(image=image)["image"]
    assert np.array_equal(a, b)


FAST = ["train.epochs=1", "train.max_steps=1", "train.batch_size=2", "train.threads=1", "data.image_size=32"]


@pytest.mark.parametrize("bad", ["truncated", "wrong_size", "unknown_prefix", "nothing_readable"])
def test_bad_training_data_is_recorded_or_a_one_line_error(tmp_path, bad, capsys):
    """A bad image is left out and counted, and training goes on with the good ones; images of another size are
    resized; only a set with nothing usable (or no recognisable layout) is an error: one line, exit 2."""
    import cv2

    from steelscan.cli import main

    data = tmp_path / "data"
    data.mkdir()
    for i, p in enumerate(("Cr", "In", "Pa", "PS", "RS", "Sc")):  # No. 4 is val, No. 5 NEU's held-out fifth
        cv2.imwrite(str(data / f"{p}_{i + 1}.bmp"), np.full((200, 200), 100, np.uint8))
    if bad == "truncated":  # the header is whole, so only decoding finds it
        (data / "Cr_1.bmp").write_bytes((data / "Cr_1.bmp").read_bytes()[:3000])
    elif bad == "wrong_size":
        cv2.imwrite(str(data / "Cr_1.bmp"), np.zeros((100, 120), np.uint8))
    elif bad == "unknown_prefix":
        cv2.imwrite(str(data / "Xx_1.bmp"), np.zeros((200, 200), np.uint8))
    else:
        for f in data.iterdir():
            f.write_bytes(f.read_bytes()[:3000])
    assert main(["train", str(tmp_path / "none.yaml")]) == 2  # warm-up: missing config
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data: {{root: {data}}}\nout_dir: {tmp_path / 'runs'}\n")
    sets = [a for kv in FAST for a in ("--set", kv)]
    capsys.readouterr()
    code = main(["train", str(cfg), *sets])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    if bad in ("truncated", "wrong_size"):
        assert code == 0
        run = Path(out.strip().splitlines()[-1].removeprefix("run folder: "))
        problems = json.loads((run / "data.json").read_text())["problems"]
        split = json.loads((run / "split.json").read_text())
        assert split["train"] == ["Cr_1.bmp", "In_2.bmp", "Pa_3.bmp", "Sc_6.bmp"] and split["val"] == ["PS_4.bmp"]
        assert (run / "model.pt").is_file() and (run / "metrics.json").is_file()
        if bad == "truncated":
            assert problems == {"unreadable_image": 1}
            assert "left out Cr_1.bmp" in " ".join(err.split())  # the log names it
        else:
            assert problems == {}
        return
    assert code == 2
    line = err.strip().splitlines()[-1]  # after any logged warnings, one error line
    assert line.startswith("steelscan: error:")
    if bad == "unknown_prefix":  # not NEU-CLS any more (and no class folders): the layout cannot be told
        assert "cannot tell the data format" in line and "Xx_1.bmp" in line
        # named as NEU-CLS, the reader refuses the whole set: a silent skip would shift class counts and splits
        assert main(["train", str(cfg), *sets, "--set", "data.format=neu-cls"]) == 2
        line = capsys.readouterr().err.strip().splitlines()[-1]
        assert line.startswith("steelscan: error:") and "Xx_1.bmp" in line and "unknown NEU-CLS class prefix" in line
    else:
        assert "no readable training image" in line
    assert not (tmp_path / "runs").exists()  # nothing half-written


def test_gradient_accumulation_equals_one_big_batch():
    from steelscan.engine.loop import supervised_step, train_one_epoch

    torch.manual_seed(0)
    x, y = torch.randn(8, 5), torch.randint(0, 3, (8,))

    def run(batches, accum):
        torch.manual_seed(1)
        model = torch.nn.Linear(5, 3)
        opt = torch.optim.SGD(model.parameters(), lr=0.5)
        train_one_epoch(model, batches, opt, supervised_step(torch.nn.CrossEntropyLoss()), torch.device("cpu"),
                        grad_accum=accum)
        return model.weight.detach()

    big = run([(x, y)], 1)
    accumulated = run([(x[:4], y[:4]), (x[4:], y[4:])], 2)
    assert torch.allclose(big, accumulated, atol=1e-6)
    # A trailing partial group still steps: three batches with grad_accum 2 give two optimiser steps.
    three = run([(x[:3], y[:3]), (x[3:6], y[3:6]), (x[6:], y[6:])], 2)
    assert not torch.allclose(three, run([(x[:3], y[:3]), (x[3:6], y[3:6])], 2))
