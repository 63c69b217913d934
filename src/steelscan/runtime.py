"""ONNX Runtime sessions for exported artifacts: the fast path that reads only the artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from steelscan.errors import SteelscanError
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
