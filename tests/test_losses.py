"""Losses: the seed's hand-worked numbers, agreement with torch/torchvision, gradients, the factory."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from steelscan.core.errors import SteelscanError
from steelscan.losses import (
    BCEDiceLoss,
    BCELoss,
    DiceLoss,
    FocalLoss,
    SoftmaxFocalLoss,
    WeightedBCELoss,
    bce,
    bce_dice,
    create_loss,
    dice,
    focal,
    list_losses,
    softmax_focal,
    weighted_bce,
)

# ---------------------------------------------------------------------------------------------------
# Seed example: 4 classes x 6 pixels = 24 elements. Listed (class, y, p); every other element has
# y = 0 and p = 1e-7, contributing ~1e-7 each (18 of them: < 1e-7 on the mean), far below the 4th
# decimal. The nearest rounding boundary is weighted BCE 0.346954 vs 0.34695: a 4e-6 margin, still
# 40x the float32 error. Hand derivation (natural log, mean over all 24 elements):
#   BCE  sample 1: -[ln .9 + ln .1 + ln .6 + ln .2 + ln .8 + ln .7] / 24
#                = (0.1054 + 2.3026 + 0.5108 + 1.6094 + 0.2231 + 0.3567) / 24 = 5.1080 / 24 = 0.2128
#   weighted BCE, pos_weight [1, 3, 1, 1]: only the positive of class 2, (1, 0.2), is weighted:
#                (5.1080 + 2 * 1.6094) / 24 = 8.3269 / 24 = 0.3470. Torch's pos_weight semantics:
#                divide by the 24 elements, not by the sum of weights (that would give 8.3269/27.2).
#   focal (alpha .75 for positives, .25 for negatives, gamma 2; Lin et al. 2017, torchvision):
#                .75 * (.01*.1054 + .81*2.3026 + .04*.2231 + .64*1.6094)
#              + .25 * (.16*.5108 + .09*.3567) = .75*2.9051 + .25*.1138 = 2.2073 / 24 = 0.0920
#                (the swapped convention, alpha for negatives, gives 0.0338; no alpha gives 0.1258)
#   BCE  sample 2: -[ln .8 + ln .9 + ln .7 + ln .8 + ln .8] / 24 = 1.1315 / 24 = 0.0471
#   focal sample 2: .75*(.04*.2231*2 + .01*.1054 + .09*.3567) + .25*.04*.2231 = .04049/24 = 0.0017
# All five seed numbers are reproduced by the standard definitions; nothing is fudged.
# ---------------------------------------------------------------------------------------------------
SAMPLE_1 = [(0, 1, 0.9), (0, 1, 0.1), (1, 0, 0.4), (1, 1, 0.2), (2, 1, 0.8), (3, 0, 0.3)]
SAMPLE_2 = [(0, 1, 0.8), (0, 1, 0.9), (0, 1, 0.7), (0, 0, 0.2), (0, 1, 0.8)]


def seed_tensors(pairs, dtype=torch.float32):
    """Logits and targets [1, 4, 6] from (class index, y, p) triples; unlisted elements y=0, p=1e-7."""
    y = torch.zeros(1, 4, 6, dtype=dtype)
    p = torch.full((1, 4, 6), 1e-7, dtype=dtype)
    used = [0] * 4
    for c, yy, pp in pairs:
        y[0, c, used[c]], p[0, c, used[c]] = yy, pp
        used[c] += 1
    return torch.logit(p), y


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize(
    ("pairs", "fn", "expected"),
    [
        (SAMPLE_1, lambda x, y: bce(x, y), 0.2128),
        (SAMPLE_1, lambda x, y: weighted_bce(x, y, pos_weight=[1, 3, 1, 1]), 0.3470),
        (SAMPLE_1, lambda x, y: focal(x, y, alpha=0.75, gamma=2), 0.0920),
        (SAMPLE_2, lambda x, y: bce(x, y), 0.0471),
        (SAMPLE_2, lambda x, y: focal(x, y, alpha=0.75, gamma=2), 0.0017),
    ],
    ids=["bce1", "wbce1", "focal1", "bce2", "focal2"],
)
def test_seed_examples_to_4_decimals(pairs, fn, expected, dtype):
    x, y = seed_tensors(pairs, dtype)
    value = fn(x, y).item()
    assert round(value, 4) == expected
    assert abs(value - expected) < 5e-5


def test_seed_hand_values_with_the_background_removed():
    # The same numbers from the 6 (5) listed elements alone, divided by 24: the background adds nothing.
    def b(y, p):
        return -math.log(p if y else 1 - p)

    assert round(sum(b(y, p) for _, y, p in SAMPLE_1) / 24, 4) == 0.2128
    assert round(sum(b(y, p) for _, y, p in SAMPLE_2) / 24, 4) == 0.0471


def test_focal_alpha_convention_is_alpha_for_positives():
    x, y = seed_tensors(SAMPLE_1)
    assert round(focal(x, y, alpha=0.25, gamma=2).item(), 4) == 0.0338  # = swapped convention, not the seed
    assert round(focal(x, y, alpha=None, gamma=2).item(), 4) == 0.1258
    # gamma = 0, alpha = None is plain BCE
    torch.testing.assert_close(focal(x, y, alpha=None, gamma=0), bce(x, y))


SHAPES = [(2, 3), (2, 4, 5, 7), (1, 1, 8, 8), (3, 2, 4)]
REDUCTIONS = ["mean", "sum", "none"]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_bce_family_matches_torch_and_torchvision(shape, reduction):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=g) * 3
    y = (torch.rand(shape, generator=g) > 0.6).float()
    torch.testing.assert_close(bce(x, y, reduction), F.binary_cross_entropy_with_logits(x, y, reduction=reduction))
    for alpha, gamma in [(0.25, 2.0), (0.75, 1.0), (None, 2.0)]:
        ref = sigmoid_focal_loss(x, y, alpha=-1 if alpha is None else alpha, gamma=gamma, reduction=reduction)
        torch.testing.assert_close(focal(x, y, alpha, gamma, reduction), ref)
    # weighted BCE against its definition, pos_weight broadcast on the class dim (1), not the last dim
    w = torch.rand(shape[1], generator=g) * 4
    wv = w.view(-1, *([1] * (len(shape) - 2)))
    p = torch.sigmoid(x).double()
    manual = -(wv * y * torch.log(p) + (1 - y) * torch.log(1 - p))
    manual = {"mean": manual.mean(), "sum": manual.sum(), "none": manual}[reduction]
    torch.testing.assert_close(weighted_bce(x, y, w, reduction).double(), manual, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(weighted_bce(x, y, torch.ones(shape[1]), reduction), bce(x, y, reduction))


@pytest.mark.parametrize(
    "loss",
    [
        BCELoss(),
        WeightedBCELoss([1.0, 5.0, 2.0]),
        FocalLoss(0.75, 2.0),
        DiceLoss(),
        DiceLoss(per_image=False),
        BCEDiceLoss(),
        BCEDiceLoss(pos_weight=[1, 2, 3]),
    ],
    ids=lambda m: type(m).__name__,
)
def test_gradients_are_finite_and_nonzero(loss):
    g = torch.Generator().manual_seed(1)
    x = (torch.randn(2, 3, 8, 8, generator=g) * 4).requires_grad_()
    y = (torch.rand(2, 3, 8, 8, generator=g) > 0.7).float()
    y[0, 1] = 0  # include an empty (sample, class) pair
    loss(x, y).backward()
    assert torch.isfinite(x.grad).all()
    assert x.grad.abs().sum() > 0


def test_dice_hand_worked():
    # One pair, 4 pixels, p = (0.8, 0.8, 0.2, 0.2) on truth (1, 1, 0, 0), smooth = 1:
    #   intersection 1.6, sum p 2.0, sum y 2  ->  Dice = (3.2 + 1) / (4 + 1) = 0.84, loss 0.16
    x = torch.logit(torch.tensor([0.8, 0.8, 0.2, 0.2])).view(1, 1, 2, 2)
    y = torch.tensor([1.0, 1, 0, 0]).view(1, 1, 2, 2)
    torch.testing.assert_close(dice(x, y), torch.tensor(0.16))
    # smooth = 0: 3.2 / 4 = 0.8 -> loss 0.2
    torch.testing.assert_close(dice(x, y, smooth=0.0), torch.tensor(0.2))


def test_dice_empty_target_behaviour():
    empty = torch.zeros(1, 1, 4, 4)
    nothing = torch.full((1, 1, 4, 4), -30.0)  # sigmoid ~ 1e-13: an empty prediction
    assert dice(nothing, empty).item() == pytest.approx(0.0, abs=1e-9)  # empty/empty: Dice 1 via smooth
    assert dice(nothing, empty, smooth=0.0).item() == pytest.approx(1.0)  # documented: no smooth -> loss 1
    full = torch.full((1, 1, 4, 4), 30.0)  # predicts 16 pixels on an empty truth: loss 16 / 17
    assert dice(full, empty).item() == pytest.approx(16 / 17)


def test_dice_reductions_and_per_image():
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(3, 2, 5, 5, generator=g), (torch.rand(3, 2, 5, 5, generator=g) > 0.5).float()
    per_pair = dice(x, y, reduction="none")
    assert per_pair.shape == (3, 2)
    torch.testing.assert_close(dice(x, y), per_pair.mean())
    torch.testing.assert_close(dice(x, y, reduction="sum"), per_pair.sum())
    assert dice(x, y, per_image=False, reduction="none").shape == (2,)
    # multi-label classification input [N, C]: per element when per_image, per class otherwise
    assert dice(x[:, :, 0, 0], y[:, :, 0, 0], reduction="none").shape == (3, 2)


def test_bce_dice_is_the_weighted_sum():
    g = torch.Generator().manual_seed(3)
    x, y = torch.randn(2, 4, 6, 6, generator=g), (torch.rand(2, 4, 6, 6, generator=g) > 0.8).float()
    torch.testing.assert_close(bce_dice(x, y), 0.75 * bce(x, y) + 0.25 * dice(x, y))
    w = [1.0, 3.0, 1.0, 2.0]
    torch.testing.assert_close(
        bce_dice(x, y, 0.5, 0.5, pos_weight=w), 0.5 * weighted_bce(x, y, w) + 0.5 * dice(x, y)
    )
    assert bce_dice(x, y, reduction="none").shape == (2, 4)
    expected = 0.75 * bce(x, y) + 0.25 * dice(x, y, per_image=False)
    torch.testing.assert_close(BCEDiceLoss(per_image=False)(x, y), expected)


def test_softmax_focal():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(10, 5, generator=g)
    t = torch.randint(0, 5, (10,), generator=g)
    torch.testing.assert_close(softmax_focal(x, t, gamma=0.0), F.cross_entropy(x, t))
    w = torch.tensor([1.0, 2.0, 0.5, 3.0, 1.0])
    # With gamma 0, "sum" equals weighted CE's sum; "mean" is a plain mean over N (documented).
    torch.testing.assert_close(softmax_focal(x, t, w, 0.0, "sum"), F.cross_entropy(x, t, weight=w, reduction="sum"))
    weighted_ce_sum = F.cross_entropy(x, t, weight=w, reduction="sum")
    torch.testing.assert_close(softmax_focal(x, t, w, 0.0, "mean"), weighted_ce_sum / 10)
    # hand value: one sample, p_y = 0.5 (two equal logits), gamma 2, alpha 0.25 -> 0.25 * 0.25 * ln 2
    one = softmax_focal(torch.zeros(1, 2), torch.tensor([1]), alpha=0.25, gamma=2.0)
    assert one.item() == pytest.approx(0.0625 * math.log(2), rel=1e-6)
    xg = x.clone().requires_grad_()
    SoftmaxFocalLoss(alpha=w.tolist())(xg, t).backward()
    assert torch.isfinite(xg.grad).all() and xg.grad.abs().sum() > 0
    assert softmax_focal(x, t, reduction="none").shape == (10,)


def test_factory_builds_every_name_and_lists_valid_ones():
    assert list_losses() == sorted(
        ["bce", "weighted_bce", "focal", "dice", "bce_dice", "ce", "weighted_ce", "softmax_focal"]
    )
    x, y = torch.randn(2, 3, 4, 4), (torch.rand(2, 3, 4, 4) > 0.5).float()
    for name, kw in [("bce", {}), ("weighted_bce", {"pos_weight": [1, 2, 3]}), ("focal", {"alpha": 0.75}),
                     ("dice", {}), ("bce_dice", {"bce_weight": 0.5, "dice_weight": 0.5})]:  # fmt: skip
        assert torch.isfinite(create_loss(name, **kw)(x, y))
    logits, t = torch.randn(4, 3), torch.tensor([0, 1, 2, 1])
    for name, kw in [("ce", {}), ("weighted_ce", {"weight": [1, 2, 3]}), ("softmax_focal", {"gamma": 2.0})]:
        assert torch.isfinite(create_loss(name, **kw)(logits, t))
    torch.testing.assert_close(
        create_loss("weighted_ce", weight=[1, 2, 3])(logits, t),
        F.cross_entropy(logits, t, weight=torch.tensor([1.0, 2, 3])),
    )
    with pytest.raises(SteelscanError, match="valid names: bce, bce_dice, ce, dice, focal"):
        create_loss("lovasz")
    with pytest.raises(SteelscanError, match="takes parameters"):
        create_loss("focal", alpah=0.5)
    with pytest.raises(SteelscanError, match="takes parameters"):
        create_loss("weighted_bce")  # pos_weight is required


def test_weights_follow_the_module_to_a_device_and_stay_out_of_state_dict():
    loss = WeightedBCELoss([1.0, 2.0]).to(torch.float64)
    assert loss.pos_weight.dtype == torch.float64
    assert "pos_weight" not in loss.state_dict()


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: bce(torch.zeros(2, 3), torch.zeros(2, 4)), r"expected|shape \(2, 3\).*got \(2, 4\)"),
        (lambda: bce(torch.zeros(5), torch.zeros(5)), r"\[N, C, \.\.\.\].*got shape \(5,\)"),
        (lambda: bce(torch.zeros(2, 3), torch.zeros(2, 3), reduction="avg"), "reduction must be one of"),
        (
            lambda: weighted_bce(torch.zeros(2, 3), torch.zeros(2, 3), [1, 2]),
            r"one weight per class: shape \(3,\), got \(2,\)",
        ),
        (lambda: weighted_bce(torch.zeros(2, 2), torch.zeros(2, 2), [1, -2]), ">= 0"),
        (lambda: focal(torch.zeros(2, 3), torch.zeros(2, 3), alpha=1.5), r"alpha must be in \[0, 1\]"),
        (lambda: bce(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 3)), "floating-point"),
        (lambda: dice(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2), smooth=-1), "smooth"),
        (lambda: softmax_focal(torch.zeros(2, 3), torch.tensor([0, 3])), r"in \[0, 3\)"),
        (lambda: softmax_focal(torch.zeros(2, 3), torch.tensor([0.0, 1.0])), "integer tensor"),
        (lambda: softmax_focal(torch.zeros(2, 3), torch.tensor([0, 1]), alpha=[1, 2]), "one weight per class"),
    ],
)
def test_bad_input_raises_with_expected_and_got(call, message):
    with pytest.raises(SteelscanError, match=message):
        call()


def test_integer_and_bool_targets_are_accepted():
    x = torch.randn(2, 2, 3, 3)
    y = torch.rand(2, 2, 3, 3) > 0.5
    torch.testing.assert_close(bce(x, y), bce(x, y.float()))
    torch.testing.assert_close(dice(x, y.to(torch.uint8)), dice(x, y.float()))
