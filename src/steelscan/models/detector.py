"""Faster R-CNN + FPN on timm backbones for NEU-DET: the detector family of Wang 2021 and its ablation flags.

Shapes and labels, once for the whole detection path:
- Input: a list of float32 [C, H, W] images in [0, 1] (C = in_chans, 1 for grey). The model's own
  `GeneralizedRCNNTransform` normalises them by the grey mean/std and resizes so the short side is
  `min_size` (capped by `max_size` on the long side); 200 px NEU images stay 200 px by default, where
  torchvision's default would upscale them to 800 px at 16x the compute for no new detail.
- Training: `model(images, targets)`, targets `[{"boxes": float32 [M, 4] xyxy pixels, "labels": int64 [M]}]`;
  M = 0 (a clean image, boxes of shape [0, 4]) is valid. Returns a dict of four losses.
- Eval: `model(images)` -> `[{"boxes": [D, 4], "scores": [D], "labels": [D]}]` in input-image pixels.
- Labels: torchvision reserves 0 for background, so a model label is the NEU_CLASSES index + LABEL_OFFSET
  (1) and num_classes = 7. Everything outside the model speaks NEU_CLASSES indices (`to_neu_labels`).

Flags (Wang 2021, Table 6): `dcn` (DCNv2 in the last backbone stage), `spp` (SPP on the top backbone map,
before the FPN), `coordconv` (coordinate channels before the first conv of the RPN head and of the box head).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Sequence

import timm
import torch
import torch.nn as nn
from timm.layers import freeze_batch_norm_2d
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor
from torchvision.models.detection.rpn import RPNHead
from torchvision.ops import FeaturePyramidNetwork, MultiScaleRoIAlign
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

from steelscan.data.classes import DETECTION_LABEL_OFFSET, NEU_CLASSES
from steelscan.core.errors import SteelscanError
from steelscan.models.classifier import BACKBONES, NORMALISE, efficientnet_lite0_state_dict, last_stage
from steelscan.models.layers import SPP, CoordConv2d, CoordRoIPool, convert_to_dcn
from steelscan.models._registry import ModelDefaults, register_model

LABEL_OFFSET = DETECTION_LABEL_OFFSET  # model label = NEU_CLASSES index + 1; 0 is torchvision's background
NUM_CLASSES = len(NEU_CLASSES) + LABEL_OFFSET
DETECTOR_BACKBONES = ("resnet50", "resnet50d", "mobilenetv3_large", "efficientnet_lite0")
PREFIX = "frcnn_"
ROI_SIZE = 7
FPN_LEVELS = 5  # strides 4, 8, 16, 32 from the backbone, 64 from a max-pool


def detector_name(backbone: str) -> str:
    return PREFIX + backbone


def detector_normalise(name: str) -> tuple[float, float]:
    """Grey (mean, std) on [0, 1] pixels for a registered detector name or a backbone name."""
    return NORMALISE[name.removeprefix(PREFIX)]


def to_neu_labels(labels: torch.Tensor) -> torch.Tensor:
    return labels - LABEL_OFFSET


def to_model_labels(labels: torch.Tensor) -> torch.Tensor:
    return labels + LABEL_OFFSET


def _load_lite0(body: nn.Module, in_chans: int) -> None:
    state = efficientnet_lite0_state_dict(in_chans)
    # features_only drops the classifier head (conv_head, bn2, classifier); every other tensor must land.
    missing, unexpected = body.load_state_dict(state, strict=False)
    head = ("conv_head.", "bn2.", "classifier.")
    if missing or any(not k.startswith(head) for k in unexpected):
        raise RuntimeError(f"lite0 weights did not fit the feature extractor: missing {missing}, unexpected {unexpected}")


def _freeze_leading(body: nn.Module, stages: int) -> None:
    """Freeze the stem and the stages up to stride 2 ** (stages + 1) (0 = train everything; 1 = up to stride 4),
    whichever levels the body outputs."""
    info = body.feature_info
    modules = info.get("module", list(range(len(info.info))))  # every level, stride 2 first
    boundary = None if stages + 1 >= len(modules) else modules[stages + 1] + "."
    for name, p in body.named_parameters():
        if boundary is not None and name.startswith(boundary):
            break
        p.requires_grad_(False)


class TimmFPN(nn.Module):
    """timm `features_only` body (strides 4..32 by default) [+ SPP on its top map] + torchvision FPN (+ a max-pool
    level at twice the top stride).

    [N, C, H, W] -> OrderedDict '0', '1', ..., 'pool' of [N, out_channels, H/s, W/s]. `out_channels` is read by
    torchvision's detectors. `out_indices`: the body's levels (1 = stride 4 ... 4 = stride 32).
    """

    def __init__(self, backbone: str, in_chans: int = 1, out_channels: int = 128, pretrained: bool = False,
                 dcn: bool = False, spp: bool = False, frozen_stages: int = 0, freeze_bn: bool = False,
                 out_indices: tuple[int, ...] = (1, 2, 3, 4)):
        super().__init__()
        timm_name, has_weights = BACKBONES[backbone]
        if pretrained and not has_weights:
            offline = [b for b in DETECTOR_BACKBONES if BACKBONES[b][1]]
            raise SteelscanError(f"no offline ImageNet weights for {backbone}; pretrained works for "
                                 f"{', '.join(offline)} (else model.pretrained: false)")
        body = timm.create_model(timm_name, features_only=True, out_indices=out_indices, in_chans=in_chans,
                                 pretrained=False)
        if pretrained:
            _load_lite0(body, in_chans)
        if dcn:
            convert_to_dcn(last_stage(body))
        if freeze_bn:  # small CPU batches make BatchNorm statistics noise; pretrained ones are better kept
            body = freeze_batch_norm_2d(body)
        if frozen_stages:
            _freeze_leading(body, frozen_stages)
        self.body = body
        channels = list(body.feature_info.channels())
        self.spp = SPP(channels[-1], min(channels[-1], 512)) if spp else None
        if self.spp is not None:
            channels[-1] = self.spp.out_channels
        self.fpn = FeaturePyramidNetwork(channels, out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = self.body(x)
        if self.spp is not None:
            feats[-1] = self.spp(feats[-1])
        return self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))


def resize_sizes(min_size: int | Sequence[int], max_size: int, smallest: int) -> tuple[int, ...]:
    """The short sides torchvision's resize picks from (the last one at test time), checked against the
    model's smallest input and `max_size`."""
    sizes = (min_size,) if isinstance(min_size, int) else tuple(int(s) for s in min_size)
    if not sizes or min(sizes) < smallest or max_size < max(sizes):
        raise SteelscanError(f"detector sizes: expected {smallest} <= min_size <= max_size, got min_size "
                             f"{min_size}, max_size {max_size}")
    return sizes


def build_detector(
    backbone: str, num_classes: int = NUM_CLASSES, in_chans: int = 1, pretrained: bool = False, dcn: bool = False,
    spp: bool = False, coordconv: bool = False, min_size: int | Sequence[int] = 200, max_size: int = 256,
    fpn_channels: int = 128, representation_size: int = 512,
    anchor_sizes: Sequence[int] = (16, 32, 64, 128, 256), aspect_ratios: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
    rpn_pre_nms_top_n_train: int = 1000, rpn_post_nms_top_n_train: int = 500,
    rpn_pre_nms_top_n_test: int = 500, rpn_post_nms_top_n_test: int = 200,
    rpn_batch_size_per_image: int = 256, box_batch_size_per_image: int = 256,
    box_detections_per_img: int = 50, box_score_thresh: float = 0.05, box_nms_thresh: float = 0.5,
    frozen_stages: int = 0, freeze_bn: bool = False,
) -> FasterRCNN:
    """A Faster R-CNN + FPN on a timm backbone; see the module docstring for shapes, labels and flags.

    `anchor_sizes` gives one anchor size per FPN level (strides 4..64), in pixels of the resized image;
    NEU boxes run from ~10 px to the whole 200 px image, and crazing/scratches are long and thin,
    hence the 1:4..4:1 ratios.
    """
    if backbone not in DETECTOR_BACKBONES:
        raise SteelscanError(f"unknown detector backbone {backbone!r}; expected one of {', '.join(DETECTOR_BACKBONES)}")
    sizes = resize_sizes(min_size, max_size, 32)
    if len(anchor_sizes) != FPN_LEVELS:
        raise SteelscanError(f"anchor_sizes: expected one size per FPN level ({FPN_LEVELS}), got {list(anchor_sizes)}")
    mean, std = NORMALISE[backbone]
    body = TimmFPN(backbone, in_chans, fpn_channels, pretrained, dcn, spp, frozen_stages, freeze_bn)
    anchors = AnchorGenerator(tuple((int(s),) for s in anchor_sizes), (tuple(float(r) for r in aspect_ratios),) * FPN_LEVELS)
    rpn_head = RPNHead(fpn_channels, anchors.num_anchors_per_location()[0])
    roi_pool = MultiScaleRoIAlign(["0", "1", "2", "3"], ROI_SIZE, sampling_ratio=2)
    if coordconv:
        rpn_head.conv[0][0] = CoordConv2d(rpn_head.conv[0][0])
    head_in = fpn_channels + (2 if coordconv else 0)
    # One conv + one FC: the conv is where CoordConv acts, and the head stays ~3 M parameters where
    # torchvision's two 1024-wide FCs on 256x7x7 are 14 M.
    box_head = FastRCNNConvFCHead((head_in, ROI_SIZE, ROI_SIZE), [fpn_channels], [representation_size])
    model = FasterRCNN(
        body, num_classes=None, min_size=sizes, max_size=max_size, image_mean=[mean] * in_chans,
        image_std=[std] * in_chans, rpn_anchor_generator=anchors, rpn_head=rpn_head,
        rpn_pre_nms_top_n_train=rpn_pre_nms_top_n_train, rpn_post_nms_top_n_train=rpn_post_nms_top_n_train,
        rpn_pre_nms_top_n_test=rpn_pre_nms_top_n_test, rpn_post_nms_top_n_test=rpn_post_nms_top_n_test,
        rpn_batch_size_per_image=rpn_batch_size_per_image, box_roi_pool=roi_pool, box_head=box_head,
        box_predictor=FastRCNNPredictor(representation_size, num_classes),
        box_batch_size_per_image=box_batch_size_per_image, box_detections_per_img=box_detections_per_img,
        box_score_thresh=box_score_thresh, box_nms_thresh=box_nms_thresh,
    )
    if coordconv:  # set after construction: FasterRCNN type-checks the pooler it is given
        model.roi_heads.box_roi_pool = CoordRoIPool(roi_pool, ROI_SIZE)
    return model


def _register(backbone: str) -> None:
    timm_name, has_weights = BACKBONES[backbone]

    weights = " (ImageNet weights offline)" if has_weights else ""

    mean, std = NORMALISE[backbone]
    defaults = ModelDefaults(mean=mean, std=std, offline_weights=has_weights)

    @register_model(detector_name(backbone), task="detection", defaults=defaults,
                    description=f"Faster R-CNN + FPN on timm {timm_name}{weights}")
    def _build(**kwargs) -> nn.Module:
        return build_detector(backbone, **kwargs)


for _backbone in DETECTOR_BACKBONES:
    _register(_backbone)
