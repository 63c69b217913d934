"""Models: classifiers (timm backbones), detectors (Faster R-CNN + FPN), layers (DCNv2, SPP, CoordConv),
classical SDD baselines. Reached through the registry."""

from steelscan.models import classifier  # noqa: F401  (registers the classifiers)
from steelscan.models import detector  # noqa: F401  (registers the detectors)
