"""Exported artifacts: the `ModelMeta` inside an ONNX file's metadata, read and checked in one place.

An artifact is one `.onnx` file whose metadata entry `steelscan.meta` is the JSON of a `ModelMeta` with its
`artifact` section (`ArtifactInfo`: format, version, the tile and gate of segmenters, quantisation). Inference
reads only this, never a training config. Artifact version 1 (an untyped meta dict, written before `ModelMeta`)
is migrated on read; version 2 is current.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from steelscan.core.errors import ModelFileError
from steelscan.core.meta import ARTIFACT_FORMAT, ARTIFACT_VERSION, ArtifactInfo, ModelMeta

META_KEY = "steelscan.meta"
READABLE_VERSIONS = (1, 2)


def attach_meta(path: str | Path, meta: ModelMeta) -> None:
    """Write `meta` (with an `artifact` section, added if missing) into the ONNX file at `path`, in place."""
    import onnx

    if meta.artifact is None:
        meta = meta.model_copy(update={"artifact": ArtifactInfo()})
    proto = onnx.load(str(path))
    for p in [p for p in proto.metadata_props if p.key == META_KEY]:
        proto.metadata_props.remove(p)
    entry = proto.metadata_props.add()
    entry.key, entry.value = META_KEY, json.dumps(meta.to_dict())
    onnx.save(proto, str(path))


def meta_of(proto: Any, source: str) -> ModelMeta:
    """The checked, migrated meta of a loaded ONNX proto; `source` names the file in errors."""
    text = next((p.value for p in proto.metadata_props if p.key == META_KEY), None)
    if text is None:
        raise ModelFileError(f"{source} is not a steelscan artifact: it carries no {META_KEY} metadata "
                             "(export it with `steelscan export RUN`)")
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{source}: its {META_KEY} metadata is not JSON ({exc.msg})") from None
    if not isinstance(raw, dict):
        raise ModelFileError(f"{source}: expected a {META_KEY} mapping, got {type(raw).__name__}")
    if "schema_version" in raw:  # version 2: a ModelMeta with an artifact section
        art = raw.get("artifact") or {}
        fmt, version = art.get("format"), art.get("version")
    else:  # version 1: the untyped meta; classifiers of version 1 carried neither format nor version
        fmt, version = raw.get("format", ARTIFACT_FORMAT), raw.get("artifact_version", 1)
    if fmt != ARTIFACT_FORMAT:
        raise ModelFileError(f"{source} is not a steelscan artifact: expected format {ARTIFACT_FORMAT}, got {fmt!r}")
    if version not in READABLE_VERSIONS:
        raise ModelFileError(f"{source} is artifact version {version}; this steelscan reads versions "
                             f"{READABLE_VERSIONS[0]}..{ARTIFACT_VERSION}: re-export it with `steelscan export`")
    meta = ModelMeta.from_dict(raw, source=source)
    return meta if meta.artifact is not None else meta.model_copy(update={"artifact": ArtifactInfo()})


def read_artifact(path: str | Path, task: str | None = None) -> tuple[Any, ModelMeta]:
    """(ONNX proto, ModelMeta) of an exported artifact, checked for format, version and (if given) task."""
    import onnx
    from google.protobuf.message import DecodeError
    from onnx.checker import ValidationError

    path = Path(path)
    if not path.is_file():
        raise ModelFileError(f"model artifact not found: expected an .onnx file from `steelscan export`, got {path}")
    if path.stat().st_size == 0:
        raise ModelFileError(f"{path} is empty (0 bytes): expected an .onnx file from `steelscan export`")
    # Not a whole ONNX model: DecodeError (truncated, random or another format's bytes), ValidationError or
    # ValueError (external data missing, outside the folder or shorter than its tensors), OSError (unreadable).
    try:
        proto = onnx.load(str(path))
    except (DecodeError, ValidationError, ValueError, OSError) as exc:
        raise ModelFileError(f"{path} is not an ONNX model: {(str(exc).splitlines() or [''])[0][:200]}") from None
    meta = meta_of(proto, str(path))
    if task is not None and meta.task != task:
        raise ModelFileError(f"{path} is a {meta.task} artifact; expected a {task} artifact")
    return proto, meta


def read_artifact_meta(path: str | Path) -> ModelMeta:
    """The meta alone (same checks as `read_artifact`)."""
    return read_artifact(path)[1]


def ort_session(model: bytes | str | Path, threads: int = 2):
    """An ONNX Runtime CPU session of a serialised model or a file, with `threads` intra-op threads."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, opts, providers=["CPUExecutionProvider"])
