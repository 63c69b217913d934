"""The segmenter's honest cross-validated Kaggle Dice on the 30 real Severstal images, beside all-empty.

Every number here comes from a model that never saw the images it is scored on:
1. a BASE model trained on synthetic strips only (`--base RUN`; made with `configs/severstal_lite0.yaml` and
   `data.extra_root=null` when not given);
2. for each fold k (crc32(image id) % 5 == k: the split `steelscan train` makes), the base fine-tuned on the
   real images of the other four folds (`model.init`, real crops only: they outweigh the synthetic ones the
   base learned from), its LAST epoch (not the best on fold k, which would pick on the test fold) predicting
   fold k: out-of-fold probabilities for all 30 images;
3. the post-processing (per-class threshold, minimum area, hard-gate threshold; the smallest component) tuned by
   `steelscan.tune` over those out-of-fold probabilities with the same folds: each fold is scored with values
   chosen on the other four.
Rows: the base alone (step 2 skipped) and the fine-tuned folds; each beside the all-empty Dice of its images.

    .venv/bin/python benchmarks/severstal_real_cv.py --base runs/severstal_synth_base-*   # ~25 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from steelscan.config import load_config
from steelscan.data.formats import read_data
from steelscan.data.splits import checksum_side
from steelscan.deploy.predictors import SegmenterPredictor, default_postprocess
from steelscan.engine.fit import fit
from steelscan.engine.runs import build_model, load_checkpoint
from steelscan.metrics import to_jsonable
from steelscan.postprocess import PostProcess
from steelscan.tasks.segmentation.data import load_samples
from steelscan.tune import MIN_COMPONENTS, tune_postprocess

REPO = Path(__file__).resolve().parents[1]
N_FOLDS = 5
log = logging.getLogger("severstal_real_cv")


def fold_of(image_id: str) -> int:
    return next(k for k in range(N_FOLDS) if checksum_side(image_id, (k,)) == "val")


def predict(net, meta, images) -> tuple[np.ndarray, np.ndarray]:
    found = SegmenterPredictor.from_module(net, meta, probs_dtype=np.float16).predict(images, masks=False)
    return found.probabilities, found.presence


def finetune(args, base: Path, fold: int) -> Path:
    overrides = [f"data.root={args.data}", "data.extra_root=null", f"data.val_remainders=[{fold}]",
                 f"model.init={base}", f"name=severstal_cv_fold{fold}", f"out_dir={args.out}",
                 f"train.epochs={args.epochs}", f"segmentation.crops_per_image={args.crops_per_image}",
                 f"optim.lr={args.lr}", f"train.threads={args.threads}", *args.set]
    return fit(load_config(args.config, overrides), progress=False)


def last_epoch_model(run: Path):
    """The run's last epoch (last.pt), with the meta of its model.pt."""
    _, meta = load_checkpoint(run)
    net = build_model(meta)
    net.load_state_dict(torch.load(run / "last.pt", map_location="cpu", weights_only=True)["state_dict"])
    return net.eval(), meta


def tuned_row(name: str, probs, presence, truths, folds, base_pp: PostProcess) -> dict:
    tuned, report = tune_postprocess(probs, presence, truths, base_pp, n_folds=N_FOLDS, folds=folds,
                                     components=MIN_COMPONENTS)
    return {"name": name, "dice_cv": report["dice_chosen"], "all_empty": report["all_empty_dice"],
            "margin": report["dice_chosen"] - report["all_empty_dice"], "folds": report["folds"],
            "folds_below_all_empty": report["folds_below_all_empty"], "dice_before": report["dice_before"],
            "per_class": report["per_class"], "postprocess": tuned.as_dict() | {"tuned": None}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "severstal-sample")
    ap.add_argument("--base", type=Path, help="a segmentation run trained on synthetic strips only")
    ap.add_argument("--config", type=Path, default=REPO / "configs" / "severstal_lite0.yaml")
    ap.add_argument("--synthetic", type=Path, default=REPO / "out" / "synth-severstal",
                    help="synthetic strips for the base (made with `steelscan synth severstal` when missing)")
    ap.add_argument("--epochs", type=int, default=5, help="fine-tuning epochs per fold")
    ap.add_argument("--crops-per-image", type=int, default=4)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra fine-tuning override")
    ap.add_argument("--out", type=Path, default=REPO / "runs" / "severstal_cv")
    ap.add_argument("--json", type=Path, default=REPO / "benchmarks" / "results" / "severstal_real_cv.json")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    t0, load_start = time.perf_counter(), os.getloadavg()

    if args.base is None:
        if not (args.synthetic / "train.csv").is_file():
            from steelscan.data.synthetic.writers import write_severstal
            write_severstal(args.synthetic, n=400, seed=0)
        args.base = fit(load_config(args.config, [f"data.root={args.synthetic}", "data.extra_root=null",
                                                  "name=severstal_synth_base", f"out_dir={args.out}"]), progress=False)
    data = read_data(args.data, "severstal")
    samples = load_samples(data.items, len(data.class_names), 1, args.data.name)  # raises on an unreadable one
    images, truths = [s.image for s in samples], np.stack([s.mask for s in samples])
    folds = np.array([fold_of(it.path.name) for it in data.items])  # the file name, as training splits it
    base_net, base_meta = load_checkpoint(args.base)
    base_pp = PostProcess.from_dict(base_meta.postprocess) if base_meta.postprocess else default_postprocess(4)

    rows = []
    probs, presence = predict(base_net, base_meta, images)
    rows.append(tuned_row("base (synthetic only)", probs, presence, truths, folds, base_pp))
    oof_p, oof_q, runs = np.zeros_like(probs), np.zeros_like(presence), []
    for k in range(N_FOLDS):
        run = finetune(args, args.base, k)
        runs.append(str(run))
        net, meta = last_epoch_model(run)
        idx = np.flatnonzero(folds == k)
        oof_p[idx], oof_q[idx] = predict(net, meta, [images[i] for i in idx])
        log.info("fold %d: %d images predicted by %s", k, len(idx), run)
    rows.append(tuned_row(f"base + real fine-tune ({args.epochs} epochs x {args.crops_per_image} crops, "
                          f"lr {args.lr:g})", oof_p, oof_q, truths, folds, base_pp))

    res = {"data": str(args.data), "n_images": len(samples), "fold_sizes": np.bincount(folds).tolist(),
           "base": str(args.base), "fold_runs": runs, "rows": rows, "minutes": (time.perf_counter() - t0) / 60,
           "threads": args.threads, "load_average_start": load_start, "load_average_end": os.getloadavg()}
    table = Table("model", "CV Kaggle Dice", "all-empty", "margin", *[f"fold {k}" for k in range(N_FOLDS)],
                  title=f"{len(samples)} real Severstal images, {N_FOLDS} folds by crc32(id): out-of-fold models "
                        "and CV-tuned post-processing (fold Dice (all-empty))")
    for r in rows:
        table.add_row(r["name"], f"{r['dice_cv']:.4f}", f"{r['all_empty']:.4f}", f"{r['margin']:+.4f}",
                      *[f"{f['dice']:.3f} ({f['all_empty_dice']:.3f})" for f in r["folds"]])
    Console().print(table)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(to_jsonable(res), indent=2) + "\n")
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
