"""Detectors on NEU-DET validation images: mAP@0.5 and ms/image in eager PyTorch and through ONNX Runtime.

The issue's speed bar is <= 15 ms/image at batch 8 on 2 threads through ONNX Runtime; the same images give
the mAP on both back ends, so a faster path that loses accuracy shows. ONNX: the exported artifact (pre- and
post-processing inside), one image per call, as the station runs it.

    .venv/bin/python benchmarks/detector_speed.py                          # the built-in neu-det
    .venv/bin/python benchmarks/detector_speed.py --model neu-det --model runs/neu_det_fcos_lite0-...
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

from steelscan.deploy.export import export_detector
from steelscan.deploy.predictors import DetectorPredictor
from steelscan.deploy.predictors.factory import load_predictor
from steelscan.engine.runs import load_checkpoint
from steelscan.metrics import evaluate_detection, to_jsonable
from steelscan.tasks.detection.data import load_split_samples

REPO = Path(__file__).resolve().parents[1]


def timed(predictor, images: list, batch: int) -> tuple[list, float]:
    predictor.predict(images[:batch])  # warm-up
    t0 = time.perf_counter()
    preds = predictor.predict(images)
    return preds, 1000.0 * (time.perf_counter() - t0) / len(images)


def measure(model_ref: str, images: list, truths: list, batch: int, work: Path) -> dict:
    model, meta = load_checkpoint(model_ref)
    out = {"model": model_ref, "architecture": meta.model, "input": list(meta.input_size)}
    sides = {"eager PyTorch": DetectorPredictor.from_module(model, meta, score_threshold=0.0, batch_size=batch)}
    if not meta.model_kwargs.get("dcn"):
        path = export_detector(model, meta, work / f"{Path(model_ref).name}.onnx")
        sides["ONNX Runtime"] = load_predictor(path, score_threshold=0.0, batch_size=batch)
    for name, predictor in sides.items():
        preds, ms = timed(predictor, images, batch)
        r = evaluate_detection(preds, truths, num_classes=len(meta.class_names), coco=False)
        out[name] = {"ms_per_image": ms, "map50": r["map50"]}
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", action="append", help="run folder, checkpoint or built-in name (default neu-det)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "neu-det")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--limit", type=int, default=None, help="first N validation images only (smoke runs)")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "detector_speed.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    samples = load_split_samples(args.data, "val")[: args.limit]
    images, truths = [s.image for s in samples], [s.truth for s in samples]
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        rows = [measure(m, images, truths, args.batch, Path(tmp)) for m in args.model or ["neu-det"]]
    res = {"data": str(args.data), "n_images": len(images), "batch": args.batch, "threads": args.threads,
           "load_average_start": load, "load_average_end": os.getloadavg(), "rows": rows}
    table = Table("model", "architecture", "back end", "ms/image", "mAP@0.5",
                  title=f"NEU-DET val ({len(images)} images), batch {args.batch}, {args.threads} threads, "
                        f"load {load[0]:.1f}")
    for r in rows:
        for side in ("eager PyTorch", "ONNX Runtime"):
            if side in r:
                table.add_row(r["model"], r["architecture"], side, f"{r[side]['ms_per_image']:.1f}",
                              f"{r[side]['map50']:.4f}")
    Console().print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(to_jsonable(res), indent=2) + "\n")
    print(f"wrote {args.json}")
    return res


if __name__ == "__main__":
    main()
