"""Predictors: each task on a tiny model, PyTorch vs ONNX Runtime parity, 1- and 3-channel models, a K=2
segmenter, the shipped models' migrated metas, and the errors of the loader and of bad images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from steelscan.core.errors import ConfigError, ImageError, ModelFileError
from steelscan.core.meta import ModelMeta
from steelscan.deploy.export import export_artifact
from steelscan.deploy.predictors import (
    ClassifierPredictor, DetectorPredictor, SegmenterPredictor, load_predictor,
)
from steelscan.deploy.tiles import cut_tiles, stitch
from steelscan.models import create_model
from steelscan.postprocess import PostProcess
from steelscan.engine.runs import CHECKPOINT, load_checkpoint, load_meta, save_checkpoint

torch.set_num_threads(1)
TOL = 1e-4


def _images(rng: np.random.Generator, shapes, rgb: bool = False) -> list[np.ndarray]:
    return [rng.integers(0, 256, (*s, 3) if rgb else s, dtype=np.uint8) for s in shapes]


def _run(folder, model, meta: ModelMeta | dict):
    folder.mkdir(parents=True)
    save_checkpoint(folder / CHECKPOINT, model, meta)
    return folder


# ---------------------------------------------------------------------------------------------- classifiers


@pytest.fixture(scope="module")
def classifiers(tmp_path_factory):
    """A grey 3-class classifier and an RGB 4-class one with a non-square input, as runs and artifacts."""
    root = tmp_path_factory.mktemp("cls")
    torch.manual_seed(0)
    grey = create_model("mobilenetv3_small", num_classes=3, in_chans=1)
    grey_meta = ModelMeta(task="classification", model="mobilenetv3_small",
                          model_kwargs={"num_classes": 3, "in_chans": 1}, class_names=("a", "b", "c"),
                          input_size=(48, 48), mean=0.45, std=0.225, tta=True)
    rgb = create_model("mobilenetv3_small", num_classes=4, in_chans=3)
    rgb_meta = ModelMeta(task="classification", model="mobilenetv3_small",
                         model_kwargs={"num_classes": 4, "in_chans": 3}, class_names=("w", "x", "y", "z"),
                         in_chans=3, input_size=(40, 56))
    out = {}
    for name, net, meta in (("grey", grey, grey_meta), ("rgb", rgb, rgb_meta)):
        run = _run(root / name, net.eval(), meta)
        out[name] = (run, export_artifact(run, root / f"{name}.onnx"))
    return out


@pytest.mark.parametrize("kind", ["grey", "rgb"])
def test_classifier_torch_and_onnx_agree(classifiers, kind):
    run, artifact = classifiers[kind]
    pt, ox = load_predictor(run), load_predictor(artifact, threads=1)
    assert isinstance(pt, ClassifierPredictor) and isinstance(ox, ClassifierPredictor)
    assert (pt.backend_kind, ox.backend_kind) == ("torch", "onnx")
    assert pt.meta == ox.meta.model_copy(update={"artifact": None})
    seed = int(np.random.SeedSequence().entropy % 2**32)  # fresh inputs each run; the seed is in the message
    rng = np.random.default_rng(seed)
    # grey and RGB inputs of any size: converted to the model's channels and resized to its input
    images = _images(rng, [(48, 48), (200, 200), (31, 77)]) + _images(rng, [(60, 40)], rgb=True)
    for tta in (False, True):
        a, b = pt.replace(tta=tta).predict(images), ox.replace(tta=tta).predict(images)
        k = pt.meta.num_classes
        assert a.shape == b.shape == (4, k) and np.allclose(a.sum(1), 1, atol=1e-5)
        assert np.abs(a - b).max() < TOL, f"seed {seed}, tta {tta}"
    x = pt.pre_process(images[:2])
    h, w = pt.meta.input_size
    assert x.shape == (2, pt.meta.in_chans, h, w) and x.dtype == np.float32
    assert np.allclose(pt.post_process(pt.forward(x)), pt.predict(images[:2]), atol=1e-6)
    assert ox.backend.session.get_inputs()[0].shape[1:] == [pt.meta.in_chans, h, w]


def test_classifier_defaults_come_from_the_meta(classifiers):
    run, _ = classifiers["grey"]
    p = load_predictor(run)
    assert p.tta is True and p.class_names == ("a", "b", "c") and p.batch_size == 64
    assert load_predictor(run, tta=False, batch_size=2).tta is False
    assert load_predictor(run).predict([]).shape == (0, 3)
    with torch.inference_mode():  # the same numbers as the model itself on the normalised input
        x = p.pre_process([np.full((48, 48), 100, np.uint8)])
        net = p.backend.model
        t = torch.from_numpy(x)
        ref = torch.softmax((net(t) + net(t.flip(-1)) + net(t.flip(-2))) / 3, 1).numpy()
    assert np.abs(p.post_process(p.forward(x)) - ref).max() < 1e-5


def test_checkpoints_hold_a_current_modelmeta(classifiers, tmp_path):
    run, artifact = classifiers["rgb"]
    raw = torch.load(run / CHECKPOINT, weights_only=True)["meta"]
    assert raw["schema_version"] == 1 and raw["in_chans"] == 3 and raw["input_size"] == [40, 56]
    net, meta = load_checkpoint(run)
    assert isinstance(meta, ModelMeta) and meta.class_names == ("w", "x", "y", "z")
    assert load_meta(artifact).artifact.format == "steelscan-onnx" and load_meta(run) == meta
    # an untyped (schema 0) dict is migrated when saved
    old = {"task": "classification", "model": "mobilenetv3_small", "model_kwargs": {"num_classes": 4, "in_chans": 3},
           "class_names": ["w", "x", "y", "z"], "image_size": 40, "mean": 0.5, "std": 0.5}
    save_checkpoint(tmp_path / "old.pt", net, old)
    assert load_meta(tmp_path / "old.pt").input_size == (40, 40)
    with pytest.raises(ModelFileError, match="is an exported ONNX artifact"):
        load_checkpoint(artifact)


# ---------------------------------------------------------------------------------------------- detectors

DET_KW = {"num_classes": 3, "min_size": 64, "max_size": 64, "fpn_channels": 16, "representation_size": 32,
          "box_score_thresh": 0.0}


@pytest.fixture(scope="module")
def detector_run(tmp_path_factory):
    torch.manual_seed(0)
    net = create_model("frcnn_mobilenetv3_large", **DET_KW, in_chans=3)
    meta = ModelMeta(task="detection", model="frcnn_mobilenetv3_large", model_kwargs={**DET_KW, "in_chans": 3},
                     class_names=("dent", "scratch"), in_chans=3, input_size=(64, 64), label_offset=1,
                     mean=0.45, std=0.225, score_threshold=0.02)
    return _run(tmp_path_factory.mktemp("det") / "run", net.eval(), meta)


def test_detector_predicts_class_indices_above_its_threshold(detector_run):
    p = load_predictor(detector_run)
    assert isinstance(p, DetectorPredictor) and p.score_threshold == 0.02 and p.class_names == ("dent", "scratch")
    rng = np.random.default_rng(0)
    images = _images(rng, [(64, 64), (80, 50)]) + _images(rng, [(64, 96)], rgb=True)
    x = p.pre_process(images)
    assert [a.shape for a in x] == [(3, 64, 64), (3, 80, 50), (3, 64, 96)] and 0 <= x[0].min() and x[0].max() <= 1
    dets = p.predict(images)
    every = p.replace(score_threshold=0.0).predict(images)
    assert len(dets) == 3
    for d, e, im in zip(dets, every, images):
        assert d["boxes"].shape == (len(d["scores"]), 4) and d["boxes"].dtype == np.float32
        assert set(d["labels"].tolist()) <= {0, 1} and (d["scores"] >= 0.02).all()
        assert len(e["scores"]) >= len(d["scores"]) and len(e["scores"]) > 0
        assert (e["boxes"][:, 2] <= im.shape[1] + 1e-3).all()  # boxes in pixels of the image as given
    assert p.post_process(p.forward(x))[0]["scores"].tolist() == dets[0]["scores"].tolist()


def test_detector_torch_and_onnx_agree(detector_run, tmp_path):
    artifact = export_artifact(detector_run, tmp_path / "det.onnx")
    pt, ox = load_predictor(detector_run), load_predictor(artifact, threads=1)
    assert isinstance(ox, DetectorPredictor) and ox.backend_kind == "onnx" and ox.score_threshold == 0.02
    seed = int(np.random.SeedSequence().entropy % 2**32)
    rng = np.random.default_rng(seed)
    images = _images(rng, [(64, 64), (90, 140)], rgb=True) + _images(rng, [(48, 80)])  # any size, one graph
    for a, b in zip(pt.predict(images), ox.predict(images)):
        assert len(a["scores"]) == len(b["scores"]), f"seed {seed}"
        assert np.abs(a["boxes"] - b["boxes"]).max(initial=0) < 1e-3, f"seed {seed}"
        assert np.abs(a["scores"] - b["scores"]).max(initial=0) < TOL and (a["labels"] == b["labels"]).all()
    with pytest.raises(ConfigError, match="onnx back end needs an .onnx artifact"):
        load_predictor(detector_run, backend="onnx")


def test_detectors_with_deformable_convolutions_do_not_export(tmp_path):
    kw = {**DET_KW, "dcn": True}
    meta = ModelMeta(task="detection", model="frcnn_mobilenetv3_large", model_kwargs=kw, class_names=("a", "b"),
                     input_size=(64, 64), label_offset=1)
    run = _run(tmp_path / "dcn", create_model("frcnn_mobilenetv3_large", **kw).eval(), meta)
    with pytest.raises(ModelFileError, match="dcn .* does not export to ONNX"):
        export_artifact(run, tmp_path / "d.onnx")
    assert not (tmp_path / "d.onnx").exists()


# ---------------------------------------------------------------------------------------------- segmenters

TILE = (64, 128)


@pytest.fixture(scope="module")
def segmenter_k2(tmp_path_factory):
    """A K=2 segmenter (run + artifact); thresholds near the untrained head's prior so that masks are not empty."""
    from steelscan.models.segmenter import build_segmenter

    root = tmp_path_factory.mktemp("seg")
    torch.manual_seed(0)
    net = build_segmenter("unet_efficientnet_lite0", num_classes=2).eval()
    pp = PostProcess(threshold=(0.0101, 0.0101), min_area=(0, 0), gate_threshold=(0.5, 0.5))
    meta = ModelMeta(task="segmentation", model="unet_efficientnet_lite0", model_kwargs={"num_classes": 2},
                     class_names=("rust", "hole"), input_size=TILE, postprocess=pp.as_dict())
    run = _run(root / "run", net, meta)
    return run, export_artifact(run, root / "seg.onnx", tile=TILE, gate_threshold=0.0)


def test_segmenter_k2_torch_and_onnx_agree(segmenter_k2):
    run, artifact = segmenter_k2
    pt = load_predictor(run)
    ox = load_predictor(artifact, threads=1, gate=False)
    assert isinstance(ox, SegmenterPredictor) and ox.tile == TILE and pt.tile is None
    assert pt.class_names == ox.class_names == ("rust", "hole")
    seed = int(np.random.SeedSequence().entropy % 2**32)
    images = _images(np.random.default_rng(seed), [TILE] * 3)  # one tile each: both see the same pixels
    a, b = pt.predict(images), ox.predict(images)
    assert a.probabilities.shape == b.probabilities.shape == (3, 2, *TILE)
    assert a.presence.shape == b.presence.shape == (3, 2) and a.masks.shape == (3, 2, *TILE)
    assert np.abs(a.probabilities - b.probabilities).max() < TOL, f"seed {seed}"
    assert np.abs(a.presence - b.presence).max() < TOL, f"seed {seed}"
    assert (a.masks != b.masks).mean() < 1e-3 and a.masks.any()
    assert a.tiles.tolist() == [1, 1, 1] and b.decoded.tolist() == [1, 1, 1]


def test_segmenter_tiles_pads_and_gates_any_image_size(segmenter_k2):
    run, artifact = segmenter_k2
    rng = np.random.default_rng(1)
    images = _images(rng, [(100, 300)] * 2)
    pt = load_predictor(run)
    x = pt.pre_process(images)
    assert x.shape == (2, 1, 128, 320)  # reflect-padded to multiples of 32, cropped back after
    seg = pt.predict(images)
    assert seg.probabilities.shape == (2, 2, 100, 300) and seg.masks.dtype == np.uint8
    ox = load_predictor(artifact, threads=1, batch_size=4)
    assert ox.tiles_per_image((100, 300)) == 2 * 3
    tiled = ox.predict(images)
    assert tiled.probabilities.shape == (2, 2, 100, 300) and tiled.tiles.tolist() == [6, 6]
    assert tiled.decoded.tolist() == [6, 6]  # tile gate 0: every tile decoded
    shut = load_predictor(artifact, threads=1).backend
    shut.gate_threshold = 1.01  # a gate nothing passes: nothing decoded, zero probabilities
    closed = SegmenterPredictor(shut.meta, shut).predict(images)
    assert closed.decoded.tolist() == [0, 0] and not closed.probabilities.any() and not closed.masks.any()
    assert ox.replace(tta=True).predict(images[:1]).probabilities.shape == (1, 2, 100, 300)
    probs_only = pt.predict(images, masks=False)
    assert probs_only.masks is None and np.array_equal(pt.binarize(probs_only.probabilities, probs_only.presence),
                                                       seg.masks)
    with pytest.raises(ImageError, match="images of one size"):
        pt.predict([images[0], images[0][:, :200]])


def test_segmenter_postprocessing_must_match_its_classes(segmenter_k2):
    run, _ = segmenter_k2
    meta, backend = load_meta(run), load_predictor(run).backend
    with pytest.raises(ModelFileError, match="2 classes"):
        SegmenterPredictor(meta, backend, postprocess=PostProcess())
    plain = SegmenterPredictor(meta.model_copy(update={"postprocess": None}), backend)
    assert plain.postprocess.threshold == (0.5, 0.5)


# ---------------------------------------------------------------------------------------------- the loader


def test_shipped_models_load_with_their_class_names():
    neu = ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")
    rng = np.random.default_rng(0)
    cls = load_predictor("neu-cls", task="classification")
    assert cls.class_names == neu and cls.meta.input_size == (128, 128) and cls.tta  # migrated from image_size
    assert cls.predict(_images(rng, [(200, 200)])).shape == (1, 6)
    det = load_predictor("neu-det")
    assert isinstance(det, DetectorPredictor) and det.class_names == neu and det.meta.label_offset == 1
    assert det.score_threshold == det.meta.score_threshold == 0.4  # the FCOS neu-det shows boxes from 0.4 (its card)
    d = det.predict(_images(rng, [(200, 200)]))[0]
    assert set(d["labels"].tolist()) <= set(range(6))
    seg = load_predictor("severstal")
    assert isinstance(seg, SegmenterPredictor) and seg.class_names == ("1", "2", "3", "4")
    assert seg.meta.input_size == (256, 512) and seg.postprocess.tuned  # the crop, and its tuned values
    assert seg.predict(_images(rng, [(64, 96)])).masks.shape == (1, 4, 64, 96)


def test_loader_and_image_errors(classifiers, tmp_path):
    run, artifact = classifiers["grey"]
    with pytest.raises(ModelFileError, match="is a classification model; expected a segmentation model"):
        load_predictor(run, task="segmentation")
    with pytest.raises(ModelFileError, match="expected a detection model"):
        load_predictor(artifact, task="detection")
    with pytest.raises(ConfigError, match="torch back end needs a checkpoint"):
        load_predictor(artifact, backend="torch")
    with pytest.raises(ConfigError, match="backend: expected one of auto, torch, onnx"):
        load_predictor(run, backend="tensorrt")
    with pytest.raises(ModelFileError, match="model not found"):
        load_predictor(tmp_path / "nothing")
    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(ModelFileError, match=r"empty \(0 bytes\)"):
        load_predictor(tmp_path / "empty.pt")
    p = load_predictor(run)
    with pytest.raises(ImageError, match=r"image 1: expected a uint8 grey \[H, W\] or RGB \[H, W, 3\]"):
        p.predict([np.zeros((20, 20), np.uint8), np.zeros((20, 20), np.float32)])
    with pytest.raises(ImageError, match="image 0: expected a uint8"):
        p.predict([np.zeros((20, 20, 4), np.uint8)])
    with pytest.raises(ImageError, match="at least 8 px"):
        p.predict([np.zeros((4, 40), np.uint8)])
    with pytest.raises(TypeError, match="no option 'colour'"):
        p.replace(colour=True)


@pytest.mark.parametrize("shape", [(256, 1600), (200, 300), (64, 128)])
def test_rgb_tiles_round_trip(shape):
    frame = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    tiles, grid = cut_tiles(frame, TILE)
    assert tiles.shape == (grid.rows * grid.cols, *TILE, 3)
    back = stitch(tiles.transpose(0, 3, 1, 2).astype(np.float32), grid)
    assert np.array_equal(back.transpose(1, 2, 0), frame)


def test_cli_classify_takes_an_onnx_artifact_and_models_lists_the_builtins(classifiers, tmp_path, capsys):
    import json

    import cv2

    from steelscan.cli import main

    run, artifact = classifiers["rgb"]
    img = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), img)
    cv2.imwrite(str(tmp_path / "b.png"), img[..., 0])
    out_pt, out_onnx = tmp_path / "pt.json", tmp_path / "onnx.json"
    assert main(["classify", str(tmp_path), "--model", str(run), "--json", str(out_pt)]) == 0
    assert main(["classify", str(tmp_path), "--model", str(artifact), "--json", str(out_onnx)]) == 0
    a, b = (json.loads(p.read_text())["predictions"] for p in (out_pt, out_onnx))
    assert [r["class"] for r in a] == [r["class"] for r in b] and {r["class"] for r in a} <= {"w", "x", "y", "z"}
    assert max(abs(r["probability"] - s["probability"]) for r, s in zip(a, b)) < TOL
    capsys.readouterr()
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    for name in ("neu-cls", "neu-det", "severstal", "efficientnet_lite0", "1x128x128"):
        assert name in text
