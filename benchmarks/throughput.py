"""Inspection-station throughput: eager PyTorch on whole frames vs the steelscan tiled, gated ONNX path.

One process, the same frames and the same weights for every row:

* "eager PyTorch (Kaggle-notebook style)": the checkpoint's model in eval mode under `torch.inference_mode()`,
  each full 256x1600 frame as one tensor (`--eager-batch` frames per call), sigmoid, then `binarize` with the
  checkpoint's PostProcess (threshold + min area), as a Kaggle notebook does;
* "steelscan inspection path": the artifact exported from the same checkpoint (`export_segmenter`, tile
  `--tile`, default the checkpoint's crop; 1600 is no multiple of 512, so the tiler reflect-pads to 2048)
  through `segment_frames` with the tile gate on, `--batch` tiles per call (whole frames per call, as
  `steelscan inspect` groups them);
* then the detector path (`benchmarks/throughput_detector.py`, `--detector`, default the built-in coil-demo):
  eager whole frames vs the station's tiles, its own table and JSON;
* optional `--variants` rows: gate-off, batch1, int8 (ORT static QDQ, per-channel, of the artifact,
  calibrated on tiles of frames after the timed ones, never the frames it is scored on, when there are any),
  frame-tile (a second artifact whose tile is the whole frame: no padding, no seams; gate on and off),
  int8-frame (ORT static QDQ of that whole-frame artifact), and the OpenVINO rows (optional package
  `openvino`; the same ONNX artifacts converted to IR by `onnx_to_openvino`, run by `OpenVinoSegmenterRuntime`
  with the same tiling, gate and post-processing, LATENCY hint, f32 unless named): openvino (the tile
  artifact), openvino-frame (whole-frame tile, gate on and off), openvino-frame-bf16 (bf16 inference: AMX on
  CPUs that have it), openvino-frame-tput (THROUGHPUT hint), openvino-int8-frame (NNCF post-training int8 of
  the whole-frame IR; needs `nncf`). A row that cannot run is left out and `notes` in the JSON says why.
  int8 rows are calibrated on frames after the timed ones (`--calibration`), never the frames they are scored
  on, when there are any.

Timing: 2 warm-up frames, then all `--frames` frames, best of `--repeats` passes; torch and ORT use `--threads`
threads. Each pass covers normalising, inference and binarizing. Dice is the Kaggle Dice of each row's masks
against the true masks, beside the all-empty baseline. Peak = fp32 2048x2048 `torch.matmul`, best of 5.
Achieved GFLOP/s counts the work each path really runs (FlopCounterMode, multiply-add = 2 FLOPs): eager =
the full model on the 256x1600 frame; tiled = encoder + presence head on every tile (padding included),
decoder only on decoded tiles, so the gate's skipped work shows as speed, not as FLOPs.

Data: `--data` (a Kaggle-layout Severstal folder). With no `--data` and no `out/synth-severstal` (a fresh
clone), the frames are synthetic: `write_severstal` writes `--frames` (+ int8 calibration) 1600x256 frames,
seed 0, into a temporary folder (well under a second), and every title and the JSON say "synthetic frames".

    .venv/bin/python benchmarks/throughput.py --model severstal --frames 30
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
from torch.utils.flop_counter import FlopCounterMode

from steelscan.core.errors import SteelscanError
from steelscan.data.severstal import SeverstalDataset
from steelscan.data.synthetic import write_severstal
from steelscan.tasks.segmentation.evaluate import dice_report
from steelscan.deploy.export import export_segmenter, quantize_int8
from steelscan.deploy.predictors import load_predictor
from steelscan.deploy.tiles import cut_tiles
from steelscan.inspection.chain import frames_per_call  # moved there from runner with the detector chain
from steelscan.postprocess import PostProcess, binarize
from steelscan.engine.runs import load_checkpoint

NEED_MPX_S = (20_000 / 0.5) * (2_000 / 0.5) / 1e6  # rows/s (20 m/s) x px/row (2 m), 0.5 mm/px: 160 Mpx/s
VARIANTS = ("gate-off", "batch1", "int8", "frame-tile", "int8-frame", "openvino", "openvino-frame",
            "openvino-frame-bf16", "openvino-frame-tput", "openvino-int8-frame")
INT8_VARIANTS = ("int8", "int8-frame", "openvino-int8-frame")
DEFAULT_DATA = "out/synth-severstal"


def matmul_peak_gflops(n: int = 2048, repeats: int = 5) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.matmul(a, b)  # warm-up: first call allocates and picks kernels
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        torch.matmul(a, b)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def count_flops(fn, *args) -> int:
    with torch.inference_mode(), FlopCounterMode(display=False) as fc:
        fn(*args)
    return int(fc.get_total_flops())


def best_pass(run, frames: list[np.ndarray], repeats: int) -> tuple[float, list]:
    """run(frames) -> per-frame outputs; warm up on 2 frames, then the best of `repeats` full passes."""
    run(frames[:2])
    best, out = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = run(frames)
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="severstal")
    ap.add_argument("--data", default=DEFAULT_DATA,
                    help="Kaggle-layout Severstal folder; when the default is absent, synthetic frames are written "
                         "to a temporary folder")
    ap.add_argument("--frames", type=int, default=30)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=8, help="tiles per ORT call on the inspection path")
    ap.add_argument("--eager-batch", type=int, default=1, help="frames per call on the eager path")
    ap.add_argument("--tile", type=int, nargs=2, metavar=("H", "W"), help="default: the checkpoint's crop")
    ap.add_argument("--gate-threshold", type=float, default=0.3, help="the artifact's tile gate threshold")
    ap.add_argument("--variants", default="", help=f"comma list of extra rows from {', '.join(VARIANTS)}")
    ap.add_argument("--calibration", type=int, default=4, help="frames (after the timed ones) to calibrate int8")
    ap.add_argument("--json", default="benchmarks/results/throughput.json")
    ap.add_argument("--detector", default="coil-demo",
                    help="also run benchmarks/throughput_detector.py on this detector ('none': skip)")
    args = ap.parse_args(argv)
    variants = [v for v in args.variants.split(",") if v]
    if set(variants) - set(VARIANTS):
        ap.error(f"unknown variants {sorted(set(variants) - set(VARIANTS))}; choose from {', '.join(VARIANTS)}")
    n_calib = args.calibration if set(INT8_VARIANTS) & set(variants) else 0
    if not Path(args.data).exists() and args.data != DEFAULT_DATA:
        ap.error(f"--data {args.data}: no such folder (expected a Kaggle-layout Severstal folder: train.csv + "
                 f"train_images/); leave --data out to benchmark on synthetic frames")
    with tempfile.TemporaryDirectory(prefix="steelscan-throughput-") as tmp:
        synth_note = None
        if not Path(args.data).exists():
            summary = write_severstal(Path(tmp) / "synth-severstal", n=args.frames + n_calib, seed=0, workers=1)
            synth_note = (f"{args.data} absent: {summary.n_images} synthetic frames written by write_severstal "
                          f"(seed 0) to a temporary folder")
            print(synth_note)
            args.data = str(summary.out)
        doc = _run(args, variants, n_calib, synth_note)
    if args.detector != "none":  # the detector path: its own table and JSON
        sys.path.insert(0, str(Path(__file__).parent))
        import throughput_detector

        throughput_detector.main(["--model", args.detector, "--threads", str(args.threads)])
    return doc


def _run(args: argparse.Namespace, variants: list[str], n_calib: int, synth_note: str | None) -> dict:
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()

    model, meta = load_checkpoint(args.model)
    model.eval()
    pp = PostProcess.from_dict(meta.postprocess)
    tile = tuple(args.tile or meta.input_size)
    ds = SeverstalDataset.from_root(args.data)  # decode only the frames used, not the whole folder
    items = [ds[i] for i in range(min(len(ds), args.frames + n_calib))]
    frames, truths = [it["image"] for it in items[: args.frames]], [it["mask"] for it in items[: args.frames]]
    calib_frames = [it["image"] for it in items[args.frames :]] or frames  # fall back, said in the JSON
    h, w = frames[0].shape
    mean, std = meta.mean, meta.std
    synthetic = synth_note is not None or "synth" in Path(args.data).resolve().name.lower()

    peak = matmul_peak_gflops()
    x1 = torch.zeros(1, 1, h, w)
    frame_flops = count_flops(model, x1)  # whole 256x1600 frame (multiples of 32: no padding)
    xt = torch.zeros(1, 1, *tile)
    tile_flops = count_flops(model, xt)
    enc_flops = count_flops(lambda x: model.net.classification_head(model.net.encoder(x)[-1]), xt)
    n_tiles = len(cut_tiles(frames[0], tile)[0])

    def eager(batch_frames: list[np.ndarray]) -> list[tuple[np.ndarray, int, int]]:
        out = []
        with torch.inference_mode():
            for i in range(0, len(batch_frames), args.eager_batch):
                x = torch.from_numpy(np.stack(batch_frames[i : i + args.eager_batch])).float()
                x = x.div_(255.0).sub_(mean).div_(std).unsqueeze(1)
                m, p = model(x)
                m, p = m.sigmoid().numpy(), p.sigmoid().numpy()
                out += [(binarize(mi, pp, pi), 1, 1) for mi, pi in zip(m, p)]
        return out

    def tiled(artifact: Path, gate: bool, batch: int, **ov_options):
        predictor = load_predictor(artifact, threads=args.threads, gate=gate, batch_size=batch,
                                   **({"openvino": ov_options} if ov_options else {}))
        per_call = frames_per_call(predictor.tiles_per_image((h, w)), batch)  # as `steelscan inspect` does

        def run(batch_frames: list[np.ndarray]) -> list[tuple[np.ndarray, int, int]]:
            out = []
            for i in range(0, len(batch_frames), per_call):
                seg = predictor.predict(batch_frames[i : i + per_call])
                out += [(m, int(t), int(d)) for m, t, d in zip(seg.masks, seg.tiles, seg.decoded)]
            return out
        return run

    rows = []

    def add_row(name: str, run, flops_of) -> None:
        seconds, out = best_pass(run, frames, args.repeats)
        fps = len(frames) / seconds
        tiles, decoded = sum(o[1] for o in out), sum(o[2] for o in out)
        flops = flops_of(tiles / len(out), decoded / len(out))
        rep = dice_report([o[0] for o in out], truths)
        rows.append({"path": name, "frames_per_s": fps, "mpx_per_s": fps * h * w / 1e6, "ms_per_frame": 1000 / fps,
                     "tiles_per_frame": tiles / len(out), "decoded_share": decoded / tiles,
                     "flops_per_frame": flops, "gflops_achieved": flops * fps / 1e9,
                     "share_of_peak": flops * fps / 1e9 / peak, "dice_kaggle": rep["dice_kaggle"],
                     "all_empty_dice": rep["all_empty_dice"], "per_class_dice": rep["per_class_dice"]})

    add_row(f"eager PyTorch (Kaggle-notebook style), batch {args.eager_batch}", eager, lambda t, d: frame_flops)
    tiled_flops = lambda t, d: t * enc_flops + d * (tile_flops - enc_flops)  # noqa: E731
    frame_enc_flops = count_flops(lambda x: model.net.classification_head(model.net.encoder(x)[-1]), x1)
    frame_tile_flops = lambda t, d: t * frame_enc_flops + d * (frame_flops - frame_enc_flops)  # noqa: E731
    int8_note, notes = None, {}

    def optional_row(variant: str, make) -> None:
        """An optional row: make() adds it (and may return a note); a failure leaves the row out, says why."""
        try:
            note = make()
            if note:
                notes[variant] = note
        except Exception as exc:  # noqa: BLE001 - an optional row; the JSON says why it is missing
            notes[variant] = f"skipped: {type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:200]}"
            print(f"{variant}: {notes[variant]}")

    def calibration_of(artifact: Path) -> tuple[np.ndarray, str]:
        """Normalised inputs of the artifact (its tiles) cut from the calibration frames, and how to say so."""
        p = load_predictor(artifact, threads=args.threads)
        calib = np.concatenate([p.pre_process([f]) for f in calib_frames[: args.calibration]])
        where = " of the timed frames (no spare frames)" if calib_frames is frames else " of untimed frames"
        return calib, f"calibrated on {len(calib)} inputs {tuple(calib.shape[2:])}{where}"

    with tempfile.TemporaryDirectory() as tmp:
        art = export_segmenter(model, meta, Path(tmp) / "seg.onnx", tile, args.gate_threshold)
        add_row(f"steelscan inspection path, gate on, batch {args.batch}", tiled(art, True, args.batch), tiled_flops)
        if "gate-off" in variants:
            add_row(f"steelscan, gate off, batch {args.batch}", tiled(art, False, args.batch), tiled_flops)
        if "batch1" in variants:
            add_row("steelscan, gate on, batch 1", tiled(art, True, 1), tiled_flops)
        whole = None
        if {"frame-tile", "int8-frame"} & set(variants) or any(v.startswith("openvino-") for v in variants):
            whole = export_segmenter(model, meta, Path(tmp) / "frame.onnx", (h, w), args.gate_threshold)
        frame_name = f"whole-frame tile {h}x{w}"
        if "frame-tile" in variants:
            for gate in (True, False):
                add_row(f"steelscan, whole-frame tile {h}x{w}, gate {'on' if gate else 'off'}, batch {args.batch}",
                        tiled(whole, gate, args.batch), frame_tile_flops)
        if "int8" in variants:
            calib_tiles = np.concatenate([cut_tiles(f, tile)[0] for f in calib_frames[: args.calibration]])
            calib = load_predictor(art, threads=args.threads).pre_process(list(calib_tiles))
            try:
                q = quantize_int8(art, Path(tmp) / "seg.int8.onnx", calib, skip_symbolic_shape=True)
                add_row(f"steelscan int8 (static QDQ), gate on, batch {args.batch}", tiled(q, True, args.batch),
                        tiled_flops)
                int8_note = f"calibrated on {len(calib)} tiles" + (
                    " of the timed frames (no spare frames)" if calib_frames is frames else " of untimed frames")
            except Exception as exc:  # noqa: BLE001 - int8 is an optional row; say why it is missing
                int8_note = f"skipped: {type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        if "int8-frame" in variants:
            def int8_frame() -> str:
                calib, said = calibration_of(whole)
                q = quantize_int8(whole, Path(tmp) / "frame.int8.onnx", calib, skip_symbolic_shape=True)
                add_row(f"steelscan int8 (static QDQ), {frame_name}, gate on, batch {args.batch}",
                        tiled(q, True, args.batch), frame_tile_flops)
                return said
            optional_row("int8-frame", int8_frame)
        _openvino_rows(args, variants, Path(tmp), art, whole, frame_name, tiled, add_row, optional_row,
                       calibration_of, tiled_flops, frame_tile_flops)
    load_after = os.getloadavg()

    base = rows[0]["frames_per_s"]
    for r in rows:
        r["speedup_vs_eager"] = r["frames_per_s"] / base
    kind = "synthetic frames" if synthetic else "frames"
    source = "a temporary folder (write_severstal, seed 0)" if synth_note else args.data
    table = Table("path", "frames/s", "Mpx/s", "ms/frame", "x eager", "tiles decoded", "GFLOP/s (% peak)",
                  "Dice (all-empty)",
                  title=f"{args.model} ({meta.model}) on {len(frames)} {kind} {w}x{h} of {source}, "
                        f"tile {tile[0]}x{tile[1]}, {args.threads} threads",
                  caption=f"GFLOP/s = work actually run x frames/s: eager = full model per frame "
                          f"({frame_flops / 1e9:.1f} GFLOP); tiled = encoder + presence on all {n_tiles} tiles "
                          f"(padding included), decoder only on decoded tiles. fp32 matmul peak {peak:.0f} GFLOP/s.")
    for r in rows:
        table.add_row(r["path"], f"{r['frames_per_s']:.2f}", f"{r['mpx_per_s']:.2f}", f"{r['ms_per_frame']:.0f}",
                      f"{r['speedup_vs_eager']:.2f}", f"{100 * r['decoded_share']:.0f}%",
                      f"{r['gflops_achieved']:.1f} ({100 * r['share_of_peak']:.0f}%)",
                      f"{r['dice_kaggle']:.4f} ({r['all_empty_dice']:.4f})")
    con = Console()
    con.print(table)
    con.print(f"physical need: {NEED_MPX_S:.0f} Mpx/s per surface (20 m/s x 2 m at 0.5 mm/px); best row here "
              f"{max(r['mpx_per_s'] for r in rows):.2f} Mpx/s. load average {load_before[0]:.2f} before, "
              f"{load_after[0]:.2f} after" + (f"; int8: {int8_note}" if int8_note else "")
              + "".join(f"; {k}: {v}" for k, v in notes.items()))
    import onnxruntime

    doc = {"model": args.model, "arch": meta.model, "data": source, "synthetic": synthetic,
           "synthetic_note": synth_note,
           "n_frames": len(frames), "frame_shape": [h, w], "tile": list(tile), "tiles_per_frame": n_tiles,
           "gate_threshold": args.gate_threshold, "threads": args.threads, "batch": args.batch,
           "eager_batch": args.eager_batch, "repeats": args.repeats, "variants": variants, "int8": int8_note,
           "notes": notes, "openvino": _version("openvino"), "nncf": _version("nncf"),
           "matmul_peak_gflops": peak, "flops_per_frame_eager": frame_flops, "flops_per_tile": tile_flops,
           "flops_per_tile_encoder_presence": enc_flops, "flops_convention": "multiply-add = 2 FLOPs",
           "need_mpx_per_s_per_surface": NEED_MPX_S, "load_average_before": load_before,
           "load_average_after": load_after, "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
           "cpu": platform.processor() or platform.machine(), "torch": torch.__version__,
           "onnxruntime": onnxruntime.__version__, "rows": rows}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2) + "\n")
    return doc


def _openvino_rows(args, variants, tmp: Path, art: Path, whole: Path | None, frame_name: str, tiled, add_row,
                   optional_row, calibration_of, tiled_flops, frame_tile_flops) -> None:
    """The OpenVINO rows: the same ONNX artifacts as IR, through `OpenVinoSegmenterRuntime`."""
    wanted = [v for v in variants if v.startswith("openvino")]
    if not wanted:
        return
    from steelscan.deploy.export import onnx_to_openvino

    xml = {}

    def ir(src: Path) -> Path:  # convert once per artifact, only when a row needs it
        if src not in xml:
            xml[src] = onnx_to_openvino(src, tmp / f"{src.stem}.xml")
        return xml[src]

    b = args.batch
    if "openvino" in variants:
        optional_row("openvino", lambda: add_row(f"OpenVINO f32, gate on, batch {b}", tiled(ir(art), True, b),
                                                 tiled_flops))
    if "openvino-frame" in variants:
        for gate in (True, False):
            optional_row("openvino-frame", lambda gate=gate: add_row(
                f"OpenVINO f32, {frame_name}, gate {'on' if gate else 'off'}, batch {b}", tiled(ir(whole), gate, b),
                frame_tile_flops))
    if "openvino-frame-bf16" in variants:
        optional_row("openvino-frame-bf16", lambda: add_row(
            f"OpenVINO bf16, {frame_name}, gate on, batch {b}", tiled(ir(whole), True, b, precision="bf16"),
            frame_tile_flops))
    if "openvino-frame-tput" in variants:
        optional_row("openvino-frame-tput", lambda: add_row(
            f"OpenVINO f32 THROUGHPUT hint, {frame_name}, gate on, batch {b}",
            tiled(ir(whole), True, b, hint="THROUGHPUT"), frame_tile_flops))
    if "openvino-int8-frame" in variants:
        def ov_int8() -> str:
            from steelscan.deploy.export import quantize_openvino_int8

            calib, said = calibration_of(whole)
            q = quantize_openvino_int8(ir(whole), tmp / "frame.ov-int8.xml", calib)
            add_row(f"OpenVINO int8 (NNCF), {frame_name}, gate on, batch {b}", tiled(q, True, b), frame_tile_flops)
            return said
        optional_row("openvino-int8-frame", ov_int8)


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    try:
        main()
    except SteelscanError as exc:  # bad input (a model or data folder that does not fit): its message, no traceback
        sys.exit(f"throughput: {exc}")
