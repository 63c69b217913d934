"""`steelscan inspect COIL_DIR --out OUT [--model M] [--classifier C] [--gate G] [--manifest MANIFEST.yaml]
[--db URL] [--rules R]`."""

from __future__ import annotations

import time
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from steelscan.cli._common import setup_logging

DEFAULT_MODEL = "severstal"


def command(
    coil_dir: Path = typer.Argument(..., help="Coil folder: numbered frames (frames/000000.png ...) + manifest.yaml"),
    out: Path = typer.Option(..., "--out", help="Folder for defects.json, the report and the records"),
    manifest: Path = typer.Option(None, "--manifest", help="Coil manifest (default: COIL_DIR/manifest.yaml)"),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m",
                              help="Segmenter or detector: ONNX artifact, run folder, .pt or built-in name"),
    classifier: str = typer.Option(None, "--classifier", help="Defect classifier naming each detected defect "
                                   "from its crop (detectors only)"),
    gate_model: str = typer.Option(None, "--gate", help="Defect/no-defect classifier that skips clean tiles before "
                                   "the detector (Wang 2021's first stage)"),
    gate_threshold: float = typer.Option(None, "--gate-threshold", help="P(defect) a tile needs to pass the gate "
                                         "(default 0.3)"),
    tile_overlap: int = typer.Option(None, "--tile-overlap", help="Least overlap of detector tiles in px (default 0: "
                                     "tiles spread evenly over the frame)"),
    db: str = typer.Option(None, "--db", help="Records store URL (default: OUT/records.db, SQLite)"),
    rules: Path = typer.Option(None, "--rules", help="Grading rules YAML (default: the shipped rules for the model's classes)"),
    coil_id: str = typer.Option(None, "--coil-id", help="Default: the manifest's, else the folder name"),
    mm_across: float = typer.Option(None, "--mm-per-px-across", help="Overrides the manifest"),
    mm_along: float = typer.Option(None, "--mm-per-px-along", help="Overrides the manifest"),
    width: float = typer.Option(None, "--strip-width-mm", help="Overrides the manifest"),
    overlap: int = typer.Option(None, "--frame-overlap", help="Rows shared by consecutive frames"),
    side: str = typer.Option(None, "--side", help="Surface side: top or bottom"),
    no_gate: bool = typer.Option(False, "--no-gate", help="Segmenters: decode every tile (their own presence gate "
                                 "off)"),
    batch: int = typer.Option(8, "--batch", min=1, help="Tiles per model call"),
    runtime: str = typer.Option("onnx", "--runtime", help="Segmenters: onnx (ONNX Runtime), openvino or "
                                "openvino-bf16 (pip install 'steelscan[openvino]')"),
) -> None:
    """Inspect a coil: defects in strip coordinates, periodic defects, the grade and an HTML report.

    Frames are committed to the records store one by one; re-running a killed inspection resumes it.
    """
    from steelscan.grading import check_rules_classes, default_rules_for, load_rules
    from steelscan.inspection.chain import load_chain, provenance
    from steelscan.inspection.runner import (
        finish_coil, folder_frames, inspect_frames, open_coil, read_frame, write_results,
    )
    from steelscan.report import write_report
    from steelscan.store import Store

    setup_logging()
    t0 = time.perf_counter()
    overrides = {"mm_per_px_across": mm_across, "mm_per_px_along": mm_along, "strip_width_mm": width,
                 "frame_overlap_px": overlap, "surface_side": side}
    coil, paths = open_coil(coil_dir, manifest, overrides, coil_id)
    out.mkdir(parents=True, exist_ok=True)
    chain = load_chain(model, frame_shape=coil.frame_shape, out=str(out), classifier=classifier, gate=gate_model,
                       gate_threshold=gate_threshold, tile_gate=not no_gate, batch=batch, tile_overlap=tile_overlap,
                       runtime=runtime)
    rule_set = load_rules(rules or default_rules_for(chain.class_names))
    check_rules_classes(rule_set, chain.class_names)
    made_by, warnings = provenance(chain, rule_set)
    con = Console()
    for w in warnings:
        con.print(f"[bold red]warning:[/] {w}")
    store = Store(db or str(out / "records.db"))
    with Progress(TextColumn("[bold]inspecting[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[info]}"), TimeRemainingColumn(), console=con, transient=False) as bar:
        task = bar.add_task(coil.coil_id, total=coil.n_frames, info="")
        stats = inspect_frames(coil, folder_frames(paths, coil.frame_shape), chain, store,
                               on_frame=lambda k, s: bar.update(task, completed=s["committed"],
                                                                info=f"{s['ms']:.0f} ms/frame"))
    doc = finish_coil(coil, store, rule_set, chain.merges_within_frame)
    store.close()
    doc.update(produced_by=made_by, warnings=warnings)
    results = write_results(doc, out)
    report = write_report(out / "report", doc["coil"], doc["defects"], doc["periodic"], doc["grade"],
                          lambda k: read_frame(paths[k], coil.frame_shape), chain.class_names,
                          provenance=made_by, warnings=warnings)
    print_summary(con, doc, stats, results, report, time.perf_counter() - t0)


def print_summary(con: Console, doc: dict, stats: dict, results: Path, report: Path, seconds: float) -> None:
    from collections import Counter

    from rich.table import Table

    coil, grade = doc["coil"], doc["grade"]
    counts = Counter(d["class"] for d in doc["defects"])
    con.print(f"[bold]coil {coil['coil_id']}[/]: {coil['length_m']:.1f} m x {coil['strip_width_mm']:g} mm, "
              f"{coil['n_frames']} frames, {len(doc['defects'])} defects")
    t = Table("class", "defects", "largest mm²", title="defects by class")
    for name, n in sorted(counts.items()):
        t.add_row(name, str(n), f"{max(d['area_mm2'] for d in doc['defects'] if d['class'] == name):.0f}")
    con.print(t)
    for f in doc["periodic"]:
        con.print(f"periodic: class {f['class_name']} every {f['pitch_m']:.3f} m ({f['count']} marks) -> roll "
                  f"diameter {f['roll_diameter_m'] * 1000:.0f} mm, {f['across_mm']:.0f} mm from the edge")
    if not doc["periodic"]:
        con.print("periodic: none found")
    colour = "green" if grade["passed"] else "red"
    con.print(f"[bold {colour}]grade {grade['grade']} ({'PASS' if grade['passed'] else 'FAIL'})[/], score {grade['score']:.2f}")
    for line in grade["decided_by"]:
        con.print(f"  decided by: {line}")
    if stats["frames"]:
        con.print(f"this run: {stats['frames']} frames in {stats['seconds']:.1f} s of inference "
                  f"({stats['frames'] / max(stats['seconds'], 1e-9):.1f} frames/s), tiles decoded "
                  f"{stats['tiles_decoded']}/{stats['tiles']}" + (f", {stats['resumed']} frames resumed" if stats["resumed"] else ""))
    con.print(f"defects: {results}\nreport:  {report}  ({seconds:.0f} s in all)")
