"""Losses as pure functions on tensors.

Shape convention (multi-label losses: bce, weighted_bce, focal, dice, bce_dice):
    logits and targets are both [N, C, ...]: N samples, C classes on dim 1, then any spatial dims
    (segmentation: [N, C, H, W]; multi-label classification: [N, C]). Every loss takes *logits*
    (no sigmoid applied). Targets are {0, 1} (soft labels in [0, 1] also work for the BCE family);
    bool or integer targets are cast to the logits' dtype.

Single-label classification (softmax_focal): logits [N, K], target [N] of integer class indices.

`reduction` is one of "mean", "sum", "none". For the element-wise losses (bce, weighted_bce, focal)
"mean" is the mean over every element of [N, C, ...], as torch does; in particular weighted_bce
divides by the element count, not by the sum of weights. Dice and bce_dice are per (sample, class)
pair: "none" returns [N, C] (or [C] with per_image=False) and "mean"/"sum" reduce that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torchvision.ops import sigmoid_focal_loss

from steelscan.core.errors import SteelscanError

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS = ("mean", "sum", "none")
WeightLike = Sequence[float] | torch.Tensor

__all__ = ["bce", "weighted_bce", "focal", "dice", "bce_dice", "softmax_focal", "REDUCTIONS"]


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise SteelscanError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_pair(logits: torch.Tensor, targets: torch.Tensor, reduction: str) -> torch.Tensor:
    """Validate a multi-label (logits, targets) pair; return targets in the logits' dtype."""
    check_reduction(reduction)
    if not isinstance(logits, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise SteelscanError(
            f"logits and targets must be torch tensors, got {type(logits).__name__} and {type(targets).__name__}"
        )
    if not logits.is_floating_point():
        raise SteelscanError(f"logits must be a floating-point tensor, got dtype {logits.dtype}")
    if logits.dim() < 2:
        raise SteelscanError(f"logits must be [N, C, ...] (at least 2 dims), got shape {tuple(logits.shape)}")
    if targets.shape != logits.shape:
        raise SteelscanError(
            f"targets must have the logits' shape {tuple(logits.shape)} ([N, C, ...]), got {tuple(targets.shape)}"
        )
    return targets.to(logits.dtype)


def _class_weights(weight: WeightLike, num_classes: int, like: torch.Tensor, name: str) -> torch.Tensor:
    """A 1-D tensor of one finite, non-negative weight per class, on `like`'s device and dtype."""
    w = torch.as_tensor(weight, dtype=like.dtype, device=like.device)
    if w.dim() != 1 or w.numel() != num_classes:
        raise SteelscanError(f"{name} must hold one weight per class: shape ({num_classes},), got {tuple(w.shape)}")
    if not torch.isfinite(w).all() or (w < 0).any():
        raise SteelscanError(f"{name} must be finite and >= 0, got {w.tolist()}")
    return w


def bce(logits: torch.Tensor, targets: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
    """Binary cross-entropy on logits, element-wise (natural log)."""
    t = _check_pair(logits, targets, reduction)
    return F.binary_cross_entropy_with_logits(logits, t, reduction=reduction)


def weighted_bce(
    logits: torch.Tensor, targets: torch.Tensor, pos_weight: WeightLike, reduction: Reduction = "mean"
) -> torch.Tensor:
    """BCE whose positive term of class c is multiplied by pos_weight[c] (torch's pos_weight semantics).

    loss = -(w_c * y * log(sigmoid(x)) + (1 - y) * log(1 - sigmoid(x))); negatives keep weight 1,
    and "mean" divides by the number of elements (not by the sum of weights).
    """
    t = _check_pair(logits, targets, reduction)
    w = _class_weights(pos_weight, logits.shape[1], logits, "pos_weight")
    # torch broadcasts pos_weight against the *last* dim; reshape so it lands on the class dim (1).
    w = w.view(-1, *([1] * (logits.dim() - 2)))
    return F.binary_cross_entropy_with_logits(logits, t, pos_weight=w, reduction=reduction)


def focal(
    logits: torch.Tensor,
    targets: torch.Tensor,
    alpha: float | None = 0.25,
    gamma: float = 2.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Sigmoid focal loss (Lin et al. 2017), exactly torchvision.ops.sigmoid_focal_loss.

    loss = -alpha_t * (1 - p_t)**gamma * log(p_t), where p_t = p for positives and 1 - p for negatives,
    and alpha_t = alpha for positives, 1 - alpha for negatives. alpha=None drops the alpha_t factor.
    """
    t = _check_pair(logits, targets, reduction)
    if alpha is not None and not 0.0 <= alpha <= 1.0:
        raise SteelscanError(f"alpha must be in [0, 1] or None, got {alpha}")
    if gamma < 0:
        raise SteelscanError(f"gamma must be >= 0, got {gamma}")
    tv_alpha = -1.0 if alpha is None else float(alpha)  # torchvision's "no alpha" is -1
    return sigmoid_focal_loss(logits, t, alpha=tv_alpha, gamma=gamma, reduction=reduction)


def _pair_dims(x: torch.Tensor, per_image: bool) -> tuple[int, ...]:
    """Dims summed to get one value per (sample, class) pair ([N, C]) or per class ([C])."""
    spatial = tuple(range(2, x.dim()))
    return spatial if per_image else (0, *spatial)


def _sum(x: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    # x.sum(dim=()) would reduce *everything*; with no dims to sum there is nothing to do.
    return x.sum(dim=dims) if dims else x


def dice(
    logits: torch.Tensor,
    targets: torch.Tensor,
    smooth: float = 1.0,
    per_image: bool = True,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Soft Dice loss, 1 - (2 * sum(p * y) + smooth) / (sum(p) + sum(y) + smooth), with p = sigmoid(logits).

    Sums run over the spatial dims of each (sample, class) pair (per_image=True, the Kaggle Severstal
    metric's unit), or over batch and spatial dims per class (per_image=False, steadier on small batches).
    The smooth term (default 1, i.e. one pixel) keeps the ratio defined and makes an empty target with an
    empty prediction score Dice 1, loss 0; an empty target with predicted mass m scores loss m / (m + smooth),
    which tends to 1. It is negligible on large masks. With smooth=0 an all-empty pair gives loss 1 (the
    denominator is clamped to avoid 0/0), so keep smooth > 0 unless you mean that.
    """
    t = _check_pair(logits, targets, reduction)
    if smooth < 0:
        raise SteelscanError(f"smooth must be >= 0, got {smooth}")
    p = torch.sigmoid(logits)
    dims = _pair_dims(p, per_image)
    inter = _sum(p * t, dims)
    card = _sum(p, dims) + _sum(t, dims)
    score = (2.0 * inter + smooth) / (card + smooth).clamp_min(torch.finfo(p.dtype).tiny)
    return _reduce(1.0 - score, reduction)


def bce_dice(
    logits: torch.Tensor,
    targets: torch.Tensor,
    bce_weight: float = 0.75,
    dice_weight: float = 0.25,
    pos_weight: WeightLike | None = None,
    smooth: float = 1.0,
    per_image: bool = True,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """bce_weight * BCE + dice_weight * Dice, both on logits; BCE is weighted when pos_weight is given.

    Computed per (sample, class) pair (per class with per_image=False): the BCE term is the mean over
    that pair's pixels. Every pair has the same pixel count, so "mean" equals
    bce_weight * bce(mean) + dice_weight * dice(mean).
    """
    t = _check_pair(logits, targets, reduction)
    if bce_weight < 0 or dice_weight < 0:
        raise SteelscanError(f"bce_weight and dice_weight must be >= 0, got {bce_weight} and {dice_weight}")
    if pos_weight is None:
        elementwise = bce(logits, t, reduction="none")
    else:
        elementwise = weighted_bce(logits, t, pos_weight, reduction="none")
    dims = _pair_dims(logits, per_image)
    bce_pair = elementwise.mean(dim=dims) if dims else elementwise
    dice_pair = dice(logits, t, smooth=smooth, per_image=per_image, reduction="none")
    return _reduce(bce_weight * bce_pair + dice_weight * dice_pair, reduction)


def softmax_focal(
    logits: torch.Tensor,
    target: torch.Tensor,
    alpha: float | WeightLike | None = None,
    gamma: float = 2.0,
    reduction: Reduction = "mean",
) -> torch.Tensor:
    """Focal loss for single-label classification: -alpha[y] * (1 - p_y)**gamma * log(p_y), p = softmax.

    logits [N, K]; target [N] integer class indices in [0, K). alpha: None (no weighting), a float (a
    plain scale) or one weight per class. gamma=0 with alpha=None is exactly cross-entropy. Unlike
    F.cross_entropy(weight=...), "mean" is the plain mean over the N samples (not divided by the
    sum of the selected weights), as in the sigmoid focal loss.
    """
    check_reduction(reduction)
    if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise SteelscanError(
            f"logits and target must be torch tensors, got {type(logits).__name__} and {type(target).__name__}"
        )
    if logits.dim() != 2 or not logits.is_floating_point():
        raise SteelscanError(f"logits must be a float tensor [N, K], got {tuple(logits.shape)} {logits.dtype}")
    n, k = logits.shape
    if target.shape != (n,) or target.is_floating_point() or target.dtype == torch.bool:
        raise SteelscanError(
            f"target must be an integer tensor of shape ({n},), got {tuple(target.shape)} {target.dtype}"
        )
    if n and (target.min() < 0 or target.max() >= k):
        lo, hi = int(target.min()), int(target.max())
        raise SteelscanError(f"target class indices must be in [0, {k}), got values in [{lo}, {hi}]")
    if gamma < 0:
        raise SteelscanError(f"gamma must be >= 0, got {gamma}")
    idx = target.long().unsqueeze(1)
    log_pt = F.log_softmax(logits, dim=1).gather(1, idx).squeeze(1)
    loss = -((1.0 - log_pt.exp()) ** gamma) * log_pt
    if alpha is not None:
        if isinstance(alpha, (int, float)):
            loss = loss * float(alpha)
        else:
            loss = loss * _class_weights(alpha, k, logits, "alpha")[target.long()]
    return _reduce(loss, reduction)
