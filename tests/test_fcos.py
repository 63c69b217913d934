"""The one-stage detector (FCOS), the EMA of weights, mosaic and `model.init`, on tiny inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steelscan.config import load_config
from steelscan.core.errors import ConfigError, ModelFileError, SteelscanError
from steelscan.core.meta import ModelMeta
from steelscan.deploy.export import export_detector
from steelscan.deploy.predictors import DetectorPredictor
from steelscan.deploy.predictors.factory import load_predictor
from steelscan.engine.fit import fit
from steelscan.engine.runs import init_weights, load_checkpoint, save_checkpoint
from steelscan.models import create_model, list_models, model_defaults
from steelscan.models.fcos import FCOS_BACKBONES
from steelscan.tasks.detection.data import DetectionSet, DetSample
from tests.conftest import REPO

torch.set_num_threads(1)
SMALL = {"min_size": 64, "max_size": 96, "fpn_channels": 32, "head_convs": 1}
LOSSES = {"classification", "bbox_regression", "bbox_ctrness"}


def _targets() -> list[dict]:
    return [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 50.0], [40.0, 2.0, 60.0, 12.0]]), "labels": torch.tensor([1, 3])},
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]  # a clean image


def test_registry_has_the_fcos_family():
    names = list_models("fcos_*", task="detection")
    assert names == sorted(f"fcos_{b}" for b in FCOS_BACKBONES)
    assert model_defaults("fcos_efficientnet_lite0").offline_weights and model_defaults("fcos_resnet18").min_input == 64


@pytest.mark.parametrize("backbone", FCOS_BACKBONES)
def test_fcos_trains_one_step_with_a_clean_image_and_detects(backbone):
    torch.manual_seed(0)
    model = create_model(f"fcos_{backbone}", pretrained=backbone == "efficientnet_lite0", num_classes=4, **SMALL)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    losses = model([torch.rand(1, 64, 64), torch.rand(1, 64, 64)], _targets())
    assert set(losses) == LOSSES and all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    torch.optim.SGD(params, lr=0.01).step()
    assert any(not torch.equal(a, b) for a, b in zip(before, params))
    model.eval()
    with torch.no_grad():
        (out,) = model([torch.rand(1, 50, 70)])
    assert set(out) == {"boxes", "scores", "labels"} and out["boxes"].shape[1] == 4
    if len(out["boxes"]):  # boxes in the input image's pixels, labels among the model's
        assert float(out["boxes"][:, 2].max()) <= 70 + 1e-3 and float(out["boxes"][:, 3].max()) <= 50 + 1e-3
        assert int(out["labels"].max()) < 4


def test_fcos_bad_arguments_are_errors():
    with pytest.raises(SteelscanError, match="multiple of 16"):
        create_model("fcos_resnet18", fpn_channels=40)
    with pytest.raises(SteelscanError, match="min_size"):
        create_model("fcos_resnet18", min_size=32, max_size=64)
    with pytest.raises(SteelscanError, match="no offline ImageNet weights"):
        create_model("fcos_resnet18", pretrained=True)


def _random_head(model: torch.nn.Module) -> torch.nn.Module:
    """Spread the untrained head's scores: a fresh FCOS scores every location alike, and ties make top-k order
    an implementation detail of each runtime."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, p in model.head.named_parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.3 if "weight" in name else 1.0))
    return model.eval()


def test_fcos_onnx_runtime_matches_pytorch(tmp_path):
    torch.manual_seed(0)
    kwargs = {**SMALL, "num_classes": 3, "in_chans": 1, "pretrained": False, "box_detections_per_img": 20}
    model = _random_head(create_model("fcos_mobilenetv3_large", **kwargs))
    meta = ModelMeta(task="detection", model="fcos_mobilenetv3_large", model_kwargs=kwargs, class_names=("a", "b"),
                     input_size=(64, 64), label_offset=1, score_threshold=0.0)
    path = export_detector(model, meta, tmp_path / "fcos.onnx")
    rng = np.random.default_rng()  # fresh inputs each run: a parity bug cannot hide behind one
    images = [rng.integers(0, 256, (64, 64), np.uint8), rng.integers(0, 256, (48, 80), np.uint8)]
    ours = DetectorPredictor.from_module(model, meta, batch_size=1).predict(images)
    ort = load_predictor(path, score_threshold=0.0).predict(images)
    for a, b in zip(ours, ort):
        assert len(a["scores"]) == len(b["scores"]) > 0
        np.testing.assert_allclose(a["scores"], b["scores"], atol=1e-4)
        np.testing.assert_allclose(a["boxes"], b["boxes"], atol=0.05)
        np.testing.assert_array_equal(a["labels"], b["labels"])


def test_mosaic_cuts_a_window_of_four_images_and_keeps_its_boxes_inside():
    samples = []
    for k in range(4):
        image = np.full((40, 40), 60 * k, np.uint8)
        samples.append(DetSample(f"s{k}", image, np.float32([[5, 5, 35, 15]]), np.int64([k])))
    samples.append(DetSample("other_shape", np.zeros((30, 50), np.uint8), np.float32([[0, 0, 10, 10]]), np.int64([0])))
    ds = DetectionSet(samples, train=True, hflip=True, vflip=True, mosaic=1.0)
    torch.manual_seed(0)
    seen_values = set()
    for _ in range(40):
        x, t = ds[0]
        h, w = x.shape[1:]
        assert 40 <= h <= 60 and 40 <= w <= 60 and (h, w) != (30, 50)
        b = t["boxes"].numpy()
        assert len(b) == len(t["labels"]) and (b >= 0).all() and (b[:, 2] <= w).all() and (b[:, 3] <= h).all()
        assert ((b[:, 2] - b[:, 0]) >= 2).all() and ((b[:, 3] - b[:, 1]) >= 2).all()
        seen_values |= set(np.unique((x.numpy() * 255).round()).tolist())
    assert seen_values <= {0.0, 60.0, 120.0, 180.0}  # only the four 40x40 images, never the other shape
    assert len(seen_values) >= 3


@pytest.mark.slow
def test_fit_fcos_with_ema_and_mosaic_resumes_its_average(det_synth, tmp_path):
    det, clean = det_synth
    overrides = [f"data.root={det}", f"data.clean_root={clean}", f"out_dir={tmp_path}", "model.name=fcos_resnet18",
                 "model.pretrained=false", "detector.min_size=64", "detector.max_size=64", "detector.fpn_channels=32",
                 "detector.head_convs=1", "detector.frozen_stages=0", "train.batch_size=2", "train.max_steps=3",
                 "train.epochs=1", "train.time_budget_minutes=null", "train.threads=1", "train.ema_decay=0.9",
                 "augment.mosaic=1.0", "detector.n_samples=0"]
    run = fit(load_config(REPO / "configs" / "neu_det_fcos_lite0.yaml", overrides), progress=False)
    last = torch.load(run / "last.pt", weights_only=True)
    assert last["ema"]["steps"] == 3  # the warm-up copies the weights at the first two
    model, meta = load_checkpoint(run)  # model.pt holds the average, not the raw weights
    saved = model.state_dict()
    key = "head.classification_head.cls_logits.weight"
    assert torch.equal(saved[key], last["ema"]["state_dict"][key])
    assert not torch.equal(saved[key], last["state_dict"][key])
    assert meta.model == "fcos_resnet18" and meta.model_kwargs["head_convs"] == 1
    resumed = fit(load_config(run / "config.yaml", [f"train.resume={run}", "train.epochs=2"]), progress=False)
    assert resumed == run
    assert torch.load(run / "last.pt", weights_only=True)["ema"]["steps"] == 6
    with pytest.raises(ConfigError, match="coordconv"):
        fit(load_config(REPO / "configs" / "neu_det_fcos_lite0.yaml", [*overrides, "detector.coordconv=true"]))


def test_model_init_copies_the_tensors_that_fit(tmp_path):
    torch.manual_seed(0)
    kwargs = {**SMALL, "num_classes": 7, "in_chans": 1, "pretrained": False}
    source = create_model("fcos_resnet18", **kwargs)
    meta = ModelMeta(task="detection", model="fcos_resnet18", model_kwargs=kwargs, class_names=tuple("abcdef"),
                     input_size=(64, 64), label_offset=1)
    save_checkpoint(tmp_path / "src.pt", source, meta)
    target = create_model("fcos_resnet18", **{**kwargs, "num_classes": 3})  # another plant's class count
    copied, fresh = init_weights(target, tmp_path / "src.pt")
    assert fresh == ["head.classification_head.cls_logits.bias", "head.classification_head.cls_logits.weight"]
    assert copied == len(target.state_dict()) - 2
    key = "head.regression_head.bbox_reg.weight"
    assert torch.equal(target.state_dict()[key], source.state_dict()[key])
    with pytest.raises(ModelFileError, match="no tensor"):
        init_weights(create_model("mobilenetv3_small", num_classes=2, in_chans=1), tmp_path / "src.pt")
