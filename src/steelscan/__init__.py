"""steelscan: steel strip surface defect toolkit.

Flow: data -> models/losses -> train/evaluate -> export -> inference -> inspection -> grading -> cli/service.
"""

__version__ = "0.1.0"
