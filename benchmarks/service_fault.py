"""Fault phase of `benchmarks/service_load.py` (imported by it, not run on its own): one client posts a coil's
frames in order, `steelscan serve` gets SIGKILL mid-coil, the store is checked, the server restarts on it and
the coil is finished and closed. The steps and their checks are in the main script's docstring."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import httpx
import numpy as np

from service_server import Server, async_client, check_store, describe, frame_post, open_store, piece_key

COIL = "fault-1"


async def fault_phase(make_server: Callable[[str], Server], args, pngs: list[bytes], coil_body: dict) -> dict:
    n = args.frames
    rng = random.Random(args.seed)
    out: dict = {"coil_id": COIL, "n_frames": n, "kill_after_acked": rng.randint(max(1, n // 4), max(1, n // 2)),
                 "errors": []}

    server = make_server("fault-before-kill")
    out["startup_s"] = server.startup_s
    acked = await post_until_killed(server, args, pngs, coil_body, rng, out)

    # what survived: the store, opened directly, before anyone restarts the service
    survived = check_store(server.db, {(COIL, f): p for f, p in acked.items()}, [COIL])
    with open_store(server.db) as store:
        done_after_kill = store.frames_done(COIL)
    out["found_after_kill"] = sum(1 for f in acked if f in done_after_kill)
    out["lost"] = survived["lost"]
    out["mismatched_after_kill"] = survived["mismatched"]
    inflight = out.get("in_flight_at_kill")
    out["in_flight_committed_before_kill"] = None if inflight is None else inflight in done_after_kill
    out["stray_tmp_frame_files"] = [p.name for p in (server.data_dir / "frames" / COIL).glob(".*.tmp")]

    server = make_server("fault-after-restart")
    out["restart_startup_s"] = server.startup_s
    cont_ok, cont_total = await restart_and_finish(server, args, pngs, coil_body, acked, out)
    out["shutdown"] = server.stop()

    final = check_store(server.db, {(COIL, f): p for f, p in acked.items()}, [COIL])
    with open_store(server.db) as store:
        done = store.frames_done(COIL)
        out["stored_status"] = store.coil(COIL)["status"]
    out["continued_ok"] = cont_ok
    out["continued_total"] = cont_total
    out["frames_done_complete"] = done == set(range(n))
    out["final_lost"] = final["lost"]
    out["final_mismatched"] = final["mismatched"]
    out["ok"] = (out["lost"] == 0 and out["mismatched_after_kill"] == 0 and cont_ok == cont_total
                 and out["frames_done_complete"] and final["lost"] == 0 and final["mismatched"] == 0
                 and out["close_status"] == 200 and not out["errors"])
    return out


async def post_until_killed(server: Server, args, pngs: list[bytes], coil_body: dict, rng: random.Random,
                            out: dict) -> dict[int, list]:
    """Open the coil and post its frames in order; once `kill_after_acked` are acknowledged, SIGKILL the server
    a random fraction of the mean frame latency into the next request. The pieces of each acknowledged frame."""
    acked: dict[int, list] = {}
    latencies: list[float] = []
    in_flight: int | None = None
    reached = asyncio.Event()

    async with async_client(server.url, args.client_timeout) as http:
        r = await http.post("/v1/coils", json={"coil_id": COIL, **coil_body})
        out["open_status"] = r.status_code
        if r.status_code != 201:
            out["errors"].append(f"open: {describe(r, None)}")

        async def post_all() -> None:
            nonlocal in_flight
            for k in range(args.frames):
                in_flight = k
                t0 = time.perf_counter()
                try:
                    resp = await http.post("/v1/frames", **frame_post(COIL, k, pngs))
                except httpx.TransportError as exc:
                    out["client_saw"] = f"frame {k}: {type(exc).__name__}: {str(exc)[:200]}"
                    return
                if resp.status_code != 200:
                    out["errors"].append(f"before kill, frame {k}: {describe(resp, None)}")
                    return
                latencies.append(time.perf_counter() - t0)
                acked[k] = piece_key(resp.json()["pieces"])
                in_flight = None
                if len(acked) >= out["kill_after_acked"]:
                    reached.set()

        async def poster() -> None:
            try:
                await post_all()
            finally:
                reached.set()  # also when it stopped early: the killer must not wait forever

        task = asyncio.create_task(poster())
        await reached.wait()
        delay = rng.uniform(0.1, 0.9) * (float(np.mean(latencies)) if latencies else 0.5)
        await asyncio.sleep(delay)
        out["kill_delay_s"] = round(delay, 3)
        out["in_flight_at_kill"] = in_flight
        out["acked_at_kill"] = len(acked)
        await asyncio.to_thread(server.kill)
        try:
            await asyncio.wait_for(task, 60)
        except TimeoutError:
            task.cancel()
            out["errors"].append("poster did not notice the kill within 60 s")
    out["acknowledged_before_kill"] = sorted(acked)
    out["mean_frame_latency_before_kill_s"] = float(np.mean(latencies)) if latencies else None
    return acked


async def restart_and_finish(server: Server, args, pngs: list[bytes], coil_body: dict, acked: dict[int, list],
                             out: dict) -> tuple[int, int]:
    """Re-open the coil on the restarted server, post every frame not acknowledged (adding them to `acked`),
    close the coil. (frames answered 200, frames posted)."""
    inflight = out.get("in_flight_at_kill")
    cont_ok = cont_total = 0
    async with async_client(server.url, args.client_timeout) as http:
        r = await http.get(f"/v1/coils/{COIL}")
        out["after_restart_n_frames"] = r.json().get("n_frames") if r.status_code == 200 else describe(r, None)
        r = await http.post("/v1/coils", json={"coil_id": COIL, **coil_body})
        out["reopen_status"] = r.status_code  # 200: the open coil of that id and geometry
        for k in [k for k in range(args.frames) if k not in acked]:
            cont_total += 1
            try:
                resp = await http.post("/v1/frames", **frame_post(COIL, k, pngs))
            except httpx.HTTPError as exc:
                resp, error = None, describe(None, exc)
            else:
                error = None if resp.status_code == 200 else describe(resp, None)
            if error:
                out["errors"].append(f"after restart, frame {k}: {error}")
                continue
            body = resp.json()
            cont_ok += 1
            acked[k] = piece_key(body["pieces"])
            if k == inflight:
                out["in_flight_repost"] = {"status": resp.status_code, "committed": body["committed"]}
                if out["in_flight_committed_before_kill"] and body["committed"]:
                    out["errors"].append(f"frame {k} was in the store before the restart but re-posting it "
                                         "answered committed=true")
            elif not body["committed"]:
                out["errors"].append(f"after restart, frame {k} answered committed=false but was never acknowledged")
        r = await http.post(f"/v1/coils/{COIL}/close")
        out["close_status"] = r.status_code
        body = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
        out["close_grade"] = body.get("grade")
        if r.status_code != 200 or "grade" not in body:
            out["errors"].append(f"close: {describe(r, None)}")
        r = await http.get(f"/v1/coils/{COIL}")
        if r.status_code == 200:
            out["final_status"], out["final_n_frames"] = r.json().get("status"), r.json().get("n_frames")
    return cont_ok, cont_total
