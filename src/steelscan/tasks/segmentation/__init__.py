"""Segmentation: per-pixel defect masks."""

from steelscan.tasks.segmentation import task  # noqa: F401  (registers the task)
