"""FCOS (one-stage, anchor-free) on timm backbones: the fast detector family for a 2-core CPU.

Same interface as the Faster R-CNN of `steelscan.models.detector` (torchvision's detection API): a list of
float32 [C, H, W] images in [0, 1] in, losses in training and `[{"boxes", "scores", "labels"}]` in eval, model
label = class index + LABEL_OFFSET, so every predictor, export and station path takes either family.

Why FCOS: one dense head instead of an RPN, RoI sampling and a box head per proposal; ~3x fewer training
seconds per image than the Faster R-CNN on the same backbone. torchvision's FCOS (focal loss, GIoU, centre-ness,
centre sampling) is used as is; only its backbone and head width are ours:
- levels P3..P5 of the backbone (strides 8, 16, 32) + a max-pool P6 (stride 64); no stride-4 level, whose
  dense head would cost more than the whole backbone;
- one anchor of size = stride per level: FCOS assigns a box to the level whose [4, 8] x stride range holds
  its largest side distance, and P6 takes everything larger;
- `head_convs` 3x3 convs per branch (torchvision's 4 at 256 channels is ~10 GFLOP per 320 px image).
"""

from __future__ import annotations

from typing import Sequence

import torch.nn as nn
from torchvision.models.detection import FCOS
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.fcos import FCOSHead

from steelscan.core.errors import SteelscanError
from steelscan.models._registry import ModelDefaults, register_model
from steelscan.models.classifier import BACKBONES, NORMALISE
from steelscan.models.detector import NUM_CLASSES, TimmFPN, resize_sizes

FCOS_BACKBONES = ("efficientnet_lite0", "mobilenetv3_large", "resnet18")
PREFIX = "fcos_"
OUT_INDICES = (2, 3, 4)  # strides 8, 16, 32; the FPN adds a max-pool level at 64
STRIDES = (8, 16, 32, 64)
MIN_INPUT = 64  # the smallest short side after resizing: the stride-64 level needs one cell
GROUPS = 16  # GroupNorm groups of the head (torchvision's default 32 needs >= 32 channels)


def build_fcos(
    backbone: str, num_classes: int = NUM_CLASSES, in_chans: int = 1, pretrained: bool = False, dcn: bool = False,
    spp: bool = False, min_size: int | Sequence[int] = 320, max_size: int = 512, fpn_channels: int = 96,
    head_convs: int = 2, center_sampling_radius: float = 1.5, topk_candidates: int = 300,
    box_detections_per_img: int = 50, box_score_thresh: float = 0.05, box_nms_thresh: float = 0.5,
    frozen_stages: int = 0, freeze_bn: bool = False,
) -> FCOS:
    """An FCOS on a timm backbone + FPN; see the module docstring."""
    if backbone not in FCOS_BACKBONES:
        raise SteelscanError(f"unknown FCOS backbone {backbone!r}; expected one of {', '.join(FCOS_BACKBONES)}")
    sizes = resize_sizes(min_size, max_size, MIN_INPUT)
    if fpn_channels % GROUPS:
        raise SteelscanError(f"detector.fpn_channels of an FCOS must be a multiple of {GROUPS}, got {fpn_channels}")
    if head_convs < 1:
        raise SteelscanError(f"detector.head_convs: expected >= 1, got {head_convs}")
    mean, std = NORMALISE[backbone]
    body = TimmFPN(backbone, in_chans, fpn_channels, pretrained, dcn, spp, frozen_stages, freeze_bn, OUT_INDICES)
    anchors = AnchorGenerator(tuple((s,) for s in STRIDES), ((1.0,),) * len(STRIDES))
    head = FCOSHead(fpn_channels, 1, num_classes, num_convs=head_convs)
    for branch in (head.classification_head.conv, head.regression_head.conv):
        for i, m in enumerate(branch):
            if isinstance(m, nn.GroupNorm):
                branch[i] = nn.GroupNorm(GROUPS, fpn_channels)
    return FCOS(body, num_classes, min_size=sizes, max_size=max_size, image_mean=[mean] * in_chans,
                image_std=[std] * in_chans, anchor_generator=anchors, head=head,
                center_sampling_radius=center_sampling_radius, score_thresh=box_score_thresh,
                nms_thresh=box_nms_thresh, detections_per_img=box_detections_per_img, topk_candidates=topk_candidates)


def _register(backbone: str) -> None:
    timm_name, has_weights = BACKBONES[backbone]
    mean, std = NORMALISE[backbone]
    weights = " (ImageNet weights offline)" if has_weights else ""

    @register_model(PREFIX + backbone, task="detection", defaults=ModelDefaults(mean=mean, std=std, offline_weights=has_weights, min_input=MIN_INPUT),
                    description=f"FCOS (one-stage, anchor-free) + FPN on timm {timm_name}{weights}")
    def _build(**kwargs) -> nn.Module:
        return build_fcos(backbone, **kwargs)


for _backbone in FCOS_BACKBONES:
    _register(_backbone)
