"""The inspection station's records store: coils, their committed frames and the defect pieces in them.

One code path on SQLAlchemy Core for SQLite (the embedded default: a file next to the station) and
PostgreSQL (several stations writing to one plant database).

Tables (one `MetaData`, created if missing):
  coils   coil_id (PK), created_at (UTC), status ("open" | "closed"), info JSON (manifest, geometry,
          model...), grade JSON (null until `close_coil`).
  frames  (coil_id -> coils, frame) PK, n_pieces, info JSON (timings, tiles...), created_at (UTC).
  pieces  id (autoincrement PK), (coil_id, frame) -> frames, class_name, confidence, x1, y1, x2, y2
          (frame px, x2/y2 exclusive), area_px, extra JSON (a defect classifier's verdict, else NULL);
          indexed on (coil_id, frame). Stores written before `extra` existed gain the column on open.

Guarantees:
  - A frame and its pieces are written in one transaction: after a crash a frame is either fully
    there or absent, and every frame committed before the crash survives (SQLite runs in WAL mode
    with synchronous=NORMAL: a commit survives a killed process; a power cut may lose the last few).
  - `add_frame` is idempotent: the frame row's primary key is the guard, so a resumed run, or two
    writers racing on the same frame, store it once; the loser gets False.
  - A closed coil takes no frame: `add_frame` reads the coil's status in its own transaction (PostgreSQL: under
    a share lock on the coil row; SQLite: after the frame row's insert took the database's write lock), and
    `close_coil` takes the coil row's lock first, so a close waits for frames being committed and grades exactly
    the frames committed before it; every later `add_frame` raises CoilClosed.
  - A coil keeps the geometry it was opened with: re-opening it with another raises CoilConflict.
  - Coil ids match COIL_ID_RULE in full (they become URL and folder names; "C9\n" is refused).
"""

from __future__ import annotations

import json
import numbers
import os
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import (
    JSON, BigInteger, Column, DateTime, Float, ForeignKey, ForeignKeyConstraint, Index, Integer, MetaData,
    String, Table, create_engine, event, func, insert, inspect, select, text, update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, IntegrityError

from steelscan.core.errors import SteelscanError
from steelscan.inspection.records import EXTRA_FIELDS, Piece

COIL_ID_RULE = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_COIL_ID = re.compile(COIL_ID_RULE)
MAX_ROWS = 2**31 - 1  # the largest limit / offset a listing takes (a 64-bit overflow is a message, not a crash)


class CoilConflict(SteelscanError):
    """The request contradicts the stored coil: another geometry, or a closed coil."""


class CoilClosed(CoilConflict):
    """A frame for a coil that is closed."""

metadata = MetaData()

coils_table = Table(
    "coils",
    metadata,
    Column("coil_id", String(64), primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("status", String(16), nullable=False),
    Column("info", JSON, nullable=False),
    Column("grade", JSON(none_as_null=True), nullable=True),  # SQL NULL until graded, not JSON null
)

frames_table = Table(
    "frames",
    metadata,
    Column("coil_id", String(64), ForeignKey("coils.coil_id"), primary_key=True),
    Column("frame", Integer, primary_key=True, autoincrement=False),
    Column("n_pieces", Integer, nullable=False),
    Column("info", JSON(none_as_null=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

pieces_table = Table(
    "pieces",
    metadata,
    # BIGINT on PostgreSQL (a plant database outgrows 2**31 pieces); SQLite autoincrements only INTEGER.
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("coil_id", String(64), nullable=False),
    Column("frame", Integer, nullable=False),
    Column("class_name", String(64), nullable=False),
    Column("confidence", Float, nullable=False),
    Column("x1", Integer, nullable=False),
    Column("y1", Integer, nullable=False),
    Column("x2", Integer, nullable=False),
    Column("y2", Integer, nullable=False),
    Column("area_px", Integer, nullable=False),
    # what a defect classifier added (detector_class, classifier_confidence); NULL for segmenter pieces
    Column("extra", JSON(none_as_null=True), nullable=True),
    ForeignKeyConstraint(["coil_id", "frame"], ["frames.coil_id", "frames.frame"]),
    # Leading coil_id: serves "all pieces of a coil" and its frame order.
    Index("ix_pieces_coil_frame", "coil_id", "frame"),
)


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # Per connection: WAL lets readers (the service) run beside the writer; NORMAL syncs at checkpoints
    # only, safe against a killed process; SQLite leaves foreign keys off unless asked.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def check_coil_id(coil_id) -> str:
    # fullmatch: with match, "$" also matches before a trailing newline
    if not isinstance(coil_id, str) or not _COIL_ID.fullmatch(coil_id):
        raise SteelscanError(f"coil id must match {COIL_ID_RULE} (1-64 of letters, digits, . _ -), got {coil_id!r}")
    return coil_id


def _json(value, what: str):
    """The value as it will read back (tuples become lists), or SteelscanError if it is not JSON."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))  # PostgreSQL JSON rejects NaN
    except (TypeError, ValueError) as e:
        raise SteelscanError(f"{what} must be JSON-serialisable, got {type(value).__name__}: {e}") from None


def _iso(ts: datetime) -> str:
    # SQLite returns naive datetimes; they were written in UTC.
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).isoformat()


class Store:
    """The records store at `url`: "sqlite:///path.db", a plain file path (SQLite), or "postgresql://..."."""

    def __init__(self, url: str):
        url = os.fspath(url)
        full = url if "://" in url else f"sqlite:///{Path(url).expanduser().resolve()}"
        expected = "store url must be sqlite:///PATH, a file path or postgresql://..."
        try:
            parsed = make_url(full)
        except ArgumentError:
            raise SteelscanError(f"{expected}, got {url!r}") from None
        backend = parsed.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise SteelscanError(f"{expected}, got scheme {parsed.drivername!r}")
        if parsed.drivername == "postgresql":
            # SQLAlchemy's default for plain postgresql:// is psycopg2; the installed driver is psycopg 3.
            parsed = parsed.set(drivername="postgresql+psycopg")
        if backend == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine = create_engine(parsed)
        except ModuleNotFoundError as e:
            raise SteelscanError(f"store url {parsed.drivername}:// needs the driver {e.name}, not installed") from None
        self._pg = backend == "postgresql"
        if backend == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        with self.engine.begin() as conn:
            if backend == "postgresql":
                # Stations starting together on an empty plant database would race in CREATE TABLE (catalog
                # IntegrityError); a transaction-scoped advisory lock makes them take turns.
                conn.execute(text("SELECT pg_advisory_xact_lock(7265746)"))
            metadata.create_all(conn)
            if "extra" not in {c["name"] for c in inspect(conn).get_columns("pieces")}:
                conn.execute(text("ALTER TABLE pieces ADD COLUMN extra JSON"))

    def open_coil(self, coil_id: str, info: dict) -> set[int]:
        """Register the coil (or keep the stored one) and return the frames already committed."""
        self.create_coil(coil_id, info)
        return self.frames_done(coil_id)

    def create_coil(self, coil_id: str, info: dict) -> bool:
        """Register the coil: True if this call created it, False if it was there with the same geometry."""
        check_coil_id(coil_id)
        if not isinstance(info, dict):
            raise SteelscanError(f"coil info must be a dict, got {type(info).__name__}")
        info = _json(info, "coil info")
        row = {"coil_id": coil_id, "created_at": datetime.now(UTC), "status": "open", "info": info, "grade": None}
        try:  # insert first: of stations opening the same coil at once, exactly one creates it
            with self.engine.begin() as conn:
                conn.execute(insert(coils_table), row)
            return True
        except IntegrityError:
            stored = self._coil_row(coil_id)
            if stored is None:  # not a duplicate key: something else is wrong
                raise
            if stored.info.get("geometry") != info.get("geometry"):
                raise CoilConflict(
                    f"coil {coil_id!r} was started with geometry {stored.info.get('geometry')}, "
                    f"got {info.get('geometry')}; resume it with the same geometry or use a new coil id"
                ) from None
            return False

    def add_frame(self, coil_id: str, frame: int, pieces: list[Piece], info: dict | None = None) -> bool:
        """Commit a frame and its pieces in one transaction; False (nothing written) if it was already there."""
        check_coil_id(coil_id)
        if isinstance(frame, bool) or not isinstance(frame, numbers.Integral) or frame < 0:
            raise SteelscanError(f"frame must be an int >= 0, got {frame!r}")
        frame = int(frame)  # numpy ints are fine, the driver wants a Python int
        rows = []
        for p in pieces:
            if not isinstance(p, Piece) or p.frame != frame:
                raise SteelscanError(f"pieces of frame {frame} must be Pieces with frame={frame}, got {p!r}")
            x1, y1, x2, y2 = (int(v) for v in p.bbox)
            rows.append({"coil_id": coil_id, "frame": frame, "class_name": p.class_name,
                         "confidence": float(p.confidence), "x1": x1, "y1": y1, "x2": x2, "y2": y2,
                         "area_px": int(p.area_px), "extra": p.extra()})
        info = None if info is None else _json(info, "frame info")
        frame_row = {"coil_id": coil_id, "frame": frame, "n_pieces": len(rows), "info": info,
                     "created_at": datetime.now(UTC)}
        try:
            with self.engine.begin() as conn:
                # PostgreSQL: a share lock on the coil row first: a close (which locks it for update) waits for
                # this commit, and a frame arriving after the close sees it
                if self._pg:
                    self._check_open(conn, coil_id, lock=True)
                # The frame row goes first: its primary key is the idempotence guard (no read-then-write race);
                # on SQLite it also takes the write lock, so the status read below is the latest
                conn.execute(insert(frames_table), frame_row)
                if not self._pg:
                    self._check_open(conn, coil_id, lock=False)
                if rows:  # an empty executemany would insert one all-default row
                    conn.execute(insert(pieces_table), rows)
        except IntegrityError:
            # Tell the expected violations apart by reading, not by parsing dialect error text.
            coil = self._coil_row(coil_id)
            if coil is None:
                raise SteelscanError(f"unknown coil {coil_id!r}: open_coil it before adding frames") from None
            if coil.status != "open":
                raise CoilClosed(f"coil {coil_id!r} is closed: it takes no more frames") from None
            if frame in self.frames_done(coil_id):
                return False
            raise
        return True

    def _check_open(self, conn, coil_id: str, lock: bool) -> None:
        q = select(coils_table.c.status).where(coils_table.c.coil_id == coil_id)
        status = conn.scalar(q.with_for_update(read=True) if lock else q)
        if status is None:
            raise SteelscanError(f"unknown coil {coil_id!r}: open_coil it before adding frames")
        if status != "open":
            raise CoilClosed(f"coil {coil_id!r} is closed: it takes no more frames")

    def frame_info(self, coil_id: str, frame: int) -> dict | None:
        """The info stored with a committed frame, or None if the frame is not committed."""
        check_coil_id(coil_id)
        f = frames_table
        with self.engine.connect() as conn:
            row = conn.execute(select(f.c.info).where(f.c.coil_id == coil_id, f.c.frame == int(frame))).first()
        return None if row is None else (row.info or {})

    def frames_done(self, coil_id: str) -> set[int]:
        check_coil_id(coil_id)
        with self.engine.connect() as conn:
            return set(conn.scalars(select(frames_table.c.frame).where(frames_table.c.coil_id == coil_id)))

    def pieces(self, coil_id: str, frame: int | None = None) -> list[Piece]:
        """The coil's pieces (or one frame's), by frame, then in the order they were added."""
        check_coil_id(coil_id)
        with self.engine.connect() as conn:
            return self._pieces(conn, coil_id, frame)

    @staticmethod
    def _pieces(conn, coil_id: str, frame: int | None = None) -> list[Piece]:
        t = pieces_table
        q = select(t).where(t.c.coil_id == coil_id).order_by(t.c.frame, t.c.id)
        if frame is not None:
            q = q.where(t.c.frame == int(frame))
        return [Piece(frame=r.frame, class_name=r.class_name, confidence=r.confidence,
                      bbox=(r.x1, r.y1, r.x2, r.y2), area_px=r.area_px,
                      **{k: v for k, v in (r.extra or {}).items() if k in EXTRA_FIELDS})
                for r in conn.execute(q)]

    def _summary_query(self):
        c, f = coils_table, frames_table
        n_frames = select(func.count()).where(f.c.coil_id == c.c.coil_id).scalar_subquery()
        return select(c, n_frames.label("n_frames"))

    @staticmethod
    def _as_dict(r) -> dict:
        return {"coil_id": r.coil_id, "created_at": _iso(r.created_at), "status": r.status,
                "n_frames": int(r.n_frames), "grade": r.grade, "info": r.info}

    def coils(self, limit: int = 100, offset: int = 0) -> list[dict]:
        """Coils, newest first (ties by coil id, descending)."""
        for name, v in (("limit", limit), ("offset", offset)):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= MAX_ROWS:
                raise SteelscanError(f"{name} must be an int 0..{MAX_ROWS}, got {v!r}")
        c = coils_table
        q = self._summary_query().order_by(c.c.created_at.desc(), c.c.coil_id.desc()).limit(limit).offset(offset)
        with self.engine.connect() as conn:
            return [self._as_dict(r) for r in conn.execute(q)]

    def coil(self, coil_id: str) -> dict:
        check_coil_id(coil_id)
        with self.engine.connect() as conn:
            r = conn.execute(self._summary_query().where(coils_table.c.coil_id == coil_id)).first()
        if r is None:
            raise SteelscanError(f"unknown coil {coil_id!r}")
        return self._as_dict(r)

    def close_coil(self, coil_id: str, grade: dict | Callable[[set[int], list[Piece]], dict]) -> dict:
        """Close the coil with its grade; returns the grade stored.

        `grade` is the grade, or a function of (committed frames, their pieces) -> grade that runs while the
        coil row is locked: no frame commits between what it reads and the close. With a function, closing a
        closed coil returns the stored grade; a function that raises leaves the coil open. A dict re-grades."""
        check_coil_id(coil_id)
        if not (isinstance(grade, dict) or callable(grade)):
            raise SteelscanError(f"grade must be a dict or a function, got {type(grade).__name__}")
        c = coils_table
        with self.engine.begin() as conn:
            # The row lock first (SQLite: the database's write lock): frames being committed finish before it,
            # later ones wait for this commit and then find the coil closed.
            if conn.execute(update(c).where(c.c.coil_id == coil_id).values(status=c.c.status)).rowcount == 0:
                raise SteelscanError(f"unknown coil {coil_id!r}")
            if callable(grade):
                row = conn.execute(select(c.c.status, c.c.grade).where(c.c.coil_id == coil_id)).one()
                if row.status == "closed":
                    return row.grade
                done = set(conn.scalars(select(frames_table.c.frame).where(frames_table.c.coil_id == coil_id)))
                grade = grade(done, self._pieces(conn, coil_id))
                if not isinstance(grade, dict):
                    raise SteelscanError(f"the grade function must return a dict, got {type(grade).__name__}")
            grade = _json(grade, "grade")
            conn.execute(update(c).where(c.c.coil_id == coil_id).values(status="closed", grade=grade))
        return grade

    def close(self) -> None:
        self.engine.dispose()

    def _coil_row(self, coil_id: str):
        with self.engine.connect() as conn:
            return conn.execute(select(coils_table).where(coils_table.c.coil_id == coil_id)).first()
