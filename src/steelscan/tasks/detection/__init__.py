"""Detection: boxes of defect classes."""

from steelscan.tasks.detection import task  # noqa: F401  (registers the task)
