"""Models: classifiers (timm backbones), layers (DCNv2), classical SDD baselines. Reached through the registry."""

from steelscan.models import classifier  # noqa: F401  (registers the classifiers)
