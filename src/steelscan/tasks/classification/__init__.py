"""Classification: image-level defect classes and the defect/no-defect gate."""

from steelscan.tasks.classification import task  # noqa: F401  (registers the task)
