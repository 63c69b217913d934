"""Inspection-service load and crash test: `steelscan serve` under many concurrent clients, then a SIGKILL.

What it measures, on one `steelscan serve` process started here on loopback (fresh temp data dir and
SQLite store, stderr/stdout captured to a log file that is scanned for errors at the end):

* load phase: `--clients` concurrent clients (asyncio + one shared httpx.AsyncClient with a connection
  per client) for `--seconds`. Each client opens its own coil (POST /v1/coils, geometry from the synthetic
  coil's manifest) and loops, one request in flight at a time: mostly POST /v1/frames with the next frame
  index of its coil (the synthetic coil's PNGs cycled), every `--read-every`-th request a read
  (GET /v1/coils/{id}, /v1/coils, /v1/coils/{id}/defects in turn), every `--repost-every`-th a re-post of
  its previous frame (must answer committed=false with the pieces first returned); the schedule starts at a
  random (seeded) point for each client, so the mix holds even when each client gets only a few requests
  done. No new request starts after `--seconds`; the ones in flight are waited for. Reported: requests and
  requests/s, frames accepted and new frames/s held (inferred and committed; overall and per 10 s
  window), p50/p95/p99 latency (all requests, frames, reads), errors (non-2xx or exceptions: count, by
  status, first messages), read-after-write violations (a GET /v1/coils/{id} whose n_frames is below the
  frames acknowledged before it was sent). Re-posts are answered from the store (no inference) and are
  timed apart from new frames in `by_kind`.
* integrity: the server is stopped (SIGTERM) and the store opened directly (`steelscan.store.Store`):
  every acknowledged frame must be in `frames_done`, and the pieces each response returned must equal the
  stored pieces of that frame as multisets of (class_name, bbox, area_px). Lost and mismatched frames
  (target 0 and 0), and stored frames nobody was told about, are counted.
* fault phase: a fresh server and store; one client posts a coil's frames in order; after a random number
  of acknowledged frames, at a random point into the next request (a fraction of the mean frame latency so
  far), the server gets SIGKILL. The store is then checked directly for every frame acknowledged before
  the kill; the server restarts on the same store; the frames not acknowledged (the one in flight at the
  kill included, which must answer 200, committed true or false) are posted, the coil is closed
  (POST /v1/coils/{id}/close -> 200 with a grade) and `frames_done` must be the whole coil.

Inference is CPU-bound: with 2 cores a 1600x256 frame takes ~0.2 s, so 50 clients each waiting on their own
frame see latencies of several seconds; the targets are 0 errors and 0 lost or mismatched records, and
the frames/s one process holds. Machine load (os.getloadavg) is recorded before and after.

    .venv/bin/python benchmarks/service_load.py                       # 50 clients, 60 s, severstal
    .venv/bin/python benchmarks/service_load.py --clients 4 --seconds 10 --json /tmp/sl.json --keep-work
    .venv/bin/python benchmarks/service_load.py --model /tmp/x/severstal.onnx   # skip the ONNX export

Beside this file (load phase, options, table, JSON): `service_server.py` (server process, store check, shared
helpers) and `service_fault.py` (fault phase).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
from rich.console import Console
from rich.table import Table

# benchmarks/ is not a package: its folder goes on the path so that the sibling modules import both when this
# runs as a script and when it is loaded from its file path (tests.conftest.load_benchmark)
sys.path.insert(0, str(Path(__file__).resolve().parent))
from service_fault import fault_phase  # noqa: E402
from service_server import (  # noqa: E402
    MAX_MESSAGES, STEELSCAN, Server, async_client, check_store, coil_body_from, describe, frame_post, noteworthy,
    piece_key, proc_cpu_seconds, synth_coil, tail,
)


# load phase ---------------------------------------------------------------------------------------------------
def pct(values, qs=(50, 95, 99)) -> dict:
    if not len(values):
        return {f"p{q}": None for q in qs} | {"mean": None, "max": None, "n": 0}
    a = np.asarray(values, dtype=float)
    return {f"p{q}": float(np.percentile(a, q)) for q in qs} | {"mean": float(a.mean()), "max": float(a.max()),
                                                                 "n": int(a.size)}


class Recorder:
    """Per-request records and the first error messages."""

    def __init__(self, t0: float):
        self.t0, self.records, self.messages = t0, [], []
        self.errors_by_status: Counter = Counter()

    def add(self, kind: str, t_start: float, t_end: float, status: int | None, ok: bool, message: str | None):
        self.records.append({"kind": kind, "t": round(t_start - self.t0, 4), "end": round(t_end - self.t0, 4),
                             "s": t_end - t_start, "status": status, "ok": ok})
        if not ok:
            self.errors_by_status[str(status) if status is not None else "exception"] += 1
            if len(self.messages) < MAX_MESSAGES:
                self.messages.append(f"{kind} at t={t_start - self.t0:.1f}s: {message}")


async def request(http: httpx.AsyncClient, rec: Recorder, kind: str, method: str, url: str, **kw):
    """(ok, body or None); every outcome is recorded."""
    t0 = time.perf_counter()
    resp, exc = None, None
    try:
        resp = await http.request(method, url, **kw)
    except Exception as e:  # noqa: BLE001 - a transport failure is a measured error, not a crash
        exc = e
    t1 = time.perf_counter()
    ok = resp is not None and 200 <= resp.status_code < 300
    body = None
    if ok:
        try:
            body = resp.json()
        except ValueError as e:
            ok, exc = False, e
    rec.add(kind, t0, t1, None if resp is None else resp.status_code, ok, None if ok else describe(resp, exc))
    return ok, body


async def load_phase(url: str, args, pngs: list[bytes], coil_body: dict) -> tuple[dict, dict, list[str]]:
    """The load summary; the pieces key of every acknowledged (coil, frame), from its first 200; the coil ids."""
    limits = httpx.Limits(max_connections=args.clients + 8, max_keepalive_connections=args.clients + 8)
    acks: dict[tuple[str, int], list] = {}
    anomalies = {"new_frame_not_committed": [], "repost_committed": [], "repost_pieces_differ": [],
                 "read_after_write": []}
    batch_sizes, infer_ms = [], []
    coils = [f"load-{i:03d}" for i in range(args.clients)]
    acked_per_coil = Counter()
    t_start = time.perf_counter()
    rec = Recorder(t_start)
    deadline = t_start + args.seconds

    async with async_client(url, args.client_timeout, limits=limits) as http:
        async def client(i: int) -> None:
            coil = coils[i]
            await request(http, rec, "open", "POST", "/v1/coils", json={"coil_id": coil, **coil_body})
            # the schedule runs on n + a random offset per client (seeded), so the mix holds even when slow
            # frames let each client make only a few requests in the whole phase
            n, nxt = random.Random(args.seed * 100_003 + i).randrange(10**6), 0
            while time.perf_counter() < deadline:
                n += 1
                if args.read_every and n % args.read_every == 0:
                    which = n // args.read_every % 3
                    if which == 0:
                        before = acked_per_coil[coil]
                        ok, body = await request(http, rec, "read_coil", "GET", f"/v1/coils/{coil}")
                        if ok and body.get("n_frames", -1) < before:
                            anomalies["read_after_write"].append(f"{coil}: n_frames {body.get('n_frames')} < "
                                                                 f"{before} acknowledged before the read")
                    elif which == 1:
                        await request(http, rec, "read_list", "GET", "/v1/coils", params={"limit": 100})
                    else:
                        await request(http, rec, "read_defects", "GET", f"/v1/coils/{coil}/defects",
                                      params={"limit": 50, "offset": 0})
                    continue
                repost = bool(args.repost_every) and n % args.repost_every == 1 and (coil, nxt - 1) in acks
                k = nxt - 1 if repost else nxt
                ok, body = await request(http, rec, "repost" if repost else "frame", "POST", "/v1/frames",
                                         **frame_post(coil, k, pngs))
                if not repost:
                    nxt += 1
                if not ok:
                    continue
                key = piece_key(body.get("pieces", []))
                if body.get("committed"):  # a retry may be answered from the store, without inference
                    batch_sizes.append(body.get("batch_frames"))
                    infer_ms.append(body.get("ms"))
                if repost:
                    if body.get("committed"):
                        anomalies["repost_committed"].append(f"{coil} frame {k}")
                    if key != acks[(coil, k)]:
                        anomalies["repost_pieces_differ"].append(f"{coil} frame {k}: {len(key)} vs "
                                                                 f"{len(acks[(coil, k)])} pieces")
                else:
                    if not body.get("committed"):
                        anomalies["new_frame_not_committed"].append(f"{coil} frame {k}")
                    acks[(coil, k)] = key
                    acked_per_coil[coil] += 1

        cpu0 = time.process_time()
        await asyncio.gather(*(client(i) for i in range(args.clients)))
        t_end = time.perf_counter()
        bench_cpu = time.process_time() - cpu0
        try:
            m = await http.get("/metrics", timeout=30)
            metrics_lines = [ln for ln in m.text.splitlines()
                             if ln.startswith(("steelscan_frames_total", "steelscan_frames_duplicate_total",
                                               "steelscan_errors_total", "steelscan_batch_frames_sum",
                                               "steelscan_batch_frames_count"))]
        except httpx.HTTPError as exc:
            metrics_lines = [f"GET /metrics failed: {describe(None, exc)}"]

    wall = t_end - t_start
    recs = rec.records
    frames_ok = [r for r in recs if r["kind"] in ("frame", "repost") and r["ok"]]
    new_ok = [r for r in recs if r["kind"] == "frame" and r["ok"]]
    # frames/s per 10 s window of completion time, over the full windows before the deadline
    win = min(10.0, args.seconds)
    n_win = max(1, int(args.seconds // win))
    per_window = [sum(1 for r in new_ok if w * win <= r["end"] < (w + 1) * win) / win for w in range(n_win)]
    by_kind = {}
    for kind in sorted({r["kind"] for r in recs}):
        rs = [r for r in recs if r["kind"] == kind]
        by_kind[kind] = {"requests": len(rs), "errors": sum(not r["ok"] for r in rs),
                         "latency_s": pct([r["s"] for r in rs if r["ok"]])}
    reads = [r["s"] for r in recs if r["kind"].startswith("read") and r["ok"]]
    summary = {
        "wall_s": wall, "requests": len(recs), "requests_per_s": len(recs) / wall,
        "frames_accepted": len(frames_ok), "new_frames_accepted": len(new_ok),
        "reposts_accepted": len(frames_ok) - len(new_ok),
        "frames_per_s": len(new_ok) / wall, "frames_per_s_by_10s_window": per_window,
        "latency_s_all": pct([r["s"] for r in recs if r["ok"]]),
        "latency_s_frames": pct([r["s"] for r in new_ok]), "latency_s_reads": pct(reads),
        "latency_s_reposts": pct([r["s"] for r in frames_ok if r["kind"] == "repost"]),
        "by_kind": by_kind,
        "errors": sum(not r["ok"] for r in recs), "errors_by_status": dict(rec.errors_by_status),
        "first_errors": rec.messages,
        "anomalies": {k: {"count": len(v), "first": v[:MAX_MESSAGES]} for k, v in anomalies.items()},
        "mean_batch_frames": float(np.mean([b for b in batch_sizes if b])) if batch_sizes else None,
        "mean_inference_ms_per_frame": float(np.mean([m for m in infer_ms if m is not None])) if infer_ms else None,
        "benchmark_client_cpu_s": bench_cpu, "server_metrics": metrics_lines,
    }
    return summary, acks, coils


# main ---------------------------------------------------------------------------------------------------------
def fmt_lat(p: dict) -> str:
    if not p.get("n"):
        return "-"
    return f"{p['p50']:.2f} / {p['p95']:.2f} / {p['p99']:.2f}  (max {p['max']:.2f}, n {p['n']})"


def summary_table(doc: dict, args, anomalies: int) -> Table:
    load, fault = doc["load"], doc.get("fault")
    integ = load["integrity"]
    h, w = doc["coil_body"]["frame_height"], doc["coil_body"]["frame_width"]
    table = Table("", "measure", "value", title=f"steelscan serve under load: {args.clients} clients x "
                  f"{args.seconds:g} s, model {args.model}, {w}x{h} frames, batch {args.batch_frames}",
                  caption=f"{doc['cpu_count']} CPUs; load average {doc['load_average_start'][0]:.2f} at start, "
                          f"{doc['load_average_end'][0]:.2f} at end; latencies p50 / p95 / p99 in s")
    win = load["frames_per_s_by_10s_window"]
    rows = [
        ("load", "requests (req/s)", f"{load['requests']} ({load['requests_per_s']:.2f}/s) in {load['wall_s']:.1f} s"),
        ("", "frames accepted (new + re-posts)",
         f"{load['frames_accepted']} ({load['new_frames_accepted']} + {load['reposts_accepted']})"),
        ("", "new frames/s held (10 s windows min-max)",
         f"{load['frames_per_s']:.2f} ({min(win):.1f}-{max(win):.1f})"),
        ("", "mean batch / inference ms per frame",
         f"{load['mean_batch_frames'] or 0:.2f} / {load['mean_inference_ms_per_frame'] or 0:.0f}"),
        ("", "server CPU cores used", f"{load.get('server_cores_used', float('nan')):.2f}"),
        ("", "latency all", fmt_lat(load["latency_s_all"])),
        ("", "latency new frames", fmt_lat(load["latency_s_frames"])),
        ("", "latency re-posts (answered from the store)", fmt_lat(load["latency_s_reposts"])),
        ("", "latency reads", fmt_lat(load["latency_s_reads"])),
        ("", "errors", f"{load['errors']} {load['errors_by_status'] or ''}".strip()),
        ("", "anomalies (repost / read-after-write)", f"{anomalies} " + str(
            {k: v["count"] for k, v in load["anomalies"].items() if v["count"]} or "")),
        ("", "graceful shutdown", f"{load['shutdown']['shutdown_s']} s, rc {load['shutdown']['returncode']}"
                                  + (" (needed SIGKILL)" if load["shutdown"]["needed_sigkill"] else "")),
        ("integrity", "acknowledged frames (pieces) checked",
         f"{integ['acknowledged_checked']} ({integ['pieces_checked']})"),
        ("", "lost / mismatched", f"{integ['lost']} / {integ['mismatched']}"),
        ("", "stored but not acknowledged", str(integ["stored_not_acknowledged"])),
    ]
    for m in load["first_errors"][:3]:
        rows.append(("", "error", m[:160]))
    if fault:
        rows += [
            ("fault", "killed after / in flight", f"{fault.get('acked_at_kill')} acknowledged, frame "
             f"{fault.get('in_flight_at_kill')} in flight ({fault.get('kill_delay_s')} s into it; in store: "
             f"{fault.get('in_flight_committed_before_kill')})"),
            ("", "acknowledged before kill / found", f"{len(fault['acknowledged_before_kill'])} / "
             f"{fault['found_after_kill']}"),
            ("", "lost / mismatched", f"{fault['lost']} / {fault['mismatched_after_kill']}"),
            ("", "in-flight frame re-posted", str(fault.get("in_flight_repost", "-"))),
            ("", "continued ok", f"{fault['continued_ok']} / {fault['continued_total']}"),
            ("", "close / grade", f"{fault.get('close_status')} / {fault.get('close_grade')}"),
            ("", "frames_done complete, final lost / mismatched",
             f"{fault['frames_done_complete']}, {fault['final_lost']} / {fault['final_mismatched']}"),
            ("", "fault errors", "; ".join(fault["errors"])[:200] or "0"),
        ]
    rows.append(("server log", "noteworthy lines", str(doc.get("server_log_noteworthy_count", 0))))
    rows.append(("verdict", "", "[green]PASS[/green]" if doc["pass"] else "[red]FAIL[/red]"))
    for r in rows:
        if r[0] and r[0] != "load":
            table.add_section()
        table.add_row(*r)
    return table


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--seconds", type=float, default=60.0, help="load phase: no new request after this")
    ap.add_argument("--model", default="severstal", help="built-in name / run folder (exported once) or .onnx")
    ap.add_argument("--batch-frames", type=int, default=4, help="serve --batch-frames")
    ap.add_argument("--threads", type=int, default=2, help="serve --threads")
    ap.add_argument("--server-timeout", type=float, default=60.0, help="serve --timeout (its default: 60)")
    ap.add_argument("--client-timeout", type=float, default=120.0)
    ap.add_argument("--frames", type=int, default=20, help="synthetic coil length (frames cycled in the load phase)")
    ap.add_argument("--frame-size", default="1600x256", help="synthetic frames WIDTHxHEIGHT")
    ap.add_argument("--strip-width-mm", type=float, default=1250.0, help="synthetic coil (at 1.5 mm/px across)")
    ap.add_argument("--read-every", type=int, default=5, help="every Nth request of a client is a read (0: none)")
    ap.add_argument("--repost-every", type=int, default=20,
                    help="every Nth request re-posts the client's previous frame (0: none)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--port", type=int, default=0, help="0: a free port")
    ap.add_argument("--skip-fault", action="store_true")
    ap.add_argument("--work-dir", type=Path, help="default: a new temp dir, removed unless --keep-work")
    ap.add_argument("--keep-work", action="store_true", help="keep the work dir (server logs, stores)")
    ap.add_argument("--json", default="benchmarks/results/service_load.json")
    args = ap.parse_args(argv)
    if args.clients < 1 or args.frames < 2 or args.seconds <= 0:
        ap.error("need --clients >= 1, --frames >= 2, --seconds > 0")
    con = Console(width=None if sys.stdout.isatty() else 150)
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="service_load_"))
    work.mkdir(parents=True, exist_ok=True)
    log_path = work / "server.log"
    servers: list[Server] = []
    doc: dict = {"settings": {
        "clients": args.clients, "seconds": args.seconds, "model": args.model, "batch_frames": args.batch_frames,
        "threads": args.threads, "server_timeout_s": args.server_timeout, "client_timeout_s": args.client_timeout,
        "synthetic_frames": args.frames, "frame_size": args.frame_size, "read_every": args.read_every,
        "repost_every": args.repost_every, "seed": args.seed, "skip_fault": args.skip_fault},
        "cpu_count": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
        "load_average_start": os.getloadavg(), "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"),
        "work_dir": str(work), "server_log": str(log_path)}

    def make_server(name: str) -> Server:
        data_dir = work / name.split("-")[0]  # the fault phase's two servers share one store
        s = Server(name, artifact, data_dir, data_dir / "records.db", args.port, args.batch_frames,
                   args.server_timeout, args.threads, log_path)
        servers.append(s)
        return s.start()

    failed = True
    try:
        con.print(f"[dim]work dir {work}; server log {log_path}[/dim]")
        manifest = synth_coil(work / "coil", args.frames, args.seed, args.frame_size, args.strip_width_mm)
        pngs = [p.read_bytes() for p in sorted((work / "coil" / "frames").glob("*.png"))]
        coil_body = coil_body_from(manifest)
        doc["coil_body"] = coil_body
        if args.model.endswith(".onnx"):
            artifact, doc["export_s"] = Path(args.model).resolve(), None
        else:
            artifact = work / "artifact" / f"{Path(args.model).name.removesuffix('.pt')}.onnx"
            artifact.parent.mkdir(exist_ok=True)
            t0 = time.perf_counter()
            con.print(f"exporting {args.model} to {artifact} ...")
            with log_path.open("a") as log:
                subprocess.run([*STEELSCAN, "export", args.model, "--format", "onnx", "--out", str(artifact)],
                               check=True, stdout=log, stderr=subprocess.STDOUT)
            doc["export_s"] = time.perf_counter() - t0
        doc["artifact"] = str(artifact)

        # load ------------------------------------------------------------------------------------------------
        server = make_server("load")
        doc["load_startup_s"] = server.startup_s
        con.print(f"load: {args.clients} clients for {args.seconds:g} s against {server.url} "
                  f"(server up in {server.startup_s:.1f} s) ...")
        cpu0 = proc_cpu_seconds(server.proc.pid)
        load, acks, coils = asyncio.run(load_phase(server.url, args, pngs, coil_body))
        cpu1 = proc_cpu_seconds(server.proc.pid)
        if cpu0 is not None and cpu1 is not None:
            load["server_cpu_s"] = cpu1 - cpu0
            load["server_cores_used"] = (cpu1 - cpu0) / load["wall_s"]
        load["shutdown"] = server.stop()
        load["integrity"] = check_store(server.db, acks, coils)
        doc["load"] = load

        # fault ---------------------------------------------------------------------------------------------------
        if not args.skip_fault:
            con.print(f"fault: {args.frames}-frame coil, SIGKILL mid-coil, restart, finish ...")
            doc["fault"] = asyncio.run(fault_phase(make_server, args, pngs, coil_body))
        failed = False
    finally:
        for s in servers:
            if s.alive():
                s.kill()
        doc["load_average_end"] = os.getloadavg()
        if log_path.exists():
            n_notes, notes = noteworthy(log_path)
            doc["server_log_noteworthy_count"], doc["server_log_noteworthy"] = n_notes, notes
        if failed:
            con.print(f"[red]benchmark failed; server log tail ({log_path}):[/red]\n{tail(log_path)}")

    load = doc["load"]
    integ = load["integrity"]
    fault = doc.get("fault")
    anomalies = sum(a["count"] for a in load["anomalies"].values())
    doc["pass"] = (load["errors"] == 0 and integ["lost"] == 0 and integ["mismatched"] == 0 and anomalies == 0
                   and (fault is None or fault["ok"]))

    con.print(summary_table(doc, args, anomalies))

    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    keep = args.keep_work or args.work_dir
    con.print(f"wrote {out}" + (f"; work dir kept: {work}" if keep else ""))
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return doc


if __name__ == "__main__":
    sys.exit(0 if main().get("pass") else 1)
