"""Models: classifiers (timm backbones), segmenters (smp Unet/FPN), detectors (Faster R-CNN + FPN, FCOS), layers
(DCNv2, SPP, CoordConv), classical SDD baselines. Reached through the registry."""

from steelscan.models._registry import (  # noqa: F401
    ModelDefaults,
    ModelEntry,
    create_model,
    list_models,
    model_defaults,
    model_entry,
    register_model,
)
from steelscan.models import classifier  # noqa: F401  (registers the classifiers)
from steelscan.models import detector  # noqa: F401  (registers the detectors)
from steelscan.models import fcos  # noqa: F401  (registers the one-stage detectors)
from steelscan.models import segmenter  # noqa: F401  (registers the segmenters)
