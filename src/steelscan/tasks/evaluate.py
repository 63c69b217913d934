"""`evaluate_model`: a trained model's metrics on a labelled data set in any layout, through its task plug-in."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from steelscan.config import load_config
from steelscan.core.errors import DataError
from steelscan.data.formats import read_data
from steelscan.data.splits import split_items
from steelscan.engine.runs import load_checkpoint
from steelscan.tasks.base import get_task

SPLITS = ("train", "val", "test", "all")


def evaluate_model(model: str | Path, data_root: str | Path, split: str = "all", fmt: str | None = None,
                   batch_size: int | None = None, tta: bool | None = None) -> dict[str, Any]:
    """Metrics of `model` (run folder, checkpoint or built-in name) on `split` of the data at `data_root`.

    The split is the data set's own where it has one, else the same deterministic split training made
    (a run folder's own config gives its val_fraction, seed and NEU remainders).
    """
    if split not in SPLITS:
        raise DataError(f"--split expects one of {', '.join(SPLITS)}, got {split!r}")
    net, meta = load_checkpoint(model)
    data = read_data(data_root, fmt)
    if data.task != meta.task:
        raise DataError(f"{model} is a {meta.task} model but {data_root} is {data.format} data, a {data.task} layout")
    items = data.items
    if split != "all":
        run_cfg = Path(model) / "config.yaml"
        cfg = load_config(run_cfg) if run_cfg.is_file() else None
        d = cfg.data if cfg else None
        # the run's own seed: a stratified split depends on it, and --split val must be the images training chose
        parts = split_items(data, d.val_fraction if d else 0.2, cfg.seed if cfg else 0, d.val_remainders if d else (4,))
        items = getattr(parts, split)
        if not items:
            raise DataError(f"{data_root} has no {split} images ({data.format} data; its own splits: "
                            f"{', '.join(data.own_splits) or 'none'})")
    out = get_task(meta.task).evaluate_items(net, meta, data, items, batch_size, tta)
    return {**out, "model": str(model), "data": str(data_root), "format": data.format, "split": split}
