"""Input conversion shared by the metric modules, and a JSON helper for metrics.json."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch

from steelscan.core.errors import SteelscanError


def to_numpy(x: Any, name: str) -> np.ndarray:
    """A numpy view/copy of a numpy array, torch tensor (any device) or nested list."""
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().numpy()
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except (TypeError, ValueError) as exc:
        kind = type(x).__name__
        raise SteelscanError(f"{name} must be an array-like (numpy, torch or list), got {kind}: {exc}") from None


def to_jsonable(obj: Any) -> Any:
    """Turn metric results into plain JSON: arrays -> lists, numpy scalars -> Python, NaN/inf -> None.

    json.dump writes NaN as the bare token NaN, which strict JSON readers reject; per-class values
    are NaN for classes without truth, so pass results through this before writing metrics.json.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
