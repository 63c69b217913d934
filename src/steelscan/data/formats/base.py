"""Labelled data in any layout, read into one shape: `LabelledData` holding `Item`s.

Every reader (`folders`, `neu-cls`, `yolo`, `coco`, `voc`, `neu-det`, `masks`, `rle`) returns a `LabelledData`;
training, evaluation, statistics and conversion read only this shape, never a layout.

Conventions (see DESIGN.md): boxes are float32 [M, 4] xyxy in 0-based pixel-edge coordinates (x2, y2
exclusive, width = x2 - x1); labels are int64 [M] indices into `class_names`. A detection item with no box
is a defect-free image. Class names and their order come from the data and nothing else.

Readers never stop at the first bad label: what a labelling export got wrong is skipped and recorded as a
`Problem` (kind, path, message), so `steelscan stats` can list every one and training can log a summary.
Only a data set that cannot be read at all (no such folder, no images, no class list) raises `DataError`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from steelscan.core.images import IMAGE_SUFFIXES  # noqa: F401  (re-exported: the readers list these)

Task = Literal["classification", "detection", "segmentation"]
TASKS: tuple[str, ...] = ("classification", "detection", "segmentation")
SPLITS: tuple[str, ...] = ("train", "val", "test")

# Problem kinds that `steelscan stats` reports (one table row each).
PROBLEM_KINDS: dict[str, str] = {
    "unreadable_image": "image file that cannot be decoded",
    "label_without_image": "label entry whose image is missing",
    "image_without_label": "image with no label file (read as defect-free)",
    "box_outside_image": "box reaching outside its image (clipped)",
    "empty_box": "box of zero width or height (dropped)",
    "class_out_of_range": "class id or name not in the class list (dropped)",
    "bad_label": "label line or field that cannot be parsed (dropped)",
    "duplicate_file": "byte-identical image files",
    "few_samples": "class with fewer than 10 samples",
}


def empty_boxes() -> np.ndarray:
    return np.zeros((0, 4), np.float32)


def empty_labels() -> np.ndarray:
    return np.zeros(0, np.int64)


@dataclass
class Item:
    """One labelled image. Only the fields of the data set's task are set."""

    name: str  # path of the image relative to the data set root (POSIX): unique, the key in split.json
    path: Path  # the image file
    split: str | None = None  # the data set's own split ('train' | 'val' | 'test'); None when it has none
    group: str | None = None  # items of one group always land on the same side of a split (e.g. a NEU number)
    size: tuple[int, int] | None = None  # (height, width) when the reader knows it (read from the header)
    label: int | None = None  # classification: index into class_names
    boxes: np.ndarray = field(default_factory=empty_boxes)  # detection: float32 [M, 4] xyxy pixels
    labels: np.ndarray = field(default_factory=empty_labels)  # detection: int64 [M]
    mask_path: Path | None = None  # segmentation: index PNG, 0 = background, k = class k-1 (k = 1..K)
    rles: dict[int, str] | None = None  # segmentation: class index -> Kaggle RLE (1-indexed, column-major)
    present: tuple[int, ...] = ()  # segmentation: the class indices its mask shows (readers fill it)

    @property
    def truth(self) -> dict[str, np.ndarray]:
        return {"boxes": self.boxes, "labels": self.labels}


@dataclass(frozen=True)
class Problem:
    kind: str  # a key of PROBLEM_KINDS
    path: str  # the file (or class) it is about
    message: str  # one line: what was expected, what arrived


@dataclass
class LabelledData:
    task: Task
    format: str
    root: Path
    class_names: list[str]
    items: list[Item]
    problems: list[Problem] = field(default_factory=list)
    # Files left out on purpose, not by mistake: reason -> count (e.g. NEU's held-out fifth). Not problems.
    skipped: dict[str, int] = field(default_factory=dict)

    @property
    def own_splits(self) -> list[str]:
        """The data set's own split names present on its items (e.g. ['train', 'val']); [] when it has none."""
        present = {it.split for it in self.items if it.split is not None}
        return [s for s in SPLITS if s in present]

    def select(self, split: str) -> list[Item]:
        return [it for it in self.items if it.split == split]

    def instances_per_class(self) -> list[int]:
        """Samples per class: images (classification), boxes (detection), images showing it (segmentation)."""
        counts: Counter = Counter()
        for it in self.items:
            if self.task == "classification" and it.label is not None:
                counts[it.label] += 1
            elif self.task == "detection":
                counts.update(int(k) for k in it.labels)
            elif self.task == "segmentation":
                counts.update(it.present)
        return [counts.get(k, 0) for k in range(len(self.class_names))]

    def problem_counts(self) -> dict[str, int]:
        return dict(Counter(p.kind for p in self.problems))
