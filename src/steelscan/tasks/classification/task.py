"""The classification task: image-level defect classes (NEU-CLS, a plant's class folders) and the binary gate.

Classes, channels and input size come from the data unless the recipe sets them: `model.in_chans` null = 3
when the images hold colour, else 1; `data.image_size` null = the most common image side, clamped to
32..384. The checkpoint is chosen by validation macro-F1.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from torch.utils.data import DataLoader

from steelscan.config import RunConfig
from steelscan.core.errors import ConfigError, DataError
from steelscan.core.images import image_size, read_image
from steelscan.core.meta import ModelMeta
from steelscan.data.formats import read_data
from steelscan.deploy.inputs import read_images
from steelscan.deploy.predictors import ClassifierPredictor
from steelscan.data.formats.base import Item, LabelledData
from steelscan.data.splits import SplitResult, checksum_side
from steelscan.engine.loop import supervised_step
from steelscan.tasks.classification.evaluate import VIEWS, evaluate
from steelscan.losses import create_loss
from steelscan.metrics import classification_metrics
from steelscan.models import model_defaults
from steelscan.plots import plot_confusion, plot_curves
from steelscan.tasks.augment import train_transform
from steelscan.tasks.base import Job, class_index, register_task, require_images
from steelscan.tasks.classification.data import (
    ClassificationSet,
    balanced_sampler,
    class_weights,
    limit_per_class,
    list_clean_images,
    oversample,
)

log = logging.getLogger("steelscan.train")
RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def data_channels(items: list[Item], sample: int = 8) -> int:
    """3 when any of the first `sample` images holds colour (channels that differ), else 1.

    Grey images stored as RGB (NEU-DET's JPEGs) count as grey: their three channels are equal. An image that
    does not decode is passed over here (the loaders record it).
    """
    for it in items[:sample]:
        try:
            image = read_image(it.path, channels=None)
        except DataError:
            continue
        if image.ndim == 3 and not ((image[..., 0] == image[..., 1]).all() and (image[..., 1] == image[..., 2]).all()):
            return 3
    return 1


def common_side(items: list[Item], low: int = 32, high: int = 384) -> int:
    """The most common long side of the images, clamped to [low, high]."""
    sides = Counter(max(it.size or image_size(it.path)) for it in items)
    return int(min(max(sides.most_common(1)[0][0], low), high))


class ClassificationTask:
    name = "classification"
    default_recipe = RECIPES / "classification.yaml"

    def prepare(self, cfg: RunConfig, data: LabelledData, split: SplitResult, device: torch.device) -> Job:
        names = ["clean", "defect"] if cfg.data.binary else list(data.class_names)
        unknown = (set(cfg.data.limit_per_class) | set(cfg.imbalance.oversample_to)) - set(data.class_names)
        if unknown:
            raise ConfigError(f"unknown class name(s) {sorted(unknown)}; expected one of {', '.join(data.class_names)}")
        defaults = model_defaults(cfg.model.name)
        in_chans = cfg.model.in_chans or data_channels(split.train)
        size = cfg.data.image_size or common_side(split.train)
        train_items = limit_per_class(split.train, data.class_names, cfg.data.limit_per_class)
        if cfg.imbalance.oversample_to:
            train_items = oversample(train_items, data.class_names, cfg.imbalance.oversample_to)

        def labels(items: list[Item]) -> list[int]:
            return [1 if cfg.data.binary else it.label for it in items]

        boxes = _cutout_boxes(cfg, data, train_items) if cfg.augment.improved_cutout > 0 else None
        train = ClassificationSet(train_items, labels(train_items), size, defaults.mean, defaults.std, in_chans,
                                  cfg.data.binary, train_transform(cfg.augment, size, cfg.seed), boxes,
                                  cfg.augment.improved_cutout, cfg.seed, problems=data.problems)
        val = ClassificationSet(split.val, labels(split.val), size, defaults.mean, defaults.std, in_chans,
                                cfg.data.binary, problems=data.problems)
        require_images(len(train), len(val), data)
        if cfg.data.clean_root is not None:
            _add_clean(cfg, train, val, split)
        model_kwargs = {"num_classes": len(names), "in_chans": in_chans, "pretrained": cfg.model.pretrained,
                        "dcn": cfg.model.dcn, "drop_rate": cfg.model.drop_rate}
        meta = ModelMeta(task="classification", model=cfg.model.name, model_kwargs={**model_kwargs, "pretrained": False},
                         class_names=tuple(names), in_chans=in_chans, input_size=(size, size), mean=defaults.mean,
                         std=defaults.std, binary=cfg.data.binary, tta=cfg.train.tta)
        val_loader = DataLoader(val, batch_size=max(64, cfg.train.batch_size), num_workers=cfg.train.num_workers)
        eval_loss = nn.CrossEntropyLoss()

        def run_eval(model: nn.Module, dev: torch.device, final: bool) -> dict[str, Any]:
            out = evaluate(model, val_loader, dev, tta=cfg.train.tta and final, loss_fn=eval_loss, class_names=names)
            out.pop("probabilities")
            out["score"] = out["macro_f1"]
            out["summary"] = f"loss {out['loss']:.4f}  acc {100 * out['accuracy']:.2f}%  macro-F1 {out['macro_f1']:.4f}"
            out["headline"] = {"accuracy": out["accuracy"], "macro_f1": out["macro_f1"]}
            return out

        def finish(model: nn.Module, final: dict, run_dir: Path, history: list[dict]) -> dict[str, Any]:
            views = {v: evaluate(model, val_loader, device, view=v, class_names=names)["accuracy"] for v in VIEWS}
            plot_curves(history, run_dir / "curves.png")
            plot_confusion(final["confusion_matrix"], names, run_dir / "confusion.png",
                           title=f"{cfg.name}: val accuracy {100 * final['accuracy']:.2f}%")
            return {"task": "classification", **{k: final[k] for k in ("accuracy", "macro_f1", "per_class")},
                    "n_images": final["n"], "tta": cfg.train.tta, "confusion_matrix": final["confusion_matrix"],
                    "class_names": names, "accuracy_by_view": views}

        sampler = balanced_sampler(train.labels, cfg.seed) if cfg.imbalance.sampler == "balanced" else None
        counts = Counter(train.labels)
        return Job(
            train_set=train, model_kwargs=model_kwargs, meta=meta,
            step=supervised_step(_make_loss(cfg, train.labels, len(names)).to(device)),
            evaluate=run_eval, finish=finish, sampler=sampler,
            describe=f"{len(train)} train / {len(val)} val images, {len(names)} classes "
                     f"({', '.join(f'{n}: {counts.get(i, 0)}' for i, n in enumerate(names))}), "
                     f"{in_chans} channel(s) at {size}x{size}",
            history_keys=("loss", "accuracy", "macro_f1"),
        )

    def evaluate_items(self, model: nn.Module, meta: ModelMeta, data: LabelledData, items: list[Item],
                       batch_size: int | None, tta: bool | None) -> dict[str, Any]:
        batch_size = batch_size or 64
        tta = meta.tta if tta is None else tta
        if meta.binary:
            y_true = [1] * len(items)  # every labelled class image shows a defect
        else:
            index = class_index(meta, data)
            y_true = [index[it.label] for it in items]
        label_of = {it.path: y for it, y in zip(items, y_true)}
        paths, images, skipped = read_images(label_of, channels=meta.in_chans, min_side=meta.min_input_size)
        kept = [label_of[p] for p in paths]
        t0 = time.perf_counter()
        probs = ClassifierPredictor.from_module(model, meta, tta=tta, batch_size=batch_size).predict(images)
        ms = 1000 * (time.perf_counter() - t0) / max(len(images), 1)
        m = classification_metrics(kept, probs.argmax(1), class_names=list(meta.class_names))
        return {"task": "classification", "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
                "per_class": m["per_class"], "n_images": m["n"], "class_names": list(meta.class_names),
                "ms_per_image": ms, "batch_size": batch_size, "threads": torch.get_num_threads(), "tta": tta,
                "confusion_matrix": m["confusion_matrix"], "skipped": [str(p) for p, _ in skipped]}

    def report(self, r: dict[str, Any]) -> tuple[list[str], list[list[str]], str]:
        rows = [[name, f"{v['precision']:.4f}", f"{v['recall']:.4f}", f"{v['f1']:.4f}", str(v["support"])]
                for name, v in r["per_class"].items()]
        line = (f"accuracy {100 * r['accuracy']:.2f}%  macro-F1 {r['macro_f1']:.4f}  n={r['n_images']}  "
                f"{r['ms_per_image']:.2f} ms/image (batch {r['batch_size']}, {r['threads']} threads)")
        return ["class", "precision", "recall", "F1", "n"], rows, line


def _make_loss(cfg: RunConfig, train_labels: list[int], n_classes: int) -> nn.Module:
    name = cfg.loss.name or "ce"
    if name == "weighted_ce":
        return create_loss("weighted_ce", weight=class_weights(train_labels, n_classes),
                           label_smoothing=cfg.loss.label_smoothing)
    if name == "softmax_focal":
        return create_loss("softmax_focal", gamma=cfg.loss.gamma)
    return create_loss("ce", label_smoothing=cfg.loss.label_smoothing)


def _cutout_boxes(cfg: RunConfig, data: LabelledData, items: list[Item]) -> dict[str, Any]:
    """Boxes for the improved cutout, which class-level labels do not hold: NEU-DET's boxes of the same
    photograph (its class name and NEU number) from augment.det_root, keyed by the item's name."""
    if not cfg.augment.det_root:
        raise ConfigError("augment.improved_cutout needs defect boxes: set augment.det_root to a NEU-DET folder")
    det = read_data(cfg.augment.det_root)
    if det.task != "detection":
        raise ConfigError(f"augment.det_root {cfg.augment.det_root} is {det.format} data; expected detection boxes")
    by_key = {(_image_class(it), it.group): it.boxes for it in det.items if it.group is not None}
    return {it.name: by_key[(data.class_names[it.label], it.group)] for it in items
            if (data.class_names[it.label], it.group) in by_key}


def _image_class(item: Item) -> str:
    """A NEU-DET image's own class: its file name's prefix (its boxes may hold other classes)."""
    return Path(item.name).stem.rsplit("_", 1)[0]


def _add_clean(cfg: RunConfig, train: ClassificationSet, val: ClassificationSet, split: SplitResult) -> None:
    """data.clean_root in gate mode: the clean class, split by crc32 of the name, as detection splits it, so a
    gate and a detector trained on the same folders never see each other's validation images."""
    if not cfg.data.binary:
        log.warning("data.clean_root is ignored: clean images are used by detection and the binary gate only")
        return
    sides: dict[str, list[Path]] = {"train": [], "val": []}
    for p in list_clean_images(cfg.data.clean_root):
        sides[checksum_side(f"clean/{p.name}", cfg.data.val_remainders)].append(p)
    train.add_clean(sides["train"])
    val.add_clean(sides["val"])
    split.record["clean_images"] = {k: sorted(p.name for p in v) for k, v in sides.items()}


register_task(ClassificationTask())
