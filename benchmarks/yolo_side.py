"""The YOLO side of `benchmarks/detection_vs_yolo.py`: train YOLOv8n for a wall-clock budget, predict, write JSON.

ultralytics is AGPL-3.0: this file runs only in its own virtual environment (.venv-yolo, made on demand by the
main script), never in steelscan's, and imports nothing from steelscan. The two sides talk through JSON files:

    .venv-yolo/bin/python benchmarks/yolo_side.py REQUEST.json RESULT.json

Fairness settings applied here (the main script states them in its table):
- threads: ultralytics' `select_device` calls `torch.set_num_threads(NUM_THREADS)` with NUM_THREADS =
  min(8, cpu_count - 1), i.e. 1 on a 2-core machine, and its import sets OMP_NUM_THREADS=1 when unset. We set
  OMP_NUM_THREADS and patch `ultralytics.utils.torch_utils.NUM_THREADS` to the requested count, and record
  `torch.get_num_threads()` during training and prediction. Data loading is in the main process on CPU
  (ultralytics forces workers=0 there), as in our engine.
- budget: ultralytics' own `time` argument (hours), checked after each optimiser step; val=False so that no
  per-epoch validation eats into it (it still validates once at the end, which is its own mAP50 reported).
- nothing is downloaded: the model is built from `yolov8n.yaml` (from scratch), plots=False and the font check
  is disabled (fonts only serve plots), amp=False, and every outgoing connection is refused and recorded.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path

BLOCKED: list[str] = []


def _refuse_network() -> None:
    def refuse(*args, **kwargs):
        BLOCKED.append(repr(args[:2]))
        raise OSError("network access is disabled in benchmarks/yolo_side.py")

    socket.getaddrinfo = refuse  # type: ignore[assignment]
    socket.socket.connect = lambda self, address: refuse(address)  # type: ignore[method-assign]


def _predict(model, images: list, batch: int, kw: dict) -> tuple[list, float]:
    """Detections for images (BGR uint8 arrays) in chunks of `batch`; returns them and ms per image."""
    out, t0 = [], time.perf_counter()
    for i in range(0, len(images), batch):
        out += model.predict(images[i : i + batch], **kw)
    return out, 1000.0 * (time.perf_counter() - t0) / max(len(images), 1)


def main(request_path: str, result_path: str) -> None:
    req = json.loads(Path(request_path).read_text())
    threads = int(req["threads"])
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(threads)
    _refuse_network()

    import cv2
    import torch

    torch.set_num_threads(threads)
    import ultralytics
    import ultralytics.data.utils as data_utils
    import ultralytics.utils.torch_utils as torch_utils
    from ultralytics import YOLO

    torch_utils.NUM_THREADS = threads  # what select_device() resets torch's intra-op threads to
    data_utils.check_font = lambda *a, **k: None  # would download Arial.ttf; fonts only draw plots (off)

    seen: dict[str, int] = {}
    epochs: list[list[float]] = []
    model = YOLO(req["model"])  # a .yaml: random initialisation

    def epoch_start(trainer) -> None:
        epochs.append([time.perf_counter(), time.perf_counter()])
        seen.setdefault("train_first_epoch", torch.get_num_threads())

    def epoch_end(trainer) -> None:
        epochs[-1][1] = time.perf_counter()
        seen["train_last_epoch"] = torch.get_num_threads()

    model.add_callback("on_train_epoch_start", epoch_start)
    model.add_callback("on_train_epoch_end", epoch_end)
    train_args = dict(data=req["data_yaml"], imgsz=req["imgsz"], time=req["budget_minutes"] / 60.0,
                      batch=req["batch"], workers=0, device="cpu", amp=False, plots=False, val=False, cache="ram",
                      seed=req["seed"], project=req["project"], name="train", exist_ok=True, verbose=True)
    t0 = time.perf_counter()
    metrics = model.train(**train_args)
    train_wall = time.perf_counter() - t0
    names = req["class_names"]
    own = {}
    box = getattr(metrics, "box", None)
    if box is not None:  # ultralytics' own validation of the final weights (its 101-point AP, its matching)
        own = {"map50": float(box.map50), "map50_95": float(box.map),
               "per_class_ap50": {names[int(c)]: float(a) for c, a in zip(box.ap_class_index, box.ap50)}}

    trained = YOLO(str(Path(model.trainer.last)))  # the final (EMA) weights, not a checkpoint picked on val
    images = [cv2.imread(p, cv2.IMREAD_COLOR) for p in req["val_images"]]
    kw = dict(imgsz=req["imgsz"], conf=req["conf"], iou=req["iou"], max_det=req["max_det"], device="cpu",
              verbose=False)
    trained.predict(images[: req["batch_eval"]], **kw)  # warm-up
    results, ms_batched = _predict(trained, images, req["batch_eval"], kw)
    seen["predict"] = torch.get_num_threads()
    _, ms_b1 = _predict(trained, [images[i] for i in req["timing_indices"]], 1, kw)
    preds = [{"boxes": r.boxes.xyxy.tolist(), "scores": r.boxes.conf.tolist(), "labels": [int(c) for c in r.boxes.cls]}
             for r in results]
    Path(result_path).write_text(json.dumps({
        "preds": preds, "ms_per_image_batched": ms_batched, "ms_per_image_batch1": ms_b1,
        "train_minutes": sum(b - a for a, b in epochs) / 60.0, "train_wall_minutes": train_wall / 60.0,
        "epochs": len(epochs), "threads_seen": seen, "ultralytics_val": own, "train_args": train_args,
        "predict_args": kw, "versions": {"ultralytics": ultralytics.__version__, "torch": torch.__version__},
        "blocked_connections": BLOCKED, "weights": str(model.trainer.last),
    }))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: yolo_side.py REQUEST.json RESULT.json")
    main(sys.argv[1], sys.argv[2])
