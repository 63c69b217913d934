"""Metrics: segmentation (Kaggle Severstal Dice, IoU), classification (accuracy, F1, confusion
matrix) and detection (VOC mAP@0.5, COCO mAP@[.5:.95]). Each module states its shape convention."""

from steelscan.metrics._common import to_jsonable
from steelscan.metrics.classification import accuracy, classification_metrics, confusion_matrix, macro_f1
from steelscan.metrics.detection import (
    DetectionMeter,
    average_precision,
    box_iou,
    coco_map,
    evaluate_detection,
    voc_map,
)
from steelscan.metrics.segmentation import (
    SegmentationMeter,
    dice_per_class,
    dice_per_pair,
    iou_per_class,
    iou_per_pair,
    pair_counts,
    severstal_dice,
)

__all__ = [
    "to_jsonable",
    "accuracy",
    "macro_f1",
    "confusion_matrix",
    "classification_metrics",
    "box_iou",
    "average_precision",
    "voc_map",
    "coco_map",
    "evaluate_detection",
    "DetectionMeter",
    "pair_counts",
    "dice_per_pair",
    "iou_per_pair",
    "severstal_dice",
    "dice_per_class",
    "iou_per_class",
    "SegmentationMeter",
]
