"""Inspection-station throughput of a detector: eager PyTorch on whole frames vs the station's tiled path.

One process, the same synthetic coil frames (1600x256, `steelscan synth coil`, seed 3: never trained on) and the
same weights for every row:

* "eager PyTorch, whole frame": the checkpoint's torchvision detector on each full frame as one image, as a
  notebook would call it (its transform resizes the frame to its `max_size`, so small defects shrink);
* "station, PyTorch": `DetectorChain` (tiles of the detector's training size, overlapping, boxes merged
  across tiles), the checkpoint through PyTorch;
* "station, ONNX Runtime": the same chain on the exported artifact (pre- and post-processing inside).

Each row reports frames/s, Mpx/s and recall / precision of its boxes against the coil's truth boxes in each
frame (IoU >= 0.3, any class), so a faster row that finds less shows it. Timing: 2 warm-up frames, then the best
of `--repeats` passes over `--frames` frames, `--threads` threads.

    .venv/bin/python benchmarks/throughput_detector.py            # built-in coil-demo, 12 frames
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from steelscan.core.errors import SteelscanError
from steelscan.data.synthetic import write_coil
from steelscan.deploy.export import export_artifact
from steelscan.deploy.predictors import load_predictor
from steelscan.inspection.chain import DetectorChain
from steelscan.inspection.runner import frame_paths, read_frame
from steelscan.metrics import box_iou

sys.path.insert(0, str(Path(__file__).parent))  # benchmarks/ is not a package
from throughput import best_pass  # noqa: E402


def frame_truth(truth: dict, n_frames: int) -> list[np.ndarray]:
    """Truth boxes (xyxy, frame px) per frame; slivers under 4 px are not counted (no detector sees them)."""
    out: list[list] = [[] for _ in range(n_frames)]
    for d in truth["defects"]:
        for f in d["frames"]:
            x0, y0, x1, y1 = f["bbox"]
            if min(x1 - x0, y1 - y0) >= 4:
                out[f["frame"]].append(f["bbox"])
    return [np.array(b, np.float32).reshape(-1, 4) for b in out]


def recall_precision(found: list[np.ndarray], truth: list[np.ndarray], iou: float = 0.3) -> tuple[float, float]:
    tp_t = tp_f = n_t = n_f = 0
    for f, t in zip(found, truth):
        n_t, n_f = n_t + len(t), n_f + len(f)
        if len(f) and len(t):
            m = box_iou(f, t) >= iou
            tp_t, tp_f = tp_t + int(m.any(0).sum()), tp_f + int(m.any(1).sum())
    return tp_t / max(n_t, 1), tp_f / max(n_f, 1)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="coil-demo", help="a detector checkpoint, run folder or built-in name")
    ap.add_argument("--frames", type=int, default=12)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="benchmarks/results/throughput_detector.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="steelscan-det-throughput-") as tmp:
        coil = Path(tmp) / "coil"
        write_coil(coil, n_frames=args.frames, seed=3, workers=1, frame_width=1600, frame_height=256,
                   frame_overlap=16, strip_width_mm=2200, defects_per_metre=2.0)
        frames = [read_frame(p) for p in frame_paths(coil)]
        truth = frame_truth(json.loads((coil / "defects_truth.json").read_text()), len(frames))
        torch_det = load_predictor(args.model, task="detection", threads=args.threads)
        onnx_path = export_artifact(args.model, Path(tmp) / "det.onnx", "onnx")
        onnx_det = load_predictor(onnx_path, task="detection", threads=args.threads)
        h, w = frames[0].shape

        def eager(batch: list[np.ndarray]) -> list[np.ndarray]:
            return [d["boxes"] for d in torch_det.predict(batch)]

        def station(det):
            chain = DetectorChain(det)

            def run(batch: list[np.ndarray]) -> list[np.ndarray]:
                items = [(k, f, (0, h)) for k, f in enumerate(batch)]
                return [np.array([p.bbox for p in pieces], np.float32).reshape(-1, 4)
                        for pieces, _ in chain.pieces(items)]
            return run, chain

        rows = []
        run_t, chain = station(torch_det)
        run_o, _ = station(onnx_det)
        for name, run in (("eager PyTorch, whole frame", eager), ("station, PyTorch", run_t),
                          ("station, ONNX Runtime", run_o)):
            seconds, out = best_pass(run, frames, args.repeats)
            recall, precision = recall_precision(out, truth)
            fps = len(frames) / seconds
            rows.append({"path": name, "frames_per_s": fps, "mpx_per_s": fps * h * w / 1e6, "ms_per_frame": 1000 / fps,
                         "recall": recall, "precision": precision})
    load_after = os.getloadavg()
    for r in rows:
        r["speedup_vs_eager"] = r["frames_per_s"] / rows[0]["frames_per_s"]
    meta = torch_det.meta
    table = Table("path", "frames/s", "Mpx/s", "ms/frame", "x eager", "recall", "precision",
                  title=f"{args.model} ({meta.model}) on {len(frames)} SYNTHETIC coil frames {w}x{h} (seed 3), "
                        f"tiles {chain.tile[1]}x{chain.tile[0]} overlap {chain.tile_overlap}, {args.threads} threads")
    for r in rows:
        table.add_row(r["path"], f"{r['frames_per_s']:.2f}", f"{r['mpx_per_s']:.2f}", f"{r['ms_per_frame']:.0f}",
                      f"{r['speedup_vs_eager']:.2f}", f"{r['recall']:.3f}", f"{r['precision']:.3f}")
    Console().print(table)
    Console().print(f"recall / precision: boxes vs the coil's truth boxes per frame, IoU >= 0.3, any class. "
                    f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    import onnxruntime

    doc = {"model": args.model, "arch": meta.model, "data": "synthetic coil, seed 3", "synthetic": True,
           "n_frames": len(frames), "frame_shape": [h, w], "tile": list(chain.tile), "tile_overlap": chain.tile_overlap,
           "score_threshold": torch_det.score_threshold, "threads": args.threads, "repeats": args.repeats,
           "load_average_before": load_before, "load_average_after": load_after,
           "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "cpu": platform.processor() or platform.machine(),
           "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "rows": rows}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


if __name__ == "__main__":
    try:
        main()
    except SteelscanError as exc:
        sys.exit(f"throughput_detector: {exc}")
