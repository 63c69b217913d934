"""A plant's class-folder data set: `steelscan train --data ROOT --budget-minutes M` vs a plain Lite0 fine-tune.

Rows, both on the same images, the same threads and the same metric code (`classification_metrics`):

* (a) "steelscan train --data ROOT --budget-minutes M": `train_config(data=ROOT, budget_minutes=M)` (the
  classification task's default recipe, nothing else set) + `fit`, then `evaluate_model(run, ROOT, "test")`.
  The recipe chooses everything from the data: classes, channels, input size, the val split it carves.
* (b) "plain ImageNet EfficientNet-Lite0 fine-tune": timm `tf_efficientnet_lite0` with the same offline
  ImageNet weights (`efficientnet_lite0_state_dict(in_chans=3)`, a new head), torchvision `Resize` to the
  input size steelscan chose, `ToTensor`, ImageNet mean/std, AdamW lr 1e-3 (torch defaults otherwise, no
  schedule), plain cross-entropy, no augmentation, steelscan's batch size, the images steelscan trained on
  (its split.json; its val images are not used), held in memory as steelscan holds them. It trains for as
  long as steelscan's run trained (`--baseline-minutes matched`: the training clock of (a), evaluation
  excluded; the recipe's epoch cap can end (a) before M) or for M minutes (`--baseline-minutes budget`),
  checked after every optimiser step as steelscan checks its own; its final weights are scored.

Columns: test accuracy, test macro-F1, epochs completed (the last one may be cut by the budget), training
minutes (training loop incl. data loading, evaluation excluded), ms/image (test inference: resize +
normalise + forward, batch 64, images already decoded, as `steelscan evaluate` times it). The machine load
(`os.getloadavg()`) at the start and the end is printed and written into the JSON.

Data. `--data ROOT`: any class-folder layout (`ROOT/<class>/*.png`, optionally under train/val/test). With
a test folder it is the test split; without one, the test split is empty and the benchmark stops with a
message (steelscan never carves a test split). Without `--data`, a plant-like set is built once under
`out/` from `--source` (default ../shared/data/neu-cls), NEU's images renamed to plant class names
(CLASS_NAMES), resized to `--image-size` (128) px with INTER_AREA and tinted warm (the same tint for every
image, so colour carries no label), as RGB PNGs `ROOT/{train,test}/<class>/img_NNN.png`. Split by NEU
image number n: n % 5 in {1, 2, 3} -> train, n % 5 == 4 -> test (NEU's own val rule, so the test images are
those steelscan's NEU models were validated on), n % 5 == 0 (NEU's held-out fifth) left out; steelscan
then carves its own validation split from train (stratified, 20%, seeded hash of the name). When the
source is absent (a fresh clone), a synthetic NEU-CLS set (`write_neu_cls`, `--synthetic-images`, seed 0)
is the source, and every title and the JSON say "synthetic".

    .venv/bin/python benchmarks/train_any_layout.py --budget-minutes 8 --threads 2 \\
        --json benchmarks/results/train_any_layout_8min.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import timm
import torch
import torch.nn as nn
from PIL import Image
from rich.console import Console
from rich.table import Table
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from steelscan.core.errors import SteelscanError
from steelscan.data.formats import read_data
from steelscan.data.neu import list_neu_cls
from steelscan.data.synthetic import write_neu_cls
from steelscan.engine.fit import fit
from steelscan.metrics import classification_metrics
from steelscan.models.classifier import efficientnet_lite0_state_dict
from steelscan.tasks.evaluate import evaluate_model
from steelscan.tasks.recipes import train_config

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = REPO.parent / "shared" / "data" / "neu-cls"
# NEU class -> the name a plant might give it (spaces kept: class names are folder names).
CLASS_NAMES = {"crazing": "crazing lines", "inclusion": "inclusion", "patches": "oxide patch",
               "pitted_surface": "pitted surface", "rolled-in_scale": "rolled-in scale", "scratches": "scratch"}
TINT_BGR = np.array([0.80, 0.92, 1.00], dtype=np.float32)  # warm lamp light, the same for every image
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
EVAL_BATCH = 64
BUILT = "built.json"


def split_of(number: int) -> str | None:
    """train for n % 5 in {1, 2, 3}, test for n % 5 == 4, None for NEU's held-out fifth (n % 5 == 0)."""
    r = number % 5
    return None if r == 0 else "test" if r == 4 else "train"


def build_plant_folders(source: Path, dst: Path, size: int, limit: int | None = None) -> dict:
    """Write the NEU-CLS folder `source` as plant class folders under `dst` (see the module docstring).

    `limit`: at most this many images per class and split (the lowest numbers). Written to a staging folder
    and renamed at the end, so a killed build never leaves a half-written data set.
    """
    items = sorted(list_neu_cls(source), key=lambda it: (it.class_name, it.number))
    staging = dst.with_name(dst.name + ".partial")
    if staging.exists():
        import shutil

        shutil.rmtree(staging)
    counts: dict[str, dict[str, int]] = {"train": {}, "test": {}}
    for it in items:
        side = split_of(it.number)
        if side is None:
            continue
        name = CLASS_NAMES.get(it.class_name, it.class_name)
        if limit is not None and counts[side].get(name, 0) >= limit:
            continue
        grey = cv2.imread(str(it.path), cv2.IMREAD_GRAYSCALE)
        if grey is None:
            raise SteelscanError(f"{it.path}: not a readable image")
        grey = cv2.resize(grey, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
        bgr = np.clip(grey[..., None] * TINT_BGR + np.array([6, 3, 0], np.float32), 0, 255).astype(np.uint8)
        folder = staging / side / name
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"img_{it.number:03d}.png"), bgr)
        counts[side][name] = counts[side].get(name, 0) + 1
    record = {"source": str(source), "image_size": size, "limit_per_class_and_split": limit,
              "rule": "NEU number n: n % 5 in {1,2,3} -> train, n % 5 == 4 -> test, n % 5 == 0 left out",
              "class_names": CLASS_NAMES, "counts": counts}
    (staging / BUILT).write_text(json.dumps(record, indent=2) + "\n")
    staging.rename(dst)
    return record


def default_data(args: argparse.Namespace, tmp: Path) -> tuple[Path, bool, dict]:
    """The plant-like folder set built from `--source` (or from synthetic NEU-CLS when it is absent)."""
    source = Path(args.source)
    synthetic = not source.exists()
    if synthetic:
        summary = write_neu_cls(tmp / "neu-cls", n=args.synthetic_images, seed=0, workers=1)
        print(f"{source} absent: {summary.n_images} synthetic NEU-CLS images written by write_neu_cls (seed 0)")
        source = summary.out
    tag = f"{'synth' if synthetic else 'neu'}-{args.image_size}px" + (f"-limit{args.limit}" if args.limit else "")
    if synthetic:
        tag += f"-n{args.synthetic_images}"
    root = Path(args.build_dir) / f"plant-folders-{tag}"
    if (root / BUILT).is_file():
        record = json.loads((root / BUILT).read_text())
        print(f"using the class folders built before: {root}")
    else:
        record = build_plant_folders(source, root, args.image_size, args.limit)
        print(f"built class folders {root}: {record['counts']}")
    return root, synthetic, record


class InMemory(Dataset):
    """Decoded RGB images held in memory (as steelscan's ClassificationSet holds them), a transform per access."""

    def __init__(self, images: list[Image.Image], labels: list[int], transform):
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.transform(self.images[i]), self.labels[i]


def load_rgb(path: Path) -> Image.Image:
    with Image.open(path) as im:
        return im.convert("RGB")


def plain_baseline(train_paths: list[Path], train_labels: list[int], test_paths: list[Path], test_labels: list[int],
                   class_names: list[str], size: int, batch_size: int, seconds: float, seed: int = 0) -> dict:
    """timm tf_efficientnet_lite0 + ImageNet weights, Resize + ImageNet normalisation, AdamW 1e-3, CE, no
    augmentation, trained until `seconds` of training time are spent; scored on the test images."""
    torch.manual_seed(seed)
    tf = transforms.Compose([transforms.Resize((size, size)), transforms.ToTensor(),
                             transforms.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    train_set = InMemory([load_rgb(p) for p in train_paths], train_labels, tf)
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=g,
                        drop_last=len(train_set) > batch_size)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=len(class_names), in_chans=3)
    state = {k: v for k, v in efficientnet_lite0_state_dict(in_chans=3).items() if not k.startswith("classifier.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("classifier.") for k in missing):
        raise RuntimeError(f"ImageNet weights did not fit: missing {missing}, unexpected {unexpected}")
    if len(loader) == 0:
        raise SteelscanError("the baseline has no training images")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    steps_per_epoch, steps, spent, losses = len(loader), 0, 0.0, []
    model.train()
    done = False
    while not done:
        t0 = time.perf_counter()
        epoch_loss, n = 0.0, 0
        for x, y in loader:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(x), y)
            loss.backward()
            optimizer.step()
            steps += 1
            epoch_loss, n = epoch_loss + loss.item(), n + 1
            if spent + time.perf_counter() - t0 >= seconds:
                done = True
                break
        spent += time.perf_counter() - t0
        losses.append(epoch_loss / max(n, 1))
        print(f"baseline epoch {len(losses)}: train loss {losses[-1]:.4f}, {spent / 60:.2f} of "
              f"{seconds / 60:.2f} min", flush=True)
    model.eval()
    test_images = [load_rgb(p) for p in test_paths]
    t0 = time.perf_counter()
    preds = []
    with torch.inference_mode():
        for i in range(0, len(test_images), EVAL_BATCH):
            x = torch.stack([tf(im) for im in test_images[i : i + EVAL_BATCH]])
            preds.append(model(x).argmax(1))
    ms = 1000 * (time.perf_counter() - t0) / max(len(test_images), 1)
    m = classification_metrics(test_labels, torch.cat(preds).numpy(), class_names=class_names)
    return {"accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "per_class": m["per_class"], "n_test": m["n"],
            "epochs": steps / steps_per_epoch, "steps": steps, "training_minutes": spent / 60, "ms_per_image": ms,
            "train_loss_per_epoch": losses, "confusion_matrix": m["confusion_matrix"]}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", help="a class-folder data set with a test split; default: built from --source")
    ap.add_argument("--budget-minutes", type=float, default=8.0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default="benchmarks/results/train_any_layout.json")
    ap.add_argument("--baseline-minutes", choices=("matched", "budget"), default="matched",
                    help="matched: as long as steelscan's run trained; budget: --budget-minutes")
    ap.add_argument("--out-dir", default="runs", help="where steelscan's run folder goes")
    ap.add_argument("--source", default=str(DEFAULT_SOURCE), help="NEU-CLS folder the default data set is built from")
    ap.add_argument("--build-dir", default=str(REPO / "out"), help="where the default data set is built")
    ap.add_argument("--image-size", type=int, default=128, help="side of the built images (default data only)")
    ap.add_argument("--limit", type=int, help="at most this many images per class and split (default data only)")
    ap.add_argument("--synthetic-images", type=int, default=1800,
                    help="synthetic NEU-CLS images when --source is absent (1 in 5 is NEU's held-out fifth)")
    args = ap.parse_args(argv)
    if args.budget_minutes <= 0:
        ap.error(f"--budget-minutes must be > 0, got {args.budget_minutes}")
    if args.data is not None and not Path(args.data).is_dir():
        ap.error(f"--data {args.data}: no such folder (expected class folders ROOT/<class>/*.png under "
                 "train/ and test/); leave --data out to build one from NEU-CLS")
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()
    print(f"load average at start: {load_start[0]:.2f} {load_start[1]:.2f} {load_start[2]:.2f}")
    with tempfile.TemporaryDirectory(prefix="steelscan-train-any-layout-") as tmp:
        if args.data is None:
            root, synthetic, built = default_data(args, Path(tmp))
        else:
            root, synthetic, built = Path(args.data), False, None
        return _run(args, root, synthetic, built, load_start)


def _run(args: argparse.Namespace, root: Path, synthetic: bool, built: dict | None, load_start) -> dict:
    data = read_data(root)
    if data.task != "classification":
        raise SteelscanError(f"{root} is {data.format} data (a {data.task} layout); expected class folders")
    if not any(it.split == "test" for it in data.items):
        raise SteelscanError(f"{root} has no test split: expected ROOT/test/<class>/ beside ROOT/train/<class>/ "
                             "(steelscan never carves a test split)")

    # (a) steelscan train --data ROOT --budget-minutes M
    cfg = train_config(data=root, budget_minutes=args.budget_minutes, out_dir=Path(args.out_dir))
    t0 = time.perf_counter()
    run = fit(cfg)
    wall_a = (time.perf_counter() - t0) / 60
    fitted = json.loads((run / "metrics.json").read_text())
    ev = evaluate_model(run, root, split="test", batch_size=EVAL_BATCH)
    meta = torch.load(run / "model.pt", map_location="cpu", weights_only=True)["meta"]
    size, in_chans = int(meta["input_size"][0]), int(meta["in_chans"])
    spent_a = fitted["training_minutes_excluding_eval"]
    row_a = {"row": f"steelscan train --data ROOT --budget-minutes {args.budget_minutes:g}",
             "accuracy": ev["accuracy"], "macro_f1": ev["macro_f1"], "per_class": ev["per_class"],
             "n_test": ev["n_images"], "epochs": fitted["epochs_run"], "best_epoch": fitted["best_epoch"],
             "training_minutes": spent_a, "wall_minutes_with_val": wall_a, "ms_per_image": ev["ms_per_image"],
             "val_macro_f1": fitted["macro_f1"], "run": str(run), "model": cfg.model.name,
             "input": f"{in_chans} x {size} x {size}", "batch_size": cfg.train.batch_size,
             "confusion_matrix": ev["confusion_matrix"]}

    # (b) the plain fine-tune, on the images (a) trained on
    split = json.loads((run / "split.json").read_text())
    by_name = {it.name: it for it in data.items}
    train_items = [by_name[n] for n in split["train"]]
    test_items = [it for it in data.items if it.split == "test"]
    minutes_b = spent_a if args.baseline_minutes == "matched" else args.budget_minutes
    base = plain_baseline([it.path for it in train_items], [it.label for it in train_items],
                          [it.path for it in test_items], [it.label for it in test_items], list(data.class_names),
                          size, cfg.train.batch_size, 60 * minutes_b, cfg.seed)
    row_b = {"row": "plain ImageNet EfficientNet-Lite0 fine-tune", **base, "model": "timm tf_efficientnet_lite0",
             "input": f"3 x {size} x {size}", "batch_size": cfg.train.batch_size}
    load_end = os.getloadavg()

    rows = [row_a, row_b]
    label = "SYNTHETIC " if synthetic else ""
    title = (f"{label}class folders {root.name}: {len(data.class_names)} classes, {split['counts']['train']} train "
             f"/ {split['counts']['val']} val (steelscan's carve) / {len(test_items)} test images, "
             f"{args.threads} threads, budget {args.budget_minutes:g} min")
    table = Table("row", "test accuracy", "test macro-F1", "epochs", "training min", "ms/image", title=title,
                  caption=f"baseline trained {args.baseline_minutes} ({minutes_b:.2f} min); "
                          f"ms/image = test inference, batch {EVAL_BATCH}"
                          + ("; synthetic data: says nothing about real steel" if synthetic else ""))
    for r in rows:
        epochs = f"{r['epochs']}" if isinstance(r["epochs"], int) else f"{r['epochs']:.1f}"
        table.add_row(r["row"], f"{100 * r['accuracy']:.2f}%", f"{r['macro_f1']:.4f}", epochs,
                      f"{r['training_minutes']:.2f}", f"{r['ms_per_image']:.2f}")
    con = Console(width=max(Console().width, 130))  # the row names stay readable in a log file
    con.print(table)
    con.print(f"load average {load_start[0]:.2f} at start, {load_end[0]:.2f} at end")
    doc = {"benchmark": "train_any_layout", "data": str(root), "synthetic": synthetic, "built": built,
           "class_names": list(data.class_names), "split": {k: split["counts"][k] for k in ("train", "val")}
           | {"test": len(test_items), "rule": split["rule"]}, "budget_minutes": args.budget_minutes,
           "baseline_minutes": args.baseline_minutes, "baseline_budget_minutes": minutes_b,
           "threads": args.threads, "load_average_start": list(load_start), "load_average_end": list(load_end),
           "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "cpu": platform.processor() or platform.machine(),
           "torch": torch.__version__, "timm": timm.__version__, "rows": rows}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")  # steelscan's per-epoch lines
    try:
        main()
    except SteelscanError as exc:  # bad input (a data folder that does not fit): its message, no traceback
        sys.exit(f"train_any_layout: {exc}")
