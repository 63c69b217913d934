"""Thin nn.Module wrappers over `steelscan.losses._functional`, and a name -> loss factory.

Shapes are those of the functions (see `_functional`): multi-label losses take logits and targets
[N, C, ...]; the single-label ones (ce, weighted_ce, softmax_focal) take logits [N, K] and target [N].
Per-class weights are non-persistent buffers: they follow `.to(device)` and stay out of state_dict.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from torch import nn

from steelscan.core.errors import SteelscanError
from steelscan.losses import _functional as L

__all__ = [
    "BCELoss",
    "WeightedBCELoss",
    "FocalLoss",
    "DiceLoss",
    "BCEDiceLoss",
    "CELoss",
    "WeightedCELoss",
    "SoftmaxFocalLoss",
    "SegmentationLoss",
    "LOSSES",
    "create_loss",
    "list_losses",
]


def _weights(values: Sequence[float] | torch.Tensor | None, name: str) -> torch.Tensor | None:
    if values is None:
        return None
    w = torch.as_tensor(values, dtype=torch.float32).detach().clone()
    if w.dim() != 1 or w.numel() == 0:
        raise SteelscanError(f"{name} must be a 1-D list with one weight per class, got shape {tuple(w.shape)}")
    return w


class BCELoss(nn.Module):
    """Binary cross-entropy on *logits* (like nn.BCEWithLogitsLoss, unlike nn.BCELoss)."""

    def __init__(self, reduction: L.Reduction = "mean") -> None:
        super().__init__()
        L.check_reduction(reduction)
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return L.bce(logits, targets, self.reduction)


class WeightedBCELoss(nn.Module):
    """BCE on logits with one positive weight per class (dim 1)."""

    pos_weight: torch.Tensor

    def __init__(self, pos_weight: Sequence[float] | torch.Tensor, reduction: L.Reduction = "mean") -> None:
        super().__init__()
        L.check_reduction(reduction)
        self.register_buffer("pos_weight", _weights(pos_weight, "pos_weight"), persistent=False)
        self.reduction = reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return L.weighted_bce(logits, targets, self.pos_weight, self.reduction)


class FocalLoss(nn.Module):
    """Sigmoid focal loss on logits; alpha weighs positives, 1 - alpha negatives (None: no alpha)."""

    def __init__(self, alpha: float | None = 0.25, gamma: float = 2.0, reduction: L.Reduction = "mean") -> None:
        super().__init__()
        L.check_reduction(reduction)
        self.alpha, self.gamma, self.reduction = alpha, gamma, reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return L.focal(logits, targets, self.alpha, self.gamma, self.reduction)


class DiceLoss(nn.Module):
    """Soft Dice loss on logits, per (sample, class) pair by default; see `_functional.dice`."""

    def __init__(self, smooth: float = 1.0, per_image: bool = True, reduction: L.Reduction = "mean") -> None:
        super().__init__()
        L.check_reduction(reduction)
        self.smooth, self.per_image, self.reduction = smooth, per_image, reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return L.dice(logits, targets, self.smooth, self.per_image, self.reduction)


class BCEDiceLoss(nn.Module):
    """bce_weight * (weighted) BCE + dice_weight * soft Dice, on logits."""

    pos_weight: torch.Tensor | None

    def __init__(
        self,
        bce_weight: float = 0.75,
        dice_weight: float = 0.25,
        pos_weight: Sequence[float] | torch.Tensor | None = None,
        smooth: float = 1.0,
        per_image: bool = True,
        reduction: L.Reduction = "mean",
    ) -> None:
        super().__init__()
        L.check_reduction(reduction)
        self.register_buffer("pos_weight", _weights(pos_weight, "pos_weight"), persistent=False)
        self.bce_weight, self.dice_weight = bce_weight, dice_weight
        self.smooth, self.per_image, self.reduction = smooth, per_image, reduction

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return L.bce_dice(
            logits, targets, self.bce_weight, self.dice_weight, self.pos_weight,
            self.smooth, self.per_image, self.reduction,
        )  # fmt: skip


class CELoss(nn.CrossEntropyLoss):
    """nn.CrossEntropyLoss that also takes class weights as a plain list (as a YAML config gives them).

    Note torch's "mean" with weights divides by the sum of the weights of the targets seen.
    """

    def __init__(
        self,
        weight: Sequence[float] | torch.Tensor | None = None,
        label_smoothing: float = 0.0,
        ignore_index: int = -100,
        reduction: L.Reduction = "mean",
    ) -> None:
        L.check_reduction(reduction)
        super().__init__(
            weight=_weights(weight, "weight"), ignore_index=ignore_index,
            reduction=reduction, label_smoothing=label_smoothing,
        )  # fmt: skip


class WeightedCELoss(CELoss):
    """Class-weighted cross-entropy: `weight` (one per class) is required."""

    def __init__(
        self,
        weight: Sequence[float] | torch.Tensor,
        label_smoothing: float = 0.0,
        ignore_index: int = -100,
        reduction: L.Reduction = "mean",
    ) -> None:
        super().__init__(weight, label_smoothing, ignore_index, reduction)


class SoftmaxFocalLoss(nn.Module):
    """Focal loss for single-label classification; alpha None, a float, or one weight per class."""

    alpha: torch.Tensor | None

    def __init__(
        self,
        alpha: float | Sequence[float] | torch.Tensor | None = None,
        gamma: float = 2.0,
        reduction: L.Reduction = "mean",
    ) -> None:
        super().__init__()
        L.check_reduction(reduction)
        self._scalar_alpha = float(alpha) if isinstance(alpha, (int, float)) else None
        self.register_buffer(
            "alpha", None if self._scalar_alpha is not None else _weights(alpha, "alpha"), persistent=False
        )
        self.gamma, self.reduction = gamma, reduction

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        alpha = self._scalar_alpha if self._scalar_alpha is not None else self.alpha
        return L.softmax_focal(logits, target, alpha, self.gamma, self.reduction)


# The names training configs select losses by.
class SegmentationLoss(nn.Module):
    """A mask loss on a segmenter's (mask_logits [N, C, H, W], presence_logits [N, C]) plus
    `presence_weight` * BCE of the presence logits against the targets' per-channel maxima: the gate learns
    whether each class is present in the crop it sees."""

    def __init__(self, mask_loss: nn.Module, presence_weight: float = 0.2) -> None:
        super().__init__()
        self.mask_loss, self.presence_weight = mask_loss, presence_weight

    def forward(self, outputs: tuple[torch.Tensor, torch.Tensor], targets: torch.Tensor) -> torch.Tensor:
        masks, presence = outputs
        loss = self.mask_loss(masks, targets)
        if self.presence_weight:
            loss = loss + self.presence_weight * L.bce(presence, targets.flatten(2).amax(2))
        return loss


LOSSES: dict[str, type[nn.Module]] = {
    "bce": BCELoss,
    "weighted_bce": WeightedBCELoss,
    "focal": FocalLoss,
    "dice": DiceLoss,
    "bce_dice": BCEDiceLoss,
    "ce": CELoss,
    "weighted_ce": WeightedCELoss,
    "softmax_focal": SoftmaxFocalLoss,
}


def list_losses() -> list[str]:
    """The valid names for `create_loss`."""
    return sorted(LOSSES)


def create_loss(name: str, **kwargs: object) -> nn.Module:
    """Build a loss module by name, e.g. create_loss("weighted_bce", pos_weight=[1, 3, 1, 1])."""
    cls = LOSSES.get(name)
    if cls is None:
        raise SteelscanError(f"unknown loss {name!r}; valid names: {', '.join(list_losses())}")
    sig = inspect.signature(cls.__init__)
    try:
        sig.bind(None, **kwargs)  # None stands in for self
    except TypeError as exc:
        params = [p for p in sig.parameters if p != "self"]
        raise SteelscanError(f"loss {name!r} takes parameters {params}, got {sorted(kwargs)}: {exc}") from None
    return cls(**kwargs)
