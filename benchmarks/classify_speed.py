"""NEU-CLS classifier throughput and accuracy per runtime: PyTorch eager, ONNX Runtime fp32, ORT int8, and
OpenVINO fp32 / bf16 when the optional package is installed; each plain and with flip TTA (none + hflip + vflip).

Data: the validation split (n % 5 == 4) of ../shared/data/neu-cls. Throughput is batched inference on
preprocessed tensors (batch 64, already resized and normalised), with the thread count given. The runtimes
are timed round-robin (one full pass each, `--repeats` rounds) so that a load spike on a shared machine hits
them alike; the table shows the best pass, the JSON also the median. Resizing + normalising is timed apart.

int8: the fp32 ONNX model is first run through ORT's `quant_pre_process` (shape inference + graph
optimisation; without it the static QDQ model is slower than fp32), then quantised statically (QDQ,
per-channel) with calibration images from the *training* split (n % 5 in {1, 2, 3}), never the images it
is scored on.

Without ../shared/data/neu-cls (a fresh clone with no data), `write_neu_cls` writes a synthetic NEU-CLS folder
(`--synthetic-images` BMPs, seed 0) to a temporary folder; the table title and the JSON say "synthetic" (the
accuracy of the real-data model on synthetic textures says nothing about NEU-CLS; the speed still holds).

    .venv/bin/python benchmarks/classify_speed.py --model neu-cls --threads 2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from steelscan.core.errors import SteelscanError
from steelscan.data.neu import is_heldout, neu_split
from steelscan.data.synthetic import write_neu_cls
from steelscan.data.neu import list_neu_cls, load_grey_image
from steelscan.tasks.classification.evaluate import predict_logits
from steelscan.deploy.artifact import ort_session
from steelscan.deploy.export import export_classifier, quantize_int8
from steelscan.deploy.openvino_runtime import OpenVinoBackend, openvino_available
from steelscan.deploy.predictors import ClassifierPredictor, OnnxBackend
from steelscan.engine.runs import load_checkpoint


def tta_np(run, x: np.ndarray) -> np.ndarray:
    """Mean logits over none, hflip (last axis) and vflip (second to last), as `predict_logits(tta=True)`."""
    return (run(x) + run(x[..., ::-1].copy()) + run(x[..., ::-1, :].copy())) / 3


def batched(run, x: np.ndarray, batch: int) -> np.ndarray:
    return np.concatenate([run(x[i : i + batch]) for i in range(0, len(x), batch)])


def one_pass(run, x: np.ndarray, batch: int) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(x), batch):
        run(x[i : i + batch])
    return time.perf_counter() - t0


DEFAULT_DATA = "../shared/data/neu-cls"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="neu-cls")
    ap.add_argument("--data", default=DEFAULT_DATA,
                    help="a NEU-CLS folder; when the default is absent, a synthetic one is written to a temp folder")
    ap.add_argument("--synthetic-images", type=int, default=600,
                    help="images written when the data is synthetic (balanced; 1 in 5 is NEU's held-out fifth)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--calibration", type=int, default=216, help="training images used to calibrate int8")
    ap.add_argument("--json", default="benchmarks/results/classify_speed.json")
    args = ap.parse_args(argv)
    if not Path(args.data).exists() and args.data != DEFAULT_DATA:
        ap.error(f"--data {args.data}: no such folder (expected a flat NEU-CLS folder of Cr_1.bmp ...); leave "
                 f"--data out to benchmark on synthetic NEU-CLS images")
    with tempfile.TemporaryDirectory(prefix="steelscan-classify-speed-") as tmp:
        synth_note = None
        if not Path(args.data).exists():
            summary = write_neu_cls(Path(tmp) / "neu-cls", n=args.synthetic_images, seed=0, workers=1)
            synth_note = (f"{args.data} absent: {summary.n_images} synthetic NEU-CLS images written by "
                          f"write_neu_cls (seed 0) to a temporary folder")
            print(synth_note)
            args.data = str(summary.out)
        return _run(args, synth_note)


def _run(args: argparse.Namespace, synth_note: str | None) -> dict:
    torch.set_num_threads(args.threads)
    logging.getLogger().setLevel(logging.ERROR)  # the ORT quantiser's warnings are not results
    load_before = os.getloadavg()

    model, meta = load_checkpoint(args.model)
    items = [it for it in list_neu_cls(args.data) if not is_heldout(it.number)]
    val = [it for it in items if neu_split(it.number) == "val"]
    train = [it for it in items if neu_split(it.number) == "train"]
    y = np.array([it.label for it in val])
    val_images = [load_grey_image(it.path) for it in val]
    t0 = time.perf_counter()
    preprocess = ClassifierPredictor.from_module(model, meta).pre_process  # the predictors' own resize + normalise
    x = preprocess(val_images)
    preprocess_ms = 1000 * (time.perf_counter() - t0) / len(val_images)
    step = max(1, len(train) // args.calibration)
    calib = preprocess([load_grey_image(it.path) for it in train[::step][: args.calibration]])

    def torch_run(b: np.ndarray) -> np.ndarray:
        return predict_logits(model, torch.from_numpy(b)).numpy()

    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_classifier(model, meta, Path(tmp) / "m.onnx")
        int8 = quantize_int8(fp32, Path(tmp) / "m.int8.onnx", calib)  # with ORT's pre-processing
        sizes = {"onnxruntime fp32": fp32.stat().st_size, "onnxruntime int8 (static QDQ)": int8.stat().st_size}
        runtimes = {"pytorch eager fp32": torch_run}
        for name, path in (("onnxruntime fp32", fp32), ("onnxruntime int8 (static QDQ)", int8)):
            backend = OnnxBackend(ort_session(path, args.threads))
            runtimes[name] = lambda b, be=backend: be(b)[0]
        if openvino_available():  # the optional extra; bf16 pays on CPUs with AMX / AVX512-bf16
            import openvino as ov

            for precision in ("f32", "bf16"):
                backend = OpenVinoBackend(ov.Core().read_model(str(fp32)), args.threads, precision=precision)
                runtimes[f"openvino {precision}"] = lambda b, be=backend: be(b)[0]
        logits = {name: batched(run, x, args.batch) for name, run in runtimes.items()}  # also the warm-up
        passes: dict[str, list[float]] = {name: [] for name in runtimes}
        tta_passes: dict[str, list[float]] = {name: [] for name in runtimes}
        for _ in range(args.repeats):
            for name, run in runtimes.items():
                passes[name].append(one_pass(run, x, args.batch))
                tta_passes[name].append(one_pass(lambda b, r=run: tta_np(r, b), x, args.batch))
        rows = []
        for name, run in runtimes.items():
            best, median = min(passes[name]), statistics.median(passes[name])
            rows.append({"runtime": name, "images_per_s": len(x) / best, "ms_per_image": 1000 * best / len(x),
                         "images_per_s_median": len(x) / median, "images_per_s_tta": len(x) / min(tta_passes[name]),
                         "val_accuracy": float((logits[name].argmax(1) == y).mean()),
                         "val_accuracy_tta": float((tta_np(run, x).argmax(1) == y).mean()),
                         "file_bytes": sizes.get(name)})
    load_after = os.getloadavg()
    what = "SYNTHETIC NEU-CLS val (written by write_neu_cls)" if synth_note else "NEU-CLS val"
    table = Table("runtime", "images/s (best)", "images/s (median)", "ms/image", "val acc", "images/s with TTA",
                  "val acc (TTA)",
                  title=f"{args.model} ({meta.model} @ {meta.input_size[0]} px) on {what}, n={len(y)}, "
                        f"batch {args.batch}, {args.threads} threads")
    for r in rows:
        table.add_row(r["runtime"], f"{r['images_per_s']:.0f}", f"{r['images_per_s_median']:.0f}", f"{r['ms_per_image']:.2f}",
                      f"{100 * r['val_accuracy']:.2f}%", f"{r['images_per_s_tta']:.0f}", f"{100 * r['val_accuracy_tta']:.2f}%")
    con = Console()
    con.print(table)
    con.print(f"preprocessing (resize 200 -> {meta.input_size[0]} + normalise, numpy/OpenCV): {preprocess_ms:.3f} ms/image; "
              f"load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    import onnxruntime

    doc = {
        "model": args.model, "arch": meta.model, "image_size": meta.input_size[0],
        "data": "synthetic NEU-CLS in a temporary folder (write_neu_cls, seed 0)" if synth_note else args.data,
        "synthetic": synth_note is not None, "synthetic_note": synth_note,
        "split": "val (n % 5 == 4)", "n_images": len(y), "threads": args.threads, "batch": args.batch,
        "repeats": args.repeats, "calibration": f"{len(calib)} training images (n % 5 in {{1, 2, 3}})",
        "preprocess_ms_per_image": preprocess_ms, "load_average_before": load_before, "load_average_after": load_after,
        "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "rows": rows,
    }
    out.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


if __name__ == "__main__":
    try:
        main()
    except SteelscanError as exc:  # bad input (a model or data folder that does not fit): its message, no traceback
        sys.exit(f"classify_speed: {exc}")
