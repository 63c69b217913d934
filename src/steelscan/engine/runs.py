"""Run folders, checkpoints and the built-in models.

A checkpoint is a dict of tensors and plain values, readable with `torch.load(weights_only=True)`:
``{"state_dict": ..., "meta": ModelMeta.to_dict()}``. The meta (`steelscan.core.meta.ModelMeta`) is all
inference needs: it never reads a config. Checkpoints written before `ModelMeta` hold an untyped dict
(schema 0), migrated on read; the shipped built-in models are such checkpoints.

A model is named by a run folder, a `.pt` checkpoint, a built-in name (`neu-cls`, `neu-det`, `severstal`) or an
exported `.onnx` artifact (`resolve_model`); `load_checkpoint` reads the first three, the predictors all four
(`steelscan.deploy.load_predictor`).
"""

from __future__ import annotations

import json
import pickle
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from steelscan.core.errors import ModelFileError
from steelscan.core.meta import ModelMeta
from steelscan.models import create_model

CHECKPOINT = "model.pt"
BUILTIN_DIR = Path(__file__).resolve().parents[1] / "weights"  # src/steelscan/weights (package data)


def new_run_dir(out_dir: str | Path, name: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path(out_dir) / f"{name}-{stamp}"
    k = 1
    while path.exists():
        path = Path(out_dir) / f"{name}-{stamp}-{k}"
        k += 1
    path.mkdir(parents=True)
    return path


def save_checkpoint(path: Path, model: nn.Module, meta: ModelMeta | dict[str, Any]) -> None:
    """`{"state_dict", "meta": meta.to_dict()}` at `path`, atomically. A dict meta is validated (and migrated
    if it is an untyped schema-0 dict) first, so every checkpoint written holds a current `ModelMeta`."""
    meta = ModelMeta.from_dict(meta, source=str(path))
    model = getattr(model, "module", model)  # unwrap DistributedDataParallel
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    tmp = path.with_suffix(".tmp")
    torch.save({"state_dict": state, "meta": meta.to_dict()}, tmp)
    tmp.replace(path)  # atomic: a killed run never leaves a half-written checkpoint


def builtin_names() -> list[str]:
    return sorted(f.stem for f in BUILTIN_DIR.glob("*.pt"))


def resolve_model(spec: str | Path) -> Path:
    """The file behind a model reference: a run folder (its model.pt), a .pt checkpoint, an exported .onnx
    artifact, or a built-in name (e.g. `neu-cls`)."""
    p = Path(spec)
    if p.is_dir():
        p = p / CHECKPOINT
    elif not p.exists() and p.suffix == "" and (BUILTIN_DIR / f"{spec}.pt").is_file():
        p = BUILTIN_DIR / f"{spec}.pt"
    if not p.is_file():
        raise ModelFileError(
            f"model not found: expected a run folder, a .pt checkpoint, an .onnx artifact or a built-in name "
            f"({', '.join(builtin_names()) or 'none'}), got {str(spec)!r}"
        )
    return p


def read_checkpoint(path: Path, device: str | torch.device = "cpu", mmap: bool = False) -> tuple[dict, ModelMeta]:
    """(state_dict, ModelMeta) of a checkpoint file; anything else is a ModelFileError naming it."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        raise ModelFileError(f"{path} is an exported ONNX artifact; this needs a checkpoint (a run folder, a .pt "
                             "file or a built-in name)")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path} is empty (0 bytes): expected a steelscan checkpoint (`steelscan train` writes "
                             "model.pt); the copy may have failed")
    with path.open("rb") as f:
        head = f.read(8)
    if not head.startswith(b"PK\x03\x04"):  # torch.save's zip format: all steelscan ever writes
        raise ModelFileError(f"{path} is not a steelscan checkpoint: expected a torch.save zip file, got "
                             f"{path.stat().st_size} bytes starting {head!r}")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path} is empty (0 bytes): expected a steelscan checkpoint (a copy cut short?)")
    try:
        ckpt = torch.load(path, map_location=device, weights_only=True, mmap=mmap)
    except pickle.UnpicklingError:
        raise ModelFileError(f"{path} is not a steelscan checkpoint: it holds Python objects beyond tensors and "
                             "plain values, which steelscan never loads (weights_only)") from None
    except Exception as exc:  # noqa: BLE001 - torch.load of a file from outside: every failure is that file's
        raise ModelFileError(f"{path} cannot be read as a checkpoint (truncated or corrupt?): "
                             f"{(str(exc).splitlines() or [type(exc).__name__])[0][:200]}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "meta" not in ckpt:
        raise ModelFileError(f"{path} is not a steelscan checkpoint: expected keys state_dict and meta")
    return ckpt["state_dict"], ModelMeta.from_dict(ckpt["meta"], source=str(path))


def build_model(meta: ModelMeta) -> nn.Module:
    """The registry's model for a meta; the meta's classes and channels fill builder arguments it lacks."""
    kwargs = dict(meta.model_kwargs)
    kwargs.setdefault("num_classes", meta.num_classes + meta.label_offset)
    kwargs.setdefault("in_chans", meta.in_chans)
    return create_model(meta.model, **kwargs)


def load_checkpoint(model: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelMeta]:
    """(model in eval mode on `device`, its ModelMeta) from a run folder, a .pt checkpoint or a built-in name."""
    path = resolve_model(model)
    state, meta = read_checkpoint(path, device)
    net = build_model(meta)
    try:
        net.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelFileError(f"{path}: its weights do not fit a {meta.model} built from its meta: "
                             f"{str(exc).splitlines()[0][:300]}") from None
    return net.to(device).eval(), meta


def init_weights(model: nn.Module, spec: str | Path) -> tuple[int, list[str]]:
    """Start `model` from the weights of a checkpoint (`model.init`): every tensor whose name and shape match is
    copied; the rest (e.g. a head for another class count) keeps its fresh initialisation. -> (copied, skipped)."""
    path = resolve_model(spec)
    state, meta = read_checkpoint(path)
    own = model.state_dict()
    fits = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not fits:
        raise ModelFileError(f"model.init: no tensor of {path} ({meta.model}) fits the model being trained; "
                             "expected a checkpoint of the same architecture")
    model.load_state_dict(fits, strict=False)
    return len(fits), sorted(set(own) - set(fits))


def load_meta(model: str | Path) -> ModelMeta:
    """The ModelMeta of a checkpoint or an artifact, without building the model."""
    path = resolve_model(model)
    if path.suffix.lower() == ".onnx":
        from steelscan.deploy.artifact import read_artifact_meta

        return read_artifact_meta(path)
    return read_checkpoint(path, mmap=True)[1]


@dataclass(frozen=True)
class BuiltinModel:
    """A model shipped in `steelscan/weights/`: `<name>.pt` and its model card `<name>.md`."""

    name: str
    path: Path
    meta: ModelMeta
    size_bytes: int
    card_title: str  # the model card's first line, without its Markdown heading marks


def builtin_models() -> list[BuiltinModel]:
    out = []
    for name in builtin_names():
        path = BUILTIN_DIR / f"{name}.pt"
        card = BUILTIN_DIR / f"{name}.md"
        lines = card.read_text(encoding="utf-8").splitlines() if card.is_file() else []
        title = lines[0].lstrip("#").strip().removeprefix("Model card:").strip() if lines else ""
        out.append(BuiltinModel(name, path, read_checkpoint(path, mmap=True)[1], path.stat().st_size, title))
    return out


def write_json(path: Path, obj: Any) -> None:
    path.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")
