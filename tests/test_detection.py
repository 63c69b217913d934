"""The detector family (Faster R-CNN + FPN, DCN/SPP/CoordConv flags), its data, engine and CLI, on tiny inputs."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from steelscan.cli import main
from steelscan.config import load_config
from steelscan.core.errors import DataError, SteelscanError
from steelscan.data.formats import Problem, read_data
from steelscan.data.splits import split_items
from steelscan.models.detector import DETECTOR_BACKBONES, LABEL_OFFSET, detector_name
from steelscan.models.layers import (
    SPP, CoordConv2d, CoordRoIPool, ModulatedDeformConv2d, coordinate_channels, roi_coordinate_channels,
)
from steelscan.models import create_model, list_models
from steelscan.engine.fit import fit
from steelscan.engine.runs import load_checkpoint
from steelscan.tasks.detection.data import (
    DetectionSet, DetSample, blackout, collate_detection, flip_boxes, load_split_samples,
)
from tests.conftest import REPO, shared_data

torch.set_num_threads(1)
SMALL = {"min_size": 64, "max_size": 64, "fpn_channels": 32, "representation_size": 64,
         "rpn_pre_nms_top_n_train": 100, "rpn_post_nms_top_n_train": 50, "rpn_pre_nms_top_n_test": 50,
         "rpn_post_nms_top_n_test": 20, "box_batch_size_per_image": 32}


def _targets() -> list[dict]:
    return [{"boxes": torch.tensor([[4.0, 6.0, 30.0, 50.0], [40.0, 2.0, 60.0, 12.0]]), "labels": torch.tensor([1, 6])},
            {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}]  # a clean image


# ------------------------------------------------------------------------------------------- models


def test_registry_lists_every_detector_and_offset():
    frcnn = sorted(detector_name(b) for b in DETECTOR_BACKBONES)
    assert [n for n in list_models(task="detection") if n.startswith("frcnn_")] == frcnn
    assert list_models("resnet*") == ["resnet18", "resnet50", "resnet50d"]  # classifier names untouched
    assert LABEL_OFFSET == 1


@pytest.mark.parametrize("backbone", DETECTOR_BACKBONES)
@pytest.mark.parametrize("flags", [{}, {"dcn": True, "spp": True, "coordconv": True}], ids=["plain", "dcn+spp+coord"])
def test_every_backbone_and_flag_trains_one_step_with_a_clean_image(backbone, flags):
    torch.manual_seed(0)
    model = create_model(detector_name(backbone), pretrained=backbone == "efficientnet_lite0", **SMALL, **flags)
    kinds = {type(m) for m in model.modules()}
    assert (ModulatedDeformConv2d in kinds) == bool(flags) and (SPP in kinds) == bool(flags)
    assert (CoordConv2d in kinds) == bool(flags) and isinstance(model.roi_heads.box_roi_pool, CoordRoIPool) == bool(flags)
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    before = [p.detach().clone() for p in params]
    opt = torch.optim.SGD(params, lr=0.01)
    losses = model([torch.rand(1, 64, 64), torch.rand(1, 64, 64)], _targets())
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg"}
    loss = sum(losses.values())
    assert torch.isfinite(loss)
    loss.backward()
    opt.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, params))
    model.eval()
    with torch.no_grad():
        (det,) = model([torch.rand(1, 64, 64)])
    assert det["boxes"].shape[1] == 4 and len(det["scores"]) == len(det["labels"]) <= 50


def test_a_batch_of_only_clean_images_trains():
    torch.manual_seed(0)
    model = create_model("frcnn_mobilenetv3_large", **SMALL).train()
    empty = _targets()[1]
    losses = model([torch.rand(1, 64, 64)] * 2, [empty, empty])
    assert losses["loss_box_reg"] == 0 and losses["loss_rpn_box_reg"] == 0
    assert torch.isfinite(losses["loss_classifier"]) and losses["loss_objectness"] > 0
    sum(losses.values()).backward()


def test_lite0_weights_frozen_stages_and_frozen_bn_round_trip():
    from steelscan.models.classifier import efficientnet_lite0_state_dict

    kw = {**SMALL, "pretrained": True, "frozen_stages": 1, "freeze_bn": True}
    model = create_model("frcnn_efficientnet_lite0", **kw)
    body = model.backbone.body
    assert torch.equal(body.blocks[3][0].conv_pw.weight, efficientnet_lite0_state_dict(1)["blocks.3.0.conv_pw.weight"])
    assert not body.conv_stem.weight.requires_grad and not body.blocks[1][0].conv_pw.weight.requires_grad
    assert body.blocks[2][0].conv_pw.weight.requires_grad  # stage 2 (stride 8) on trains
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in body.modules())
    again = create_model("frcnn_efficientnet_lite0", **{**kw, "pretrained": False})
    again.load_state_dict(model.state_dict())  # a checkpoint rebuilds from its kwargs without the weights package


def test_200px_images_are_not_upscaled_to_800():
    model = create_model("frcnn_mobilenetv3_large").eval()  # defaults: min_size 200, max_size 256
    batch, _ = model.transform([torch.rand(1, 200, 200)])
    assert batch.image_sizes == [(200, 200)] and batch.tensors.shape[-2:] == (224, 224)  # padded to /32 only
    multi = create_model("frcnn_mobilenetv3_large", min_size=(160, 200)).eval()
    assert multi.transform([torch.rand(1, 200, 200)])[0].image_sizes == [(200, 200)]  # eval: the last size
    assert model.transform.image_mean == [0.45] and len(model.transform.image_std) == 1  # grey, 1 channel


def test_bad_detector_arguments_are_errors():
    with pytest.raises(SteelscanError, match="no offline ImageNet weights for resnet50"):
        create_model("frcnn_resnet50", pretrained=True)
    with pytest.raises(SteelscanError, match="min_size <= max_size"):
        create_model("frcnn_mobilenetv3_large", min_size=300, max_size=256)
    with pytest.raises(SteelscanError, match="one size per FPN level"):
        create_model("frcnn_mobilenetv3_large", anchor_sizes=(16, 32))


def test_spp_concatenates_the_input_and_its_5_9_13_max_pools():
    spp = SPP(16, 8).eval()
    x = torch.rand(2, 16, 7, 9)
    assert spp(x).shape == (2, 8, 7, 9)
    h = torch.rand(2, 4, 7, 9)
    pyr = spp.pyramid(h)
    assert pyr.shape == (2, 16, 7, 9) and torch.equal(pyr[:, :4], h)
    for k, size in enumerate((5, 9, 13), start=1):
        assert torch.equal(pyr[:, 4 * k : 4 * k + 4], torch.nn.functional.max_pool2d(h, size, 1, size // 2))
    # On a 7x7 map every 13x13 window covers the whole map: the last pool is the global max everywhere.
    small = torch.rand(1, 4, 7, 7)
    assert torch.equal(spp.pyramid(small)[:, 12:], small.amax((2, 3), keepdim=True).expand_as(small))


def test_coordconv_channels_and_zero_initial_effect():
    c = coordinate_channels(torch.zeros(2, 3, 4, 5))
    assert c.shape == (2, 2, 4, 5)
    assert torch.allclose(c[0, 0, 0], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))  # x along a row
    assert torch.allclose(c[0, 1, :, 0], torch.tensor([-1.0, -1 / 3, 1 / 3, 1.0]))  # y down a column
    assert torch.equal(c[0, 0, 0], c[0, 0, 3]) and torch.equal(c[1], c[0])
    conv = torch.nn.Conv2d(3, 6, 3, padding=1)
    x = torch.rand(2, 3, 8, 8)
    cc = CoordConv2d(conv)
    assert cc.conv.in_channels == 5 and torch.allclose(cc(x), conv(x), atol=1e-6)
    # RoI cells: image-normalised centres; a box over the left half of a 100x50 image spans x in (-1, 0).
    roi = roi_coordinate_channels([torch.tensor([[0.0, 0.0, 50.0, 50.0]])], [(50, 100)], size=5)
    assert roi.shape == (1, 2, 5, 5)
    assert torch.allclose(roi[0, 0, 0], torch.tensor([-0.9, -0.7, -0.5, -0.3, -0.1]))
    assert torch.allclose(roi[0, 1, :, 0], torch.tensor([-0.8, -0.4, 0.0, 0.4, 0.8]))


# --------------------------------------------------------------------------------------------- data


def _sample() -> DetSample:
    image = np.full((40, 60), 50, np.uint8)
    image[5:15, 10:30] = 250  # the defect, exactly its box
    return DetSample("crazing_1", image, np.array([[10, 5, 30, 15]], np.float32), np.array([0], np.int64))


def test_flips_move_boxes_with_the_pixels_and_labels_get_the_offset():
    np.testing.assert_array_equal(flip_boxes(np.array([[10, 5, 30, 15]], np.float32), 60, 40, True, True),
                                  [[30, 25, 50, 35]])
    ds = DetectionSet([_sample()], train=True, hflip=True, vflip=True, brightness_contrast=0.0)
    torch.manual_seed(0)
    seen = set()
    for _ in range(40):
        x, t = ds[0]
        x1, y1, x2, y2 = t["boxes"][0].int().tolist()
        # The bright defect is exactly inside the moved box.
        assert x.shape == (1, 40, 60) and torch.all(x[0, y1:y2, x1:x2] > 0.9) and int((x > 0.9).sum()) == 200
        assert t["labels"].tolist() == [0 + LABEL_OFFSET]
        seen.add((x1, y1))
    assert len(seen) == 4  # all four flip combinations occurred
    images, targets = collate_detection([ds[0], ds[0]])
    assert len(images) == 2 and len(targets) == 2


def test_defect_blackout_makes_a_clean_sample_only_where_steel_is_left():
    s = _sample()
    out = blackout(s.image, s.boxes)
    assert (out[5:15, 10:30] == 50).all() and (out[:5] == 50).all()
    x, t = DetectionSet([s], train=True, blackout_p=1.0)[0]
    assert t["boxes"].shape == (0, 4) and t["labels"].shape == (0,) and x.max() < 0.3
    big = DetSample("x_1", s.image, np.array([[0, 0, 60, 30]], np.float32), np.array([1]))
    _, t = DetectionSet([big], train=True, blackout_p=1.0)[0]
    assert len(t["boxes"]) == 1  # the box covers 75% of the image: kept


@pytest.fixture(scope="module")
def synth(det_synth) -> tuple[Path, Path]:
    return det_synth


def _copy(src: Path, dst: Path) -> Path:
    for sub in ("IMAGES", "ANNOTATIONS"):
        (dst / sub).mkdir(parents=True)
        for f in (src / sub).iterdir():
            (dst / sub / f.name).write_bytes(f.read_bytes())
    return dst


def test_split_by_number_with_clean_images(synth):
    det, clean = synth
    val = load_split_samples(det, "val", clean_root=clean)
    train = load_split_samples(det, "train", clean_root=clean)
    assert sorted(s.name for s in val if not s.name.startswith("clean")) == [
        "IMAGES/crazing_4.jpg", "IMAGES/patches_4.jpg", "IMAGES/scratches_4.jpg"]  # item names: paths in the set
    assert len([s for s in train if not s.name.startswith("clean")]) == 9
    assert sum(s.name.startswith("clean") for s in train + val) == 3
    assert all(len(s.boxes) == 0 for s in train + val if s.name.startswith("clean"))
    assert len(load_split_samples(det, "all", clean_root=clean)) == 15


def _voc(det: Path, stem: str, text: str) -> None:
    (det / "ANNOTATIONS" / f"{stem}.xml").write_text(text)


def _break(det: Path, case: str) -> None:
    from steelscan.data.synthetic import voc_xml

    if case == "outside":
        _voc(det, "crazing_1", voc_xml("crazing_1", "crazing", np.array([[150, 10, 210, 50]]), np.array([0])))
    elif case == "zero_width":
        _voc(det, "crazing_1", voc_xml("crazing_1", "crazing", np.array([[10, 10, 10, 50]]), np.array([0])))
    elif case == "unknown_class":
        xml = voc_xml("crazing_1", "crazing", np.array([[10, 10, 40, 50]]), np.array([0]))
        _voc(det, "crazing_1", xml.replace("<name>crazing</name>", "<name>rust</name>"))
    elif case == "missing_image":
        (det / "IMAGES" / "crazing_1.jpg").unlink()
    elif case == "missing_xml":
        (det / "ANNOTATIONS" / "crazing_1.xml").unlink()
    elif case == "no_object":
        _voc(det, "crazing_1", voc_xml("crazing_1", "crazing", np.zeros((0, 4)), np.zeros(0)))
    else:
        raise AssertionError(case)


# Each label mistake is recorded as a Problem (kind + file) and the rest of the set is read: a plant's export is
# never refused for one bad file. (Formerly each was an exception that stopped the whole read.)
@pytest.mark.parametrize("case,kind,path,boxes_left", [
    ("outside", "box_outside_image", "IMAGES/crazing_1.jpg", [[150, 10, 200, 50]]),  # clipped to the image
    ("zero_width", "empty_box", "IMAGES/crazing_1.jpg", []),  # dropped: the image is defect-free now
    ("unknown_class", "class_out_of_range", "IMAGES/crazing_1.jpg", []),
    ("missing_image", "label_without_image", "ANNOTATIONS/crazing_1.xml", None),  # no item
    ("missing_xml", "image_without_label", "IMAGES/crazing_1.jpg", []),  # read as defect-free
])
def test_bad_labels_are_recorded_problems(synth, tmp_path, case, kind, path, boxes_left):
    det = _copy(synth[0], tmp_path / "det")
    _break(det, case)
    data = read_data(det)
    assert data.format == "neu-det" and data.class_names[0] == "crazing"
    assert [(p.kind, p.path) for p in data.problems] == [(kind, path)]
    assert isinstance(data.problems[0], Problem) and data.problems[0].message
    crazing_1 = [it for it in data.items if it.name == "IMAGES/crazing_1.jpg"]
    if boxes_left is None:
        assert not crazing_1 and len(data.items) == 11
    else:
        assert len(data.items) == 12 and crazing_1[0].boxes.tolist() == boxes_left


def _empty_policy(items, policy):
    from steelscan.tasks.detection.task import _apply_empty_policy

    return _apply_empty_policy(load_config(None, [f"data.empty_annotations={policy}"]), items)


def test_annotation_without_objects_follows_the_empty_policy(synth, tmp_path, caplog):
    det = _copy(synth[0], tmp_path / "det")
    _break(det, "no_object")
    data = read_data(det)
    assert not data.problems  # an annotation with no <object> is valid VOC: a defect-free image
    train = split_items(data).train
    assert len(train) == 9
    kept = _empty_policy(train, "clean")  # the default
    assert len(kept) == 9 and [len(it.boxes) for it in kept if it.name == "IMAGES/crazing_1.jpg"] == [0]
    assert load_config().data.empty_annotations == "clean"
    assert len(_empty_policy(train, "skip")) == 8
    assert "skipped 1 image(s) with no box, e.g. IMAGES/crazing_1.jpg" in caplog.text
    with pytest.raises(DataError, match=r"crazing_1.jpg: no box in its label; expected at least one"):
        _empty_policy(train, "error")


def test_training_on_bad_labels_logs_the_problems_and_trains_on_the_rest(synth, tmp_path, caplog):
    det = _copy(synth[0], tmp_path / "det")
    _break(det, "zero_width")
    (det / "IMAGES" / "patches_2.jpg").unlink()  # a second problem: an annotation without its image
    cfg = load_config(REPO / "configs" / "neu_det_tiny.yaml",
                      [f"data.root={det}", f"out_dir={tmp_path / 'runs'}", "train.max_steps=1", "train.threads=1",
                       "detector.n_samples=0"])
    with caplog.at_level("WARNING", logger="steelscan.train"):
        run = fit(cfg, progress=False)
    assert "2 label problem(s) skipped or fixed (1 empty_box, 1 label_without_image)" in caplog.text
    assert json.loads((run / "data.json").read_text())["problems"] == {"empty_box": 1, "label_without_image": 1}
    split = json.loads((run / "split.json").read_text())
    assert len(split["train"]) == 8 and "IMAGES/crazing_1.jpg" in split["train"]  # kept, defect-free
    assert json.loads((run / "metrics.json").read_text())["n_images"] == 3
    with pytest.raises(DataError, match="crazing_1.jpg: no box in its label"):
        fit(cfg.model_copy(update={"data": cfg.data.model_copy(update={"empty_annotations": "error"})}),
            progress=False)


# --------------------------------------------------------------------------------------- engine + CLI


@pytest.fixture(scope="module")
def det_run(synth, tmp_path_factory) -> Path:
    det, clean = synth
    out = tmp_path_factory.mktemp("runs")
    argv = ["train", str(REPO / "configs" / "neu_det_tiny.yaml"), "--set", f"data.root={det}",
            "--set", f"data.clean_root={clean}", "--set", "augment.defect_blackout=0.5", "--set", f"out_dir={out}",
            "--set", "detector.coordconv=true", "--set", "train.threads=1"]
    assert main(argv) == 0
    (run,) = out.iterdir()
    return run


def test_fit_writes_a_detection_run_folder(det_run):
    for name in ("config.yaml", "split.json", "metrics.json", "pr_curves.png", "samples.png", "curves.png", "model.pt"):
        assert (det_run / name).is_file(), name
    for name in ("pr_curves.png", "samples.png"):
        assert cv2.imread(str(det_run / name)).shape[0] > 100
    m = json.loads((det_run / "metrics.json").read_text())
    clean = json.loads((det_run / "split.json").read_text())["clean_images"]  # names of the clean images per side
    assert len(clean["train"]) + len(clean["val"]) == 3
    n_clean_val = len(clean["val"])
    assert m["task"] == "detection" and m["n_images"] == 3 + n_clean_val
    for key in ("map50", "map50_95", "per_class_ap50", "ms_per_image", "history"):
        assert key in m
    assert set(m["per_class_ap50"]) == {"crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches"}
    assert m["per_class_ap50"]["inclusion"] is None  # no truth of that class: excluded, written as null
    model, meta = load_checkpoint(det_run)
    assert meta.task == "detection" and meta.label_offset == 1 and meta.class_names[0] == "crazing"
    assert meta.model_kwargs["coordconv"] is True and meta.model_kwargs["pretrained"] is False
    assert 0 <= meta.score_threshold <= 1 and meta.mean == 0.45
    assert load_config(det_run / "config.yaml").task == "detection"


def test_cli_detect_and_evaluate(det_run, synth, tmp_path, capsys):
    det, _ = synth
    out_json, draw = tmp_path / "det.json", tmp_path / "drawn"
    (tmp_path / "notes.jpg").write_text("not an image")
    (tmp_path / "crazing_4.jpg").write_bytes((det / "IMAGES" / "crazing_4.jpg").read_bytes())
    assert main(["detect", str(tmp_path), "--model", str(det_run), "--score", "0", "--draw", str(draw),
                 "--json", str(out_json)]) == 0
    res = json.loads(out_json.read_text())
    assert [Path(p["path"]).name for p in res["predictions"]] == ["crazing_4.jpg"]
    assert [Path(s["path"]).name for s in res["skipped"]] == ["notes.jpg"] and res["score_threshold"] == 0
    for d in res["predictions"][0]["detections"]:
        assert d["class"] in ("crazing", "inclusion", "patches", "pitted_surface", "rolled-in_scale", "scratches")
        assert len(d["box"]) == 4 and 0 <= d["score"] <= 1
    assert (draw / "crazing_4.png").is_file()
    assert "crazing_4.jpg" in capsys.readouterr().out
    assert main(["detect", "--help"]) == 0 and "--score" in capsys.readouterr().out

    ev = tmp_path / "eval.json"
    assert main(["evaluate", str(det_run), "--data", str(det), "--split", "val", "--json", str(ev)]) == 0
    res = json.loads(ev.read_text())
    assert res["task"] == "detection" and res["n_images"] == 3 and res["ms_per_image"] > 0
    for key in ("map50", "map50_95", "per_class_ap50"):
        assert key in res
    assert main(["detect", str(det / "IMAGES"), "--model", str(det_run), "--draw", str(ev)]) == 2
    assert "--draw expects a folder" in capsys.readouterr().err


def test_task_and_model_must_agree(synth, tmp_path):
    det, _ = synth
    with pytest.raises(SteelscanError, match="'mobilenetv3_small' is a classification model but task is detection"):
        fit(load_config(None, [f"data.root={det}", "model.name=mobilenetv3_small", f"out_dir={tmp_path}"]))
    with pytest.raises(SteelscanError, match="task is classification but .* is neu-det data, a detection layout"):
        fit(load_config(None, [f"data.root={det}", "task=classification", f"out_dir={tmp_path}"]))
    from tests.layouts import make_folders

    folders = make_folders(tmp_path / "folders")
    with pytest.raises(SteelscanError, match="is a detection model but task is classification"):
        fit(load_config(None, [f"data.root={folders}", "model.name=frcnn_resnet50", f"out_dir={tmp_path / 'runs'}"]))
    with pytest.raises(SteelscanError, match="data.root is not set"):
        fit(load_config(None, ["task=detection", "model.name=frcnn_resnet50", f"out_dir={tmp_path}"]))
    assert not (tmp_path / "runs").exists()  # refused before a run folder was made


def test_real_neu_det_split():
    data = read_data(shared_data("neu-det"))
    assert data.format == "neu-det" and not data.problems
    split = split_items(data, val_remainders=(4,))
    assert len(split.train) + len(split.val) == 1440 and not split.test
    assert all(int(Path(it.name).stem.rsplit("_", 1)[1]) % 5 == 4 for it in split.val)
    assert sum(len(it.boxes) for it in split.train + split.val) == 3317
