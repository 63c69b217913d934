"""Smoke test of benchmarks/service_load.py: a tiny untrained segmenter, small frames, 3 clients for 3 s, then
the SIGKILL fault phase. Starts `steelscan serve` three times as a subprocess (~30 s on 2 cores)."""

from __future__ import annotations

import json

from tests.conftest import load_benchmark
from tests.service_helpers import FRAME_H, FRAME_W, tiny_artifact


def test_service_load_benchmark_smoke(tmp_path):
    art = tiny_artifact(tmp_path)
    out = tmp_path / "service_load.json"
    doc = load_benchmark("service_load").main([
        "--model", str(art), "--clients", "3", "--seconds", "3", "--frames", "6",
        "--frame-size", f"{FRAME_W}x{FRAME_H}", "--strip-width-mm", "300", "--read-every", "3",
        "--repost-every", "4", "--json", str(out), "--work-dir", str(tmp_path / "work"),
    ])

    assert json.loads(out.read_text())["settings"]["clients"] == 3
    load, fault = doc["load"], doc["fault"]
    assert load["errors"] == 0, load["first_errors"]
    assert load["new_frames_accepted"] >= 3 and load["reposts_accepted"] >= 1 and load["frames_per_s"] > 0
    assert load["integrity"]["lost"] == 0 and load["integrity"]["mismatched"] == 0
    assert load["integrity"]["acknowledged_checked"] == load["new_frames_accepted"]
    assert all(a["count"] == 0 for a in load["anomalies"].values()), load["anomalies"]
    assert fault["ok"], fault
    assert fault["frames_done_complete"] and fault["close_status"] == 200
    assert doc["pass"]
