"""NEU-CLS classifier throughput and accuracy per runtime: PyTorch eager, ONNX Runtime fp32, ORT int8.

Data: the validation split (n % 5 == 4) of ../shared/data/neu-cls. Throughput is batched inference on
preprocessed tensors (batch 64), with the thread count given, best of `--repeats` timed passes.

    .venv/bin/python benchmarks/classify_speed.py --model neu-cls --threads 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from steelscan.data.classification import neu_split
from steelscan.data.neu import list_neu_cls, load_grey_image
from steelscan.evaluate import predict_logits
from steelscan.export import export_onnx, quantize_int8
from steelscan.predict import preprocess
from steelscan.runs import load_checkpoint
from steelscan.runtime import onnx_logits, onnx_session


def tta_np(run, x: np.ndarray) -> np.ndarray:
    return (run(x) + run(x[..., ::-1].copy()) + run(x[..., ::-1, :].copy())) / 3


def timed(run, x: np.ndarray, batch: int, repeats: int) -> tuple[np.ndarray, float]:
    out = np.concatenate([run(x[i : i + batch]) for i in range(0, len(x), batch)])
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(0, len(x), batch):
            run(x[i : i + batch])
        best = min(best, time.perf_counter() - t0)
    return out, len(x) / best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="neu-cls")
    ap.add_argument("--data", default="../shared/data/neu-cls")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default="benchmarks/results/classify_speed.json")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    model, meta = load_checkpoint(args.model)
    items = [it for it in list_neu_cls(args.data) if neu_split(it.number) == "val"]
    y = np.array([it.label for it in items])
    x = preprocess([load_grey_image(it.path) for it in items], meta).numpy()

    def torch_run(b: np.ndarray) -> np.ndarray:
        return predict_logits(model, torch.from_numpy(b)).numpy()

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = export_onnx(model, meta, Path(tmp) / "m.onnx")
        int8 = quantize_int8(fp32, Path(tmp) / "m.int8.onnx", x[:: max(1, len(x) // 128)])
        runtimes = {"pytorch eager fp32": torch_run}
        for name, path in (("onnxruntime fp32", fp32), ("onnxruntime int8 (static QDQ)", int8)):
            sess, _ = onnx_session(path, args.threads)
            runtimes[name] = lambda b, s=sess: onnx_logits(s, b)
        for name, run in runtimes.items():
            logits, ips = timed(run, x, args.batch, args.repeats)
            acc_tta = float((tta_np(run, x).argmax(1) == y).mean())
            rows.append({"runtime": name, "images_per_s": ips, "ms_per_image": 1000 / ips,
                         "val_accuracy": float((logits.argmax(1) == y).mean()), "val_accuracy_tta": acc_tta})
    table = Table("runtime", "images/s", "ms/image", "val acc", "val acc (TTA, 3x cost)",
                  title=f"{args.model} ({meta['model']} @ {meta['image_size']} px) on NEU-CLS val, n={len(y)}, "
                        f"batch {args.batch}, {args.threads} threads")
    for r in rows:
        table.add_row(r["runtime"], f"{r['images_per_s']:.0f}", f"{r['ms_per_image']:.2f}",
                      f"{100 * r['val_accuracy']:.2f}%", f"{100 * r['val_accuracy_tta']:.2f}%")
    Console().print(table)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"model": args.model, "arch": meta["model"], "image_size": meta["image_size"],
                               "data": args.data, "split": "val (n % 5 == 4)", "n_images": len(y),
                               "threads": args.threads, "batch": args.batch, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
