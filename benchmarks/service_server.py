"""Server side of `benchmarks/service_load.py` (imported by it, not run on its own): a `steelscan serve`
subprocess on loopback and its log, the store read directly, and the synthetic coil and request helpers both
phases share."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import defaultdict
from contextlib import closing
from pathlib import Path

import httpx
import yaml

from steelscan.store import Store

BIN = Path(sys.executable).with_name("steelscan")
# any interpreter that imports steelscan will do, with its console script or without
STEELSCAN = [str(BIN)] if BIN.is_file() else [sys.executable, "-c", "from steelscan.cli import run; run()"]
LOG_NOTEWORTHY = re.compile(r"Traceback|ERROR|Error|Exception|WARNING|Warning|locked|Killed|timeout", re.I)
MAX_MESSAGES = 10


# server process ---------------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_seconds(pid: int) -> float | None:
    """utime + stime of a live process from /proc (Linux), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


class Server:
    """One `steelscan serve` subprocess on loopback; output appended to `log_path`."""

    def __init__(self, name: str, artifact: Path, data_dir: Path, db: Path, port: int, batch_frames: int,
                 timeout_s: float, threads: int, log_path: Path):
        self.name, self.artifact, self.data_dir, self.db = name, artifact, data_dir, db
        self.port = port or free_port()
        self.batch_frames, self.timeout_s, self.threads, self.log_path = batch_frames, timeout_s, threads, log_path
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.startup_s: float | None = None

    def start(self, wait_s: float = 300.0) -> Server:
        cmd = [*STEELSCAN, "serve", "--host", "127.0.0.1", "--port", str(self.port), "--model", str(self.artifact),
               "--data-dir", str(self.data_dir), "--db", str(self.db), "--batch-frames", str(self.batch_frames),
               "--timeout", str(self.timeout_s), "--threads", str(self.threads)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "HF_HUB_OFFLINE": "1",
               "NO_ALBUMENTATIONS_UPDATE": "1"}
        with self.log_path.open("ab") as log:  # the child keeps its own descriptor
            log.write(f"\n===== {time.strftime('%H:%M:%S')} start {self.name}: {' '.join(cmd)}\n".encode())
            log.flush()  # before the child's first line
            t0 = time.perf_counter()
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         env=env, start_new_session=True)
        while time.perf_counter() - t0 < wait_s:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.name} exited with {self.proc.returncode} while starting; "
                                   f"log {self.log_path}:\n{tail(self.log_path)}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=5).status_code == 200:
                    self.startup_s = time.perf_counter() - t0
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        raise RuntimeError(f"server {self.name} did not answer /healthz within {wait_s:.0f} s; log {self.log_path}:\n"
                           f"{tail(self.log_path)}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would."""
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(30)
        self._mark("killed (SIGKILL)")

    def stop(self, grace_s: float = 30.0) -> dict:
        """SIGTERM (graceful: uvicorn drains, the station closes); SIGKILL after `grace_s`."""
        if not self.alive():
            return {"shutdown_s": 0.0, "returncode": None if self.proc is None else self.proc.returncode,
                    "needed_sigkill": False}
        t0 = time.perf_counter()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(grace_s)
            forced = False
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)
            forced = True
        self._mark("stopped (SIGTERM)" + (", then SIGKILL" if forced else ""))
        return {"shutdown_s": round(time.perf_counter() - t0, 2), "returncode": self.proc.returncode,
                "needed_sigkill": forced}

    def _mark(self, what: str) -> None:
        with self.log_path.open("a") as log:
            log.write(f"===== {time.strftime('%H:%M:%S')} {self.name} {what}\n")


def tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


def noteworthy(path: Path, limit: int = 40) -> tuple[int, list[str]]:
    """Log lines that look like trouble (our own ===== marks aside): how many, and the first `limit`."""
    lines = [ln for ln in path.read_text(errors="replace").splitlines()
             if LOG_NOTEWORTHY.search(ln) and not ln.startswith("=====")]
    return len(lines), lines[:limit]


# the synthetic coil both phases post ------------------------------------------------------------------------
def synth_coil(folder: Path, n: int, seed: int, frame: str, strip_width_mm: float) -> dict:
    subprocess.run([*STEELSCAN, "synth", "coil", str(folder), "--n", str(n), "--seed", str(seed), "--frame", frame,
                    "--strip-width-mm", str(strip_width_mm), "--workers", "1"], check=True, stdout=subprocess.DEVNULL)
    return yaml.safe_load((folder / "manifest.yaml").read_text())


def coil_body_from(manifest: dict) -> dict:
    body = {k: manifest[k] for k in ("mm_per_px_across", "mm_per_px_along", "strip_width_mm", "frame_overlap_px",
                                     "surface_side") if k in manifest}
    if manifest.get("strip_edges_px"):
        body["strip_edges_px"] = list(manifest["strip_edges_px"])
    body["frame_width"], body["frame_height"] = int(manifest["frame_width_px"]), int(manifest["frame_height_px"])
    return body


# requests -----------------------------------------------------------------------------------------------------
def async_client(url: str, client_timeout: float, **kw) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(client_timeout, connect=30.0), **kw)


def frame_post(coil_id: str, k: int, pngs: list[bytes]) -> dict:
    """POST /v1/frames arguments for frame `k` of a coil; the synthetic coil's PNGs are cycled."""
    png = pngs[k % len(pngs)]
    return {"data": {"coil_id": coil_id, "frame": str(k)}, "files": {"image": (f"{k:06d}.png", png, "image/png")}}


def piece_key(pieces) -> list:
    """Pieces as a sorted multiset of (class_name, bbox, area_px), from response dicts or store Pieces."""
    out = []
    for p in pieces:
        if isinstance(p, dict):
            out.append((str(p["class_name"]), tuple(int(v) for v in p["bbox"]), int(p["area_px"])))
        else:
            out.append((str(p.class_name), tuple(int(v) for v in p.bbox), int(p.area_px)))
    return sorted(out)


def describe(resp: httpx.Response | None, exc: BaseException | None) -> str:
    if exc is not None:
        return f"{type(exc).__name__}: {str(exc)[:200] or repr(exc)}"
    try:
        body = resp.json()
        return f"HTTP {resp.status_code}: {body.get('error', body) if isinstance(body, dict) else body}"[:300]
    except ValueError:
        return f"HTTP {resp.status_code}: {resp.text[:200]!r}"


# the store, read directly (the server stopped or killed) ------------------------------------------------------
def open_store(db: Path) -> closing[Store]:
    return closing(Store(str(db)))


def check_store(db: Path, acks: dict[tuple[str, int], list], coils: list[str]) -> dict:
    """Every acknowledged frame stored, with the pieces its response returned (`acks`: (coil, frame) -> piece_key);
    stored-but-unacknowledged counted."""
    lost, mismatched, unacked = [], [], []
    checked = pieces_checked = 0
    with open_store(db) as store:
        for coil in coils:
            done = store.frames_done(coil)
            stored = defaultdict(list)
            for p in store.pieces(coil):
                stored[p.frame].append(p)
            mine = {f: key for (c, f), key in acks.items() if c == coil}
            for f, key in sorted(mine.items()):
                checked += 1
                pieces_checked += len(key)
                if f not in done:
                    lost.append(f"{coil} frame {f}")
                elif piece_key(stored.get(f, [])) != key:
                    mismatched.append(f"{coil} frame {f}: response {len(key)} pieces, store "
                                      f"{len(stored.get(f, []))}")
            unacked += [f"{coil} frame {f}" for f in sorted(done - set(mine))]
    return {"acknowledged_checked": checked, "pieces_checked": pieces_checked, "lost": len(lost),
            "mismatched": len(mismatched), "stored_not_acknowledged": len(unacked), "first_lost": lost[:MAX_MESSAGES],
            "first_mismatched": mismatched[:MAX_MESSAGES], "first_stored_not_acknowledged": unacked[:MAX_MESSAGES]}
