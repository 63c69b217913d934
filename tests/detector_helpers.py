"""A tiny untrained detector checkpoint: every step of the station's detector path runs on it in seconds
(untrained, it still puts boxes on every tile)."""

from __future__ import annotations

from pathlib import Path

SMALL = {"min_size": 64, "max_size": 64, "fpn_channels": 32, "representation_size": 64,
         "rpn_pre_nms_top_n_test": 50, "rpn_post_nms_top_n_test": 20, "box_detections_per_img": 6}
CLASSES = ("scratch", "pits")


FCOS_SMALL = {"min_size": 64, "max_size": 64, "fpn_channels": 32, "head_convs": 1, "box_detections_per_img": 6}


def tiny_detector(folder: Path, name: str = "det.pt", family: str = "frcnn", classes: tuple = CLASSES) -> Path:
    """`family`: frcnn (Faster R-CNN) or fcos (one-stage)."""
    import torch

    from steelscan.core.meta import ModelMeta
    from steelscan.engine.runs import save_checkpoint
    from steelscan.models import create_model

    torch.manual_seed(0)
    model_name = f"{family}_mobilenetv3_large"
    kwargs = {**(SMALL if family == "frcnn" else FCOS_SMALL), "num_classes": len(classes) + 1, "in_chans": 1,
              "pretrained": False}
    model = create_model(model_name, **kwargs).eval()
    meta = ModelMeta(task="detection", model=model_name, model_kwargs=kwargs, class_names=tuple(classes),
                     input_size=(64, 64), label_offset=1, score_threshold=0.0)
    folder.mkdir(parents=True, exist_ok=True)
    save_checkpoint(folder / name, model, meta)
    return folder / name
