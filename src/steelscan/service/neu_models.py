"""The single-image NEU models behind POST /v1/classify and /v1/detect, loaded on first use.

Each runs on its own one-thread pool: calls stay off the event loop, and one model call at a time keeps the
two cores from thrashing. Weights load only from the configured name or path, with weights_only=True
(`steelscan.runs.load_checkpoint`).
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
        self._loaded: tuple | None = None
        self._error: str | None = None

    def load(self) -> tuple:
        with self._lock:
            if self._loaded is None and self._error is None:
                from steelscan.runs import load_checkpoint

                try:
                    net, meta = load_checkpoint(self.ref)
                except (SteelscanError, FileNotFoundError, ValueError) as exc:
                    self._error = str(exc)
                else:
                    if meta.get("task") != self.task:
                        self._error = f"{self.ref} is a {meta.get('task')} model; expected a {self.task} model"
                    else:
                        self._loaded = (net.eval(), meta)
            if self._loaded is None:
                raise ModelUnavailable(f"no {self.task} model: {self._error}")
            return self._loaded

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)


def classify(model: LazyModel, image: np.ndarray) -> dict:
    from steelscan.predict import classify_batch

    net, meta = model.load()
    probs = classify_batch(net, meta, [image], batch_size=1)[0]
    names = list(meta["class_names"])
    k = int(probs.argmax())
    return {"model": model.ref, "class": names[k], "probability": float(probs[k]),
            "probabilities": {n: float(p) for n, p in zip(names, probs)}}


def detect(model: LazyModel, image: np.ndarray) -> dict:
    from steelscan.evaluate_detection import detect_images

    net, meta = model.load()
    threshold = float(meta.get("score_threshold", 0.3))
    d = detect_images(net, [image], 1, threshold)[0]
    names = list(meta["class_names"])
    boxes = [{"class": names[int(lab)], "score": float(s), "box": [round(float(v), 1) for v in b]}
             for b, s, lab in zip(d["boxes"], d["scores"], d["labels"])]
    return {"model": model.ref, "score_threshold": threshold, "detections": boxes}
