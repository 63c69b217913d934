"""The single-image NEU models behind POST /v1/classify and /v1/detect, loaded on first use.

Each runs on its own one-thread pool: calls stay off the event loop, and one model call at a time keeps the
two cores from thrashing. Weights load only from the configured name or path, with weights_only=True
(`steelscan.deploy.load_predictor`: a checkpoint, or an exported .onnx artifact).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from steelscan.core.errors import SteelscanError


class ModelUnavailable(SteelscanError):
    """The configured model cannot be loaded (HTTP 503 with the reason)."""


class LazyModel:
    def __init__(self, ref: str, task: str):
        self.ref, self.task = ref, task
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{task}")
        self._lock = threading.Lock()
        self._loaded = None  # the predictor, once loaded
        self._error: str | None = None

    def load(self):
        """The predictor (`steelscan.deploy.load_predictor`: a checkpoint or an .onnx artifact), loaded once."""
        with self._lock:
            if self._loaded is None and self._error is None:
                from steelscan.deploy.predictors import load_predictor

                try:
                    self._loaded = load_predictor(self.ref, task=self.task, batch_size=1)
                except SteelscanError as exc:  # missing, empty, truncated, not a model, another task
                    self._error = str(exc)
            if self._loaded is None:
                raise ModelUnavailable(f"no {self.task} model: {self._error}")
            return self._loaded

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def classify(model: LazyModel, image: np.ndarray) -> dict:
    predictor = model.load()
    probs = predictor.predict([image])[0]
    names = list(predictor.class_names)
    k = int(probs.argmax())
    return {"model": model.ref, "class": names[k], "probability": float(probs[k]),
            "probabilities": {n: float(p) for n, p in zip(names, probs)}}


def detect(model: LazyModel, image: np.ndarray) -> dict:
    predictor = model.load()
    d = predictor.predict([image])[0]
    names = list(predictor.class_names)
    boxes = [{"class": names[int(lab)], "score": float(s), "box": [round(float(v), 1) for v in b]}
             for b, s, lab in zip(d["boxes"], d["scores"], d["labels"])]
    return {"model": model.ref, "score_threshold": predictor.score_threshold, "detections": boxes}
