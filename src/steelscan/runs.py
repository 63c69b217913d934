"""Run folders and checkpoints.

A checkpoint is a dict of tensors and plain values, readable with `torch.load(weights_only=True)`:
``{"state_dict": ..., "meta": {"model": name, "model_kwargs": {...}, "class_names": [...], "image_size": S,
"mean": m, "std": s, "task": ..., "binary": bool}}``. The meta is all inference needs: it never reads a config.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from steelscan.core.errors import SteelscanError
from steelscan.registry import create_model

CHECKPOINT = "model.pt"
BUILTIN_DIR = Path(__file__).parent / "weights"


def new_run_dir(out_dir: str | Path, name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(out_dir) / f"{name}-{stamp}"
    k = 1
    while path.exists():
        path = Path(out_dir) / f"{name}-{stamp}-{k}"
        k += 1
    path.mkdir(parents=True)
    return path


def save_checkpoint(path: Path, model: nn.Module, meta: dict[str, Any]) -> None:
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": state, "meta": meta}, tmp)
    tmp.replace(path)  # atomic: a killed run never leaves a half-written checkpoint


def resolve_model_path(model: str | Path) -> Path:
    """A run folder, a checkpoint file, or a built-in name (e.g. `neu-cls`)."""
    p = Path(model)
    if p.is_dir():
        p = p / CHECKPOINT
    elif not p.exists() and (BUILTIN_DIR / f"{model}.pt").is_file():
        p = BUILTIN_DIR / f"{model}.pt"
    if not p.is_file():
        builtin = sorted(f.stem for f in BUILTIN_DIR.glob("*.pt"))
        raise SteelscanError(
            f"model not found: expected a run folder, a .pt checkpoint or a built-in name ({', '.join(builtin) or 'none'}), got {model!r}"
        )
    return p


def load_checkpoint(model: str | Path, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    path = resolve_model_path(model)
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise SteelscanError(f"{path} is not a steelscan checkpoint: {str(exc).splitlines()[0]}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "meta" not in ckpt:
        raise SteelscanError(f"{path} is not a steelscan checkpoint: expected keys state_dict and meta")
    meta = ckpt["meta"]
    net = create_model(meta["model"], **meta.get("model_kwargs", {}))
    net.load_state_dict(ckpt["state_dict"])
    return net.to(device).eval(), meta


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
