"""The task plug-in protocol and its registry.

A task (classification, detection, segmentation, ...) is one folder under `steelscan/tasks/` whose
`__init__` registers a `Task`. The engine (`steelscan.engine.fit`), `steelscan evaluate` and the defaults of
`steelscan train --data` dispatch through it, never through if-chains on the task's name. A new kind of
model (say, anomaly detection from defect-free strips) is one new folder that calls `register_task`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

import torch
import torch.nn as nn
from torch.utils.data import Dataset, Sampler

from steelscan.config import RunConfig
from steelscan.core.errors import DataError, SteelscanError
from steelscan.core.meta import ModelMeta
from steelscan.data.formats.base import Item, LabelledData, Problem
from steelscan.data.splits import SplitResult
from steelscan.engine.loop import Step


@dataclass
class Job:
    """What a task prepares for the engine from a config, the data and its split."""

    train_set: Dataset
    model_kwargs: dict[str, Any]  # builder arguments for `create_model(cfg.model.name, **model_kwargs)`
    meta: ModelMeta  # saved in every checkpoint (val_metrics filled in by the engine)
    step: Step  # (model, batch, device) -> (loss, parts, n)
    # (model, device, final) -> validation metrics with a "score" (higher is better: it picks the checkpoint);
    # `final` asks for the costly extras (COCO mAP, probabilities) of the last evaluation.
    evaluate: Callable[[nn.Module, torch.device, bool], dict[str, Any]]
    # (model, final metrics, run folder, history) -> the metrics.json record; draws the task's plots.
    finish: Callable[[nn.Module, dict[str, Any], Path, list[dict]], dict[str, Any]]
    describe: str  # one log line: images, crops, classes
    collate_fn: Callable | None = None
    sampler: Sampler | None = None  # single-process sampler (e.g. class-balanced); DDP uses its own
    set_epoch: Callable[[int], None] | None = None
    clip_grad_norm: float | None = None
    find_unused_parameters: bool = False  # DDP: parts of the model that a step may not reach
    history_keys: tuple[str, ...] = ()  # validation values kept per epoch as val_<key> (curves.png)


class Task(Protocol):
    name: str
    default_recipe: Path  # the recipe `steelscan train --data PATH` uses for this task

    def prepare(self, cfg: RunConfig, data: LabelledData, split: SplitResult, device: torch.device) -> Job: ...

    def evaluate_items(self, model: nn.Module, meta: ModelMeta, data: LabelledData, items: list[Item],
                       batch_size: int | None, tta: bool | None) -> dict[str, Any]:
        """Metrics of a trained model on labelled items (the JSON of `steelscan evaluate`)."""
        ...

    def report(self, result: dict[str, Any]) -> tuple[list[str], list[list[str]], str]:
        """(table columns, table rows, summary line) of an `evaluate_items` result, for the CLI to print."""
        ...


def class_index(meta: ModelMeta, data: LabelledData) -> list[int]:
    """The model's index of each of the data's classes, matched by name (the orders may differ).

    A class the model does not know is an error that lists the model's classes."""
    missing = [c for c in data.class_names if c not in meta.class_names]
    if missing:
        raise DataError(f"the data holds classes the model does not know: {missing}; the model's classes are "
                        f"{', '.join(meta.class_names)}")
    return [meta.class_names.index(c) for c in data.class_names]


def note_unreadable(problems: list[Problem] | None, item: Item, exc: DataError) -> None:
    """An image (or its mask) that passed the readers' header check but does not decode (truncated, corrupt).

    Without a `problems` list the error is raised again; with one it is recorded there as `unreadable_image`
    (training passes `data.problems`, so data.json counts it), logged, and the caller leaves the item out."""
    if problems is None:
        raise exc
    problems.append(Problem("unreadable_image", item.name, str(exc)))
    logging.getLogger("steelscan.train").warning("left out %s: %s", item.name, exc)


def require_images(n_train: int, n_val: int, data: LabelledData) -> None:
    """Training needs a decodable image on each side of the split; a one-line DataError otherwise."""
    if not n_train or not n_val:
        side = "training" if not n_train else "validation"
        raise DataError(f"{data.root}: no readable {side} image ({n_train} train / {n_val} val images decode); "
                        f"`steelscan stats {data.root}` lists the problems")


_TASKS: dict[str, Task] = {}


def register_task(task: Task) -> Task:
    if task.name in _TASKS:
        raise RuntimeError(f"task registered twice: {task.name}")
    _TASKS[task.name] = task
    return task


def _ensure_loaded() -> None:
    import steelscan.tasks  # noqa: F401  (its __init__ imports every task folder)


def list_tasks() -> list[str]:
    _ensure_loaded()
    return sorted(_TASKS)


def get_task(name: str) -> Task:
    _ensure_loaded()
    if name not in _TASKS:
        raise SteelscanError(f"unknown task {name!r}; expected one of {', '.join(sorted(_TASKS))}")
    return _TASKS[name]
