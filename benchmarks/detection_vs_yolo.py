"""NEU-DET: our best detector recipe against ultralytics YOLOv8n, trained for the same wall-clock budget.

What it measures, for both models on the same split (val = NEU image numbers n % 5 == 4; numbers divisible
by 5 are held out elsewhere and never read): VOC all-point mAP@0.5 per class and overall, computed by OUR
metric code (`steelscan.metrics.evaluate_detection`) from each model's detections on the same val images;
ms/image of inference from in-memory uint8 images to detections (batch 1 on `--timing-images` evenly spread
val images, and batched over all of them); training minutes (training loop only, evaluation excluded).
ultralytics' own val mAP50 (its 101-point AP and matching) is recorded beside it for reference.

Fairness: the same training budget (ours: `train.time_budget_minutes`; YOLO: its `time` argument), the same
threads (`--threads`, measured inside each process), data loading in the main process for both, and the
same split. Ours runs with train.epochs=1000 so that the budget, not the epoch count, ends training; its
cosine schedule then follows the budget, as ultralytics re-fits its schedule to `time`. Ours is the recipe of `--ours-config` (Faster R-CNN + FPN on EfficientNet-Lite0 with the
offline ImageNet weights, native 200 px); YOLOv8n trains from scratch (`yolov8n.yaml`: no weights can be
downloaded here) at `--imgsz` (224: stride-32 multiples only; ultralytics would round 200 up to 224 itself),
with its own defaults otherwise (batch 16, mosaic, EMA). Each side evaluates with its own recipe's
thresholds (YOLO: conf 0.001, IoU 0.7, 300 detections, as its val does; ours: its config's).

ultralytics is AGPL-3.0: it is installed on demand into its own venv (`.venv-yolo`, see YOLO_INSTALL) and run
in a subprocess (`benchmarks/yolo_side.py`), never imported here nor by steelscan.

    .venv/bin/python benchmarks/detection_vs_yolo.py --budget-minutes 60    # the real run: ~2.5 h wall on an idle machine
    .venv/bin/python benchmarks/detection_vs_yolo.py --budget-minutes 1 --json runs/det_vs_yolo_smoke.json
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from steelscan.config import load_config
from steelscan.data.classes import NEU_CLASSES
from steelscan.data.formats import read_data
from steelscan.data.splits import split_items
from steelscan.engine.fit import fit
from steelscan.tasks.detection.evaluate import detect_images
from steelscan.metrics import evaluate_detection, to_jsonable
from steelscan.engine.runs import load_checkpoint
from steelscan.tasks.detection.data import load_samples

REPO = Path(__file__).resolve().parents[1]
ULTRALYTICS = "ultralytics==8.4.190"
YOLO_INSTALL = ["torch==2.14.1", "torchvision==0.29.1", ULTRALYTICS]  # torch from the local wheel store
log = logging.getLogger("detection_vs_yolo")


def yolo_env(threads: int, config_dir: Path) -> dict[str, str]:
    """The YOLO process's environment: our thread count, offline, no auto-install, settings kept in the run folder."""
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "YOLO_OFFLINE": "1",
            "HF_HUB_OFFLINE": "1", "YOLO_AUTOINSTALL": "false", "YOLO_CONFIG_DIR": str(config_dir.resolve())}


def yolo_python(venv: Path, env: dict[str, str]) -> Path:
    """The python of the YOLO venv, made and installed on demand (pinned versions, nothing else)."""
    python = venv / "bin" / "python"
    check = [str(python), "-c", "import ultralytics; print(ultralytics.__version__)"]
    if python.exists():
        found = subprocess.run(check, capture_output=True, text=True, env=env).stdout.split()
        if found and found[-1] == ULTRALYTICS.split("==")[1]:
            return python
    log.info("installing %s into %s (AGPL-3.0, benchmark only)", " ".join(YOLO_INSTALL), venv)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "--quiet", *YOLO_INSTALL], check=True)
    return python


class Split(NamedTuple):
    train: list  # DetSample, named by the item name (the image's path in the data set, e.g. IMAGES/crazing_1.jpg)
    val: list
    rule: str


def load_split(data_root: Path) -> Split:
    """NEU-DET in memory on both sides of steelscan's split (the one training makes: NEU numbers, n % 5 == 4 val)."""
    parts = split_items(read_data(data_root))
    return Split(load_samples(parts.train), load_samples(parts.val), parts.record["rule"])


def write_yolo_dataset(data_root: Path, split, out: Path) -> tuple[Path, list[str]]:
    """Copy the split's images into YOLO's layout with `class cx cy w h` labels (normalised); -> data.yaml, val paths."""
    shutil.rmtree(out, ignore_errors=True)
    val_paths = []
    for side, samples in (("train", split.train), ("val", split.val)):
        (out / "images" / side).mkdir(parents=True)
        (out / "labels" / side).mkdir(parents=True)
        for s in samples:
            src = Path(data_root) / s.name  # item names are paths relative to the data set's root
            dst = out / "images" / side / src.name
            shutil.copyfile(src, dst)  # the 3-channel JPEG as it is
            h, w = s.image.shape[:2]
            b = s.boxes.astype(np.float64)
            rows = [f"{c} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
                    for c, (x1, y1, x2, y2) in zip(s.labels.tolist(), b)]
            (out / "labels" / side / f"{src.stem}.txt").write_text("\n".join(rows) + ("\n" if rows else ""))
            if side == "val":
                val_paths.append(str(dst.resolve()))
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(NEU_CLASSES))
    yaml_path = out / "data.yaml"
    yaml_path.write_text(f"path: {out.resolve()}\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    return yaml_path, val_paths


def ms_per_image(model, images, batch: int) -> float:
    detect_images(model, images[:batch], batch)  # warm-up
    t0 = time.perf_counter()
    detect_images(model, images, batch)
    return 1000.0 * (time.perf_counter() - t0) / max(len(images), 1)


def onnx_ms_per_image(model, meta, images: list, run_dir: Path, batch: int) -> float | None:
    """ms/image through the exported ONNX artifact (ONNX Runtime, one image per call, as the station runs it);
    None for models that do not export (DCN)."""
    from steelscan.core.errors import ModelFileError
    from steelscan.deploy.export import export_detector
    from steelscan.deploy.predictors.factory import load_predictor

    try:
        path = export_detector(model, meta, run_dir / "model.onnx")
    except ModelFileError:
        return None
    predictor = load_predictor(path, batch_size=batch)
    predictor.predict(images[:batch])  # warm-up
    t0 = time.perf_counter()
    predictor.predict(images)
    return 1000.0 * (time.perf_counter() - t0) / len(images)


def run_ours(args, split, timing: list[int]) -> dict:
    overrides = [f"data.root={args.data}", f"train.time_budget_minutes={args.budget_minutes}",
                 f"train.threads={args.threads}", "train.epochs=1000", f"out_dir={args.out}",
                 "name=detection_vs_yolo_ours", "train.num_workers=0", *args.ours_set]
    cfg = load_config(args.ours_config, overrides)
    run_dir = fit(cfg, progress=True)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    model, meta = load_checkpoint(run_dir)
    images = [s.image for s in split.val]
    detect_images(model, images[: args.batch], args.batch)  # warm-up
    t0 = time.perf_counter()
    preds = detect_images(model, images, args.batch)
    ms_batched = 1000.0 * (time.perf_counter() - t0) / len(images)
    d = cfg.detector
    ms_onnx = onnx_ms_per_image(model, meta, images, run_dir, args.batch)
    return {"preds": preds, "ms_per_image_batched": ms_batched, "ms_per_image_onnx": ms_onnx,
            "threads_seen": {"train": metrics["threads"], "predict": torch.get_num_threads()},
            "ms_per_image_batch1": ms_per_image(model, [images[i] for i in timing], 1),
            "train_minutes": metrics["training_minutes_excluding_eval"], "epochs": len(metrics["history"]),
            "train_wall_minutes": metrics["train_minutes"], "run_dir": str(run_dir),
            "eval": {"score_floor": d.box_score_thresh, "max_det": d.box_detections_per_img},
            "model": cfg.model.name, "config": str(args.ours_config), "overrides": overrides}


def run_yolo(args, split, timing: list[int]) -> dict:
    return finish_yolo(start_yolo(args, split, timing))


def start_yolo(args, split, timing: list[int]) -> tuple[subprocess.Popen, Path]:
    """Launch the YOLO side as its own process; -> (process, its result file)."""
    work = args.out / "yolo"
    env = yolo_env(args.threads, work / "config")
    python = yolo_python(args.yolo_venv, env)
    data_yaml, val_paths = write_yolo_dataset(args.data, split, args.out / "yolo_data")
    work.mkdir(parents=True, exist_ok=True)
    request, result = work / "request.json", work / "result.json"
    result.unlink(missing_ok=True)
    request.write_text(json.dumps({
        "model": "yolov8n.yaml", "data_yaml": str(data_yaml), "val_images": val_paths, "imgsz": args.imgsz,
        "threads": args.threads, "budget_minutes": args.budget_minutes, "batch": 16, "batch_eval": args.batch,
        "seed": 0, "project": str(work.resolve()), "conf": 0.001, "iou": 0.7, "max_det": 300,
        "class_names": list(NEU_CLASSES), "timing_indices": timing}))
    proc = subprocess.Popen([str(python), str(REPO / "benchmarks" / "yolo_side.py"), str(request), str(result)],
                            env=env)
    return proc, result


def finish_yolo(started: tuple[subprocess.Popen, Path]) -> dict:
    proc, result = started
    if proc.wait() != 0:
        raise SystemExit(f"the YOLO side failed (exit {proc.returncode}); its log is above")
    out = json.loads(result.read_text())
    out["preds"] = [{"boxes": np.asarray(p["boxes"], np.float32).reshape(-1, 4),
                     "scores": np.asarray(p["scores"], np.float32), "labels": np.asarray(p["labels"], np.int64)}
                    for p in out["preds"]]
    return out


def score(side: dict, truths: list) -> dict:
    r = evaluate_detection(side.pop("preds"), truths, num_classes=len(NEU_CLASSES), coco=False)
    return {**side, "map50": r["map50"], "per_class_ap50": dict(zip(NEU_CLASSES, r["ap50_per_class"]))}


def fmt(x, digits: int = 3) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def print_table(res: dict, console: Console) -> None:
    sides = [(k, v) for k, v in (("ours", res.get("ours")), ("yolo", res.get("yolo"))) if v]
    smoke = " - SMOKE RUN, not a result" if res["smoke"] else ""
    load = res["load_average_start"][0]
    busy = f" - machine busy (load {load:.1f} at start): timings not representative" if load > 1.0 else ""
    if res.get("side_by_side"):
        busy = " - both trained side by side: timings include the other's load"
    t = Table(title=f"NEU-DET val ({res['n_val_images']} images), {res['budget_minutes']:g} min training budget, "
                    f"{res['threads']} threads{smoke}{busy}",
              caption="mAP: VOC all-point AP@0.5 by steelscan.metrics on the same val images for both. "
                      f"Ours: {res.get('ours', {}).get('model', '-')} ({res.get('ours', {}).get('config', '-')}). "
                      f"YOLOv8n: from scratch (yolov8n.yaml, no weights downloadable), imgsz {res['imgsz']}. "
                      "ms/image: uint8 image in memory -> detections. Training minutes exclude evaluation.")
    t.add_column("")
    for name, v in sides:
        t.add_column(f"ours ({v['model']})" if name == "ours" else "YOLOv8n", justify="right")
    for c in NEU_CLASSES:
        t.add_row(f"AP@0.5 {c}", *[fmt(v["per_class_ap50"][c]) for _, v in sides])
    t.add_row("[bold]mAP@0.5[/bold]", *[f"[bold]{fmt(v['map50'])}[/bold]" for _, v in sides])
    t.add_row("mAP50 by ultralytics' val (ref.)", *[fmt(v.get("ultralytics_val", {}).get("map50")) for _, v in sides])
    t.add_row("ms/image, batch 1", *[fmt(v["ms_per_image_batch1"], 1) for _, v in sides])
    t.add_row(f"ms/image, batch {res['batch']}", *[fmt(v["ms_per_image_batched"], 1) for _, v in sides])
    t.add_row("ms/image, ONNX Runtime", *[fmt(v.get("ms_per_image_onnx"), 1) for _, v in sides])
    t.add_row("training minutes", *[fmt(v["train_minutes"], 1) for _, v in sides])
    t.add_row("epochs (last one partial)", *[str(v["epochs"]) for _, v in sides])
    t.add_row("torch threads seen", *[",".join(map(str, sorted(set(v["threads_seen"].values())))) for _, v in sides])
    console.print(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--budget-minutes", type=float, default=60.0, help="training wall-clock budget per model")
    ap.add_argument("--imgsz", type=int, default=224, help="YOLO input size (a multiple of 32)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8, help="inference batch for the mAP pass and batched timing")
    ap.add_argument("--timing-images", type=int, default=96, help="val images timed at batch 1")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "neu-det")
    ap.add_argument("--ours-config", type=Path, default=REPO / "configs" / "neu_det_lite0_fpn.yaml")
    ap.add_argument("--ours-set", action="append", default=[], metavar="KEY=VALUE", help="extra config override")
    ap.add_argument("--yolo-venv", type=Path, default=REPO / ".venv-yolo")
    ap.add_argument("--out", type=Path, default=REPO / "runs", help="run folders and the YOLO data copy")
    ap.add_argument("--skip-yolo", action="store_true")
    ap.add_argument("--skip-ours", action="store_true")
    ap.add_argument("--side-by-side", action="store_true",
                    help="train both at once, each with --threads (on 2 cores: --threads 1); the same budget and "
                         "the same load for both, in half the wall time. Timings then include the other's load")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "detection_vs_yolo.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)

    split = load_split(args.data)
    truths = [s.truth for s in split.val]
    n = len(split.val)
    timing = sorted({int(i) for i in np.linspace(0, n - 1, min(args.timing_images, n))})
    res = {"budget_minutes": args.budget_minutes, "threads": args.threads, "imgsz": args.imgsz, "batch": args.batch,
           "smoke": args.budget_minutes < 10, "n_train_images": len(split.train), "n_val_images": n,
           "split_rule": split.rule, "load_average_start": os.getloadavg()}
    if not args.skip_yolo:  # install (or fail) before spending any budget
        yolo_python(args.yolo_venv, yolo_env(args.threads, args.out / "yolo" / "config"))
    res["side_by_side"] = bool(args.side_by_side and not (args.skip_ours or args.skip_yolo))
    yolo = start_yolo(args, split, timing) if res["side_by_side"] else None
    if not args.skip_ours:
        res["ours"] = score(run_ours(args, split, timing), truths)
    if not args.skip_yolo:
        res["yolo"] = score(finish_yolo(yolo) if yolo else run_yolo(args, split, timing), truths)
    res["load_average_end"] = os.getloadavg()
    print_table(res, Console())
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(to_jsonable(res), indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
