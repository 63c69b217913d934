"""The records store: round trip, idempotent frames, racing writers, resume after a killed process, errors.

Tests taking `store`/`store_url` run on SQLite and on a real PostgreSQL (conftest's `pg_url`; skipped, with the
reason, where no server can be had).
"""

from __future__ import annotations

import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest
from sqlalchemy import select

from steelscan.core.errors import SteelscanError
from steelscan.inspection.records import Piece
from steelscan.store import CoilClosed, Store, coils_table

GEOMETRY = {"frame_h": 256, "frame_w": 1600, "overlap": 32, "mm_per_px": 0.5}
SRC = str(Path(__file__).resolve().parents[1] / "src")


def frame_pieces(frame: int, n: int = 2) -> list[Piece]:
    return [Piece(frame, f"class{i}", 0.5 + 0.1 * i, (i, frame, i + 10, frame + 5), 40 + i) for i in range(n)]


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path):
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")  # only here, so SQLite runs never need a server
    return f"sqlite:///{tmp_path / 'sub' / 'records.db'}"


@pytest.fixture
def store(store_url):
    s = Store(store_url)
    yield s
    s.close()


def test_round_trip_pieces_in_frame_then_insertion_order(store):
    assert store.open_coil("C1", {"geometry": GEOMETRY, "model": "m"}) == set()
    # Frames added out of order; pieces must come back by frame, then in insertion order.
    assert store.add_frame("C1", 1, frame_pieces(1, 3), {"ms": 12.5, "tiles": 4, "tiles_skipped": 1})
    assert store.add_frame("C1", 0, frame_pieces(0, 2))
    assert store.add_frame("C1", 2, [])
    assert store.pieces("C1") == frame_pieces(0, 2) + frame_pieces(1, 3)
    assert store.frames_done("C1") == {0, 1, 2}
    c = store.coil("C1")
    assert c["n_frames"] == 3 and c["status"] == "open" and c["grade"] is None
    assert c["info"] == {"geometry": GEOMETRY, "model": "m"}


def test_add_frame_is_idempotent(store, store_url):
    store.open_coil("C1", {"geometry": GEOMETRY})
    assert store.add_frame("C1", 0, frame_pieces(0, 2)) is True
    assert store.add_frame("C1", 0, frame_pieces(0, 5)) is False
    assert len(store.pieces("C1")) == 2
    # A second writer (own engine, as another process would have) loses the same race.
    other = Store(store_url)
    try:
        assert other.add_frame("C1", 0, frame_pieces(0, 1)) is False
        assert other.add_frame("C1", 1, frame_pieces(1, 1)) is True
    finally:
        other.close()
    assert store.pieces("C1") == frame_pieces(0, 2) + frame_pieces(1, 1)
    assert store.coil("C1")["n_frames"] == 2


def test_resume_after_killed_process(store_url):
    if not hasattr(signal, "SIGKILL"):
        pytest.skip("needs SIGKILL")
    child = textwrap.dedent(f"""
        import os, signal
        from datetime import datetime, UTC
        from sqlalchemy import insert
        from steelscan.inspection.records import Piece
        from steelscan.store import Store, frames_table
        s = Store({store_url!r})
        s.open_coil("C7", {{"geometry": {GEOMETRY!r}}})
        for k in range(3):
            s.add_frame("C7", k, [Piece(k, "scratch", 0.9, (0, k, 4, k + 4), 16)])
        # Frame 3 is half written (its transaction is open) when the process dies.
        with s.engine.begin() as conn:
            conn.execute(insert(frames_table), {{"coil_id": "C7", "frame": 3, "n_pieces": 1,
                                                "info": None, "created_at": datetime.now(UTC)}})
            os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", child], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL, proc.stderr

    s = Store(store_url)
    try:
        assert s.open_coil("C7", {"geometry": GEOMETRY}) == {0, 1, 2}
        assert [p.frame for p in s.pieces("C7")] == [0, 1, 2]
        for k in range(5):  # the resumed run replays every frame; only 3 and 4 are new
            assert s.add_frame("C7", k, [Piece(k, "scratch", 0.9, (0, k, 4, k + 4), 16)]) is (k >= 3)
        assert s.frames_done("C7") == {0, 1, 2, 3, 4}
        assert [p.frame for p in s.pieces("C7")] == [0, 1, 2, 3, 4]
    finally:
        s.close()


def test_sqlite_runs_in_wal_mode(tmp_path):
    store = Store(str(tmp_path / "sub" / "records.db"))
    store.open_coil("C1", {"geometry": GEOMETRY})
    # journal_mode=WAL is stored in the file: a plain sqlite3 connection sees it too.
    raw = sqlite3.connect(tmp_path / "sub" / "records.db")
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        raw.close()
    with store.engine.connect() as conn:  # per-connection settings
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    store.close()


def test_geometry_mismatch_is_refused(store):
    assert store.open_coil("C1", {"geometry": GEOMETRY, "model": "a"}) == set()
    store.add_frame("C1", 0, frame_pieces(0))
    # Same geometry (other keys may differ): resumes, and the stored info is kept.
    assert store.open_coil("C1", {"geometry": dict(GEOMETRY), "model": "b"}) == {0}
    assert store.coil("C1")["info"]["model"] == "a"
    with pytest.raises(SteelscanError, match="geometry"):
        store.open_coil("C1", {"geometry": {**GEOMETRY, "overlap": 64}})


@pytest.mark.parametrize("bad", ["", "-lead", "a/b", "../x", "x" * 65, "c 1", 7, "C9\n", "C9\r\n"])
def test_bad_coil_id_is_refused(store, bad):
    with pytest.raises(SteelscanError, match=r"coil id must match"):
        store.open_coil(bad, {"geometry": GEOMETRY})
    assert store.coils() == []


def test_good_coil_ids_are_accepted(store):
    for cid in ["A", "x" * 64, "2026-05-09_coil.7"]:
        store.open_coil(cid, {})
    assert len(store.coils()) == 3


def test_unknown_coil(store):
    with pytest.raises(SteelscanError, match="NOPE"):
        store.coil("NOPE")
    with pytest.raises(SteelscanError, match="unknown coil 'NOPE'"):
        store.add_frame("NOPE", 0, frame_pieces(0))
    with pytest.raises(SteelscanError, match="unknown coil 'NOPE'"):
        store.close_coil("NOPE", {"grade": "A"})
    assert store.frames_done("NOPE") == set()


def test_close_coil_stores_grade_and_status(store, store_url):
    store.open_coil("C1", {"geometry": GEOMETRY})
    store.add_frame("C1", 0, frame_pieces(0))
    with store.engine.connect() as conn:  # ungraded is SQL NULL, not the JSON value null
        assert conn.scalar(select(coils_table.c.grade.is_(None)).where(coils_table.c.coil_id == "C1")) is True
    store.close_coil("C1", {"grade": "B", "score": 0.75, "reasons": ["scratch > 2 m"]})
    again = Store(store_url)  # read back through a fresh engine
    try:
        c = again.coil("C1")
    finally:
        again.close()
    assert c["status"] == "closed"
    assert c["grade"] == {"grade": "B", "score": 0.75, "reasons": ["scratch > 2 m"]}
    assert c["n_frames"] == 1
    assert "T" in c["created_at"] and c["created_at"].endswith("+00:00")


def test_coils_newest_first_and_paginated(store):
    ids = [f"C{i}" for i in range(5)]
    for cid in ids:
        store.open_coil(cid, {"geometry": GEOMETRY})
    store.add_frame("C3", 0, [])
    newest_first = ids[::-1]
    assert [c["coil_id"] for c in store.coils()] == newest_first
    assert [c["coil_id"] for c in store.coils(limit=2)] == newest_first[:2]
    assert [c["coil_id"] for c in store.coils(limit=2, offset=2)] == newest_first[2:4]
    assert [c["coil_id"] for c in store.coils(limit=2, offset=4)] == newest_first[4:]
    assert store.coils(offset=5) == []
    assert {c["coil_id"]: c["n_frames"] for c in store.coils()} == {"C0": 0, "C1": 0, "C2": 0, "C3": 1, "C4": 0}
    with pytest.raises(SteelscanError, match="limit"):
        store.coils(limit=-1)
    with pytest.raises(SteelscanError, match="offset"):  # past a 64-bit integer: a message, not OverflowError
        store.coils(offset=2**63)


def test_bad_inputs(store):
    with pytest.raises(SteelscanError, match="mysql"):
        Store("mysql://u@h/db")
    store.open_coil("C1", {})
    with pytest.raises(SteelscanError, match="frame=1"):
        store.add_frame("C1", 1, frame_pieces(0))
    with pytest.raises(SteelscanError, match="JSON"):
        store.add_frame("C1", 0, [], {"ms": object()})
    assert store.frames_done("C1") == set()  # nothing half-written by the refusals


def test_url_forms(tmp_path):
    for url in (f"sqlite:///{tmp_path / 'a' / 'r.db'}", str(tmp_path / "b" / "r.db")):
        s = Store(url)
        s.open_coil("C1", {})
        s.close()
    assert (tmp_path / "a" / "r.db").exists() and (tmp_path / "b" / "r.db").exists()


def test_racing_writers_store_each_frame_once(store, store_url):
    """Stations (own engines, in threads) open one coil and add the same frames at once, in different orders."""
    n_writers, frames = 4, list(range(12))
    start, results, errors = threading.Barrier(n_writers, timeout=60), [], []

    def writer(seed: int) -> None:
        order = random.Random(seed).sample(frames, len(frames))
        s = Store(store_url)
        try:
            start.wait()
            s.open_coil("C1", {"geometry": GEOMETRY})
            results.extend((k, s.add_frame("C1", k, frame_pieces(k, 2))) for k in order)
        except Exception as e:  # reported by the assertion below, not lost in the thread
            errors.append(e)
        finally:
            s.close()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n_writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(results) == n_writers * len(frames)
    assert sorted(k for k, won in results if won) == frames  # exactly one writer stored each frame
    assert store.frames_done("C1") == set(frames)
    assert store.pieces("C1") == [p for k in frames for p in frame_pieces(k, 2)]
    assert [c["coil_id"] for c in store.coils()] == ["C1"] and store.coil("C1")["n_frames"] == len(frames)


def test_close_is_atomic_with_frame_commits(store, store_url):
    """Writers (own engines) commit frames while the coil is closed: the grade is computed on exactly the frames
    committed, and every commit after the close is refused (CoilClosed), on SQLite and PostgreSQL."""
    store.open_coil("C1", {"geometry": GEOMETRY})
    n_writers, acked, refused, errors = 4, [], [], []
    started = threading.Barrier(n_writers + 1, timeout=60)

    def writer(first: int) -> None:
        s = Store(store_url)
        try:
            started.wait()
            for k in range(first, 10**6, n_writers):  # until the close refuses one
                try:
                    if s.add_frame("C1", k, frame_pieces(k, 1)):
                        acked.append(k)
                except CoilClosed:
                    refused.append(k)
                    return
        except Exception as e:  # reported by the assertion below
            errors.append(e)
        finally:
            s.close()

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n_writers)]
    for t in threads:
        t.start()
    started.wait()
    while len(acked) < 20:
        threading.Event().wait(0.01)
    seen: list[set[int]] = []

    def grade(done: set[int], pieces: list) -> dict:
        seen.append(set(done))
        return {"frames": len(done), "pieces": len(pieces)}

    g = store.close_coil("C1", grade)
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert len(refused) == n_writers  # each writer's next frame after the close was refused
    assert seen == [set(acked)] == [store.frames_done("C1")]
    assert g == store.coil("C1")["grade"] == {"frames": len(acked), "pieces": len(acked)}
    # closing again returns the stored grade without grading; a frame for the closed coil is refused, always
    assert store.close_coil("C1", lambda done, pieces: 1 / 0) == g
    with pytest.raises(CoilClosed, match="closed"):
        store.add_frame("C1", acked[0], frame_pieces(acked[0], 1))  # even one already stored
    with pytest.raises(CoilClosed):
        store.add_frame("C1", 10**6, [])


def test_grading_that_raises_leaves_the_coil_open(store):
    store.open_coil("C1", {"geometry": GEOMETRY})
    store.add_frame("C1", 0, [])

    def refuse(done, pieces):
        raise SteelscanError("missing frames")

    with pytest.raises(SteelscanError, match="missing frames"):
        store.close_coil("C1", refuse)
    assert store.coil("C1")["status"] == "open" and store.add_frame("C1", 1, []) is True


def test_create_coil_tells_the_one_creator(store, store_url):
    """Ten stations opening one new coil at once: exactly one of them created it."""
    n = 10
    start, created, errors = threading.Barrier(n, timeout=60), [], []

    def opener() -> None:
        s = Store(store_url)
        try:
            start.wait()
            created.append(s.create_coil("NEW", {"geometry": GEOMETRY}))
        except Exception as e:  # reported below
            errors.append(e)
        finally:
            s.close()

    threads = [threading.Thread(target=opener) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    assert sorted(created) == [False] * (n - 1) + [True]
    with pytest.raises(SteelscanError, match="geometry"):
        store.create_coil("NEW", {"geometry": {**GEOMETRY, "overlap": 1}})
