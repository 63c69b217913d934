"""Readers for every label layout, one shape out (`LabelledData`); see `base` for the conventions.

    data = read_data("plant_a/")            # layout detected from the folder
    data = read_data("data.yaml", "yolo")    # or named
"""

from steelscan.data.formats.base import (
    IMAGE_SUFFIXES, PROBLEM_KINDS, SPLITS, TASKS, Item, LabelledData, Problem,
)
from steelscan.data.formats.detect import ALIASES, FORMATS, Format, detect_format, format_name, read_data

__all__ = [
    "ALIASES", "FORMATS", "Format", "IMAGE_SUFFIXES", "Item", "LabelledData", "PROBLEM_KINDS", "Problem", "SPLITS",
    "TASKS", "detect_format", "format_name", "read_data",
]
