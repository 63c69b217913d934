"""ONNX Runtime sessions for exported artifacts: the fast path that reads only the artifact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from steelscan.core.errors import SteelscanError
from steelscan.export import read_onnx_meta


def onnx_session(path: str | Path, threads: int = 2):
    """An ORT CPU session with `threads` intra-op threads, and the artifact's meta."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise SteelscanError(f"ONNX artifact not found: {path}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"]), read_onnx_meta(path)


def onnx_logits(session, x: np.ndarray) -> np.ndarray:
    """x: float32 [N, 1, S, S] normalised -> logits [N, K]."""
    return session.run(None, {session.get_inputs()[0].name: np.ascontiguousarray(x, dtype=np.float32)})[0]


def read_artifact(path: str | Path, task: str) -> tuple[object, dict]:
    """The ONNX proto and meta of an exported artifact, checked for format, version and task."""
    import onnx

    from steelscan.export import ARTIFACT_FORMAT, ARTIFACT_VERSION, META_KEY

    path = Path(path)
    if not path.is_file():
        raise SteelscanError(f"model artifact not found: expected an .onnx file from `steelscan export`, got {path}")
    try:
        proto = onnx.load(str(path))
    except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
        raise SteelscanError(f"{path} is not an ONNX model: {str(exc).splitlines()[0][:200]}") from None
    meta = next((json.loads(p.value) for p in proto.metadata_props if p.key == META_KEY), None)
    if meta is None or meta.get("format") != ARTIFACT_FORMAT:
        raise SteelscanError(f"{path} is not a steelscan artifact (no {META_KEY} of format {ARTIFACT_FORMAT}): "
                             "export it with `steelscan export RUN`")
    if meta.get("artifact_version") != ARTIFACT_VERSION:
        raise SteelscanError(f"{path} is artifact version {meta.get('artifact_version')}; this steelscan reads "
                             f"version {ARTIFACT_VERSION}: re-export it with this version")
    if meta.get("task") != task:
        raise SteelscanError(f"{path} is a {meta.get('task')} artifact; expected a {task} artifact")
    return proto, meta


def _session(model_bytes: bytes, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model_bytes, opts, providers=["CPUExecutionProvider"])


class SegmenterRuntime:
    """Tiles in, probabilities out, from the artifact alone. With `gate=True` the graph is cut in two: the
    encoder and presence head run on every tile, the decoder only on tiles whose highest presence probability
    reaches the artifact's `tile_gate_threshold`; skipped tiles get zero probabilities."""

    def __init__(self, path: str | Path, threads: int = 2) -> None:
        import onnx.utils

        proto, self.meta = read_artifact(path, "segmentation")
        self.tile = tuple(self.meta["tile"])
        self.mean, self.std = float(self.meta["mean"]), float(self.meta["std"])
        self.full = _session(proto.SerializeToString(), threads)
        feats = self.meta["feature_outputs"]
        extractor = onnx.utils.Extractor(proto)
        self.gate = _session(extractor.extract_model(["image"], ["presence", *feats]).SerializeToString(), threads)
        decoder = extractor.extract_model(feats, ["masks"])
        self.decoder = _session(decoder.SerializeToString(), threads)
        self.decoder_inputs = [i.name for i in self.decoder.get_inputs()]

    def normalise(self, tiles: np.ndarray) -> np.ndarray:
        """uint8 [N, h, w] -> float32 [N, 1, h, w] as the model was trained."""
        x = tiles.astype(np.float32)[:, None]
        x *= 1.0 / 255.0
        x -= self.mean
        x /= self.std
        return x

    def predict(self, tiles: np.ndarray, gate: bool = True) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """uint8 tiles [N, h, w] -> (probabilities float32 [N, 4, h, w], presence [N, 4], decoded bool [N])."""
        x = self.normalise(tiles)
        if not gate:
            masks, presence = self.full.run(["masks", "presence"], {"image": x})
            return masks, presence, np.ones(len(x), bool)
        out = self.gate.run(None, {"image": x})
        presence, feats = out[0], dict(zip(self.meta["feature_outputs"], out[1:]))
        keep = presence.max(1) >= float(self.meta["tile_gate_threshold"])
        masks = np.zeros((len(x), len(self.meta["class_names"]), *x.shape[2:]), np.float32)
        if keep.any():
            masks[keep] = self.decoder.run(None, {n: feats[n][keep] for n in self.decoder_inputs})[0]
        return masks, presence, keep
