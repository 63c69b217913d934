"""Task plug-ins: one folder per kind of model, registered by name (see `base`)."""

from steelscan.tasks import classification, detection, segmentation  # noqa: F401  (registers each task)
