"""Class-imbalance losses: pure tensor functions and thin nn.Module wrappers, selectable by name.

All multi-label losses take logits and targets [N, C, ...] (see `_functional` for the conventions).
"""

from steelscan.losses._functional import REDUCTIONS, bce, bce_dice, dice, focal, softmax_focal, weighted_bce
from steelscan.losses.modules import (
    LOSSES,
    BCEDiceLoss,
    BCELoss,
    CELoss,
    DiceLoss,
    FocalLoss,
    SegmentationLoss,
    SoftmaxFocalLoss,
    WeightedBCELoss,
    WeightedCELoss,
    create_loss,
    list_losses,
)

__all__ = [
    "REDUCTIONS",
    "bce",
    "weighted_bce",
    "focal",
    "dice",
    "bce_dice",
    "softmax_focal",
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
