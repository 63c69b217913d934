"""The recipe of a training run: a YAML file, or the task's shipped default for `steelscan train --data`.

Command-line options (`--data`, `--task`, `--model`, `--epochs`, `--budget-minutes`, `--out-dir`) become
`--set` overrides applied before the user's own `--set`s, so every path ends in one validated `RunConfig`.
"""

from __future__ import annotations

from pathlib import Path

from steelscan.config import RunConfig, config_from_dict, read_yaml_mapping
from steelscan.core.errors import ConfigError
from steelscan.data.formats import FORMATS, detect_format
from steelscan.models import model_defaults
from steelscan.tasks.base import get_task


def train_config(config: Path | None = None, data: Path | None = None, task: str | None = None,
                 model: str | None = None, epochs: int | None = None, budget_minutes: float | None = None,
                 out_dir: Path | None = None, sets: list[str] = ()) -> RunConfig:
    """A recipe file (or the default recipe of the data's task) with the command line's options applied."""
    if config is None and data is None:
        raise ConfigError("train needs a recipe (CONFIG.yaml) or a data set (--data PATH), got neither")
    if config is not None:
        tree, source = read_yaml_mapping(Path(config), "config"), str(config)
    else:
        task = task or FORMATS[detect_format(data)].task
        recipe = get_task(task).default_recipe
        tree, source = read_yaml_mapping(recipe, "recipe"), f"the default {task} recipe ({recipe.name})"
    given = {"data.root": data, "task": task, "model.name": model, "train.epochs": epochs,
             "train.time_budget_minutes": budget_minutes, "out_dir": out_dir}
    options = [f"{key}={value}" for key, value in given.items() if value is not None]
    if model is not None and config is None:  # the default recipe's pretrained: true holds only with offline weights
        options.append(f"model.pretrained={str(model_defaults(model).offline_weights).lower()}")
    return config_from_dict(tree, [*options, *sets], source)
