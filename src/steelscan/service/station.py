"""The station behind the service: coils opened over the API, frames inspected and recorded one by one.

It reuses the inspection path unchanged (the chain: tiles -> gate -> segmenter or detector -> classifier ->
pieces in owned rows; then records -> merged defects -> periodic -> grade -> report) and adds what a service
needs: coils whose length is not known in advance (a coil is as long as its highest committed frame), frames saved beside the records for
defect crops and the report, and coil ids checked before they touch the file system.

Files (under `data_dir`, paths built here from validated coil ids only):
  frames/<coil_id>/<frame:06d>.png   the frames as received (crops, report gallery): written to a temp name
                                     (named in the frame's stored info) and renamed only when the frame's commit
                                     wins, so two clients racing on a frame never leave the loser's image; a
                                     kill between the commit and the rename is healed on the next read
  reports/<coil_id>/                 the coil report, rewritten when the coil has changed

A closed coil takes no frame: the store checks the status in the frame's own transaction and grades the coil
under its lock (`Store.close_coil` with a function). Merged defects are cached per coil and committed-frame
count (frames are never removed, so the count is a version), and missing frames are counted from the gaps, not
listed: a coil polled every second by the dashboard is merged once per new frame.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import uuid
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from steelscan.core.errors import ImageError, SteelscanError
from steelscan.core.images import read_image
from steelscan.grading import Rules, check_rules_classes, default_rules_for, grade_coil, load_rules
from steelscan.inspection.geometry import geometry_from_manifest
from steelscan.inspection.chain import FrameChain, load_chain, provenance
from steelscan.inspection.merge import merge_pieces
from steelscan.inspection.periodic import find_periodic
from steelscan.inspection.runner import Coil
from steelscan.service.batcher import Batcher
from steelscan.store import Store, check_coil_id

log = logging.getLogger(__name__)
MAX_FRAME = 9_999_999  # the highest frame index (7 digits of the frame file names)
_CACHED_COILS = 32
_TOKEN = re.compile(r"[0-9a-f]{32}")


class NotFound(SteelscanError):
    """An unknown coil or defect (HTTP 404)."""


class Conflict(SteelscanError):
    """The request contradicts the stored state: another geometry, a closed coil, missing frames (HTTP 409)."""


@dataclass(frozen=True)
class FrameJob:
    coil: Coil
    frame: int
    image: np.ndarray


@dataclass
class FrameResult:
    coil_id: str
    frame: int
    committed: bool  # False: this frame was already in the store (a retry); nothing was written
    pieces: list[dict]
    ms: float
    tiles: int
    tiles_decoded: int
    batch_frames: int


@dataclass
class Station:
    model: str | Path  # any station model: a segmenter or a detector (ONNX artifact, run folder, .pt, built-in)
    db: str
    data_dir: Path
    rules: Rules | None = None  # default: the shipped rules for the model's classes
    threads: int = 2
    max_batch_frames: int = 4
    gate: bool = True  # a segmenter's own tile gate
    tile_batch: int = 8
    classifier: str | None = None  # a detector's defect classifier
    gate_model: str | None = None  # a detector's defect/no-defect gate
    tile_overlap: int | None = None
    frame_shape: tuple[int, int] = (256, 1600)  # the frames a segmenter checkpoint is exported for
    max_frame_gap: int = 1000  # how far past the highest committed frame a new frame may be

    def __post_init__(self) -> None:
        self.chain: FrameChain = load_chain(str(self.model), frame_shape=self.frame_shape, out=str(self.data_dir),
                                            classifier=self.classifier, gate=self.gate_model, tile_gate=self.gate,
                                            batch=self.tile_batch, tile_overlap=self.tile_overlap,
                                            threads=self.threads)
        self.class_names = list(self.chain.class_names)
        warning = self.chain.meta.baseline_warning()
        self.warnings = [warning] if warning else []
        if self.rules is None:
            self.rules = load_rules(default_rules_for(self.class_names))
        check_rules_classes(self.rules, self.class_names)
        self.store = Store(self.db)
        self.data_dir = Path(self.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.batcher = Batcher(self._inspect_batch, self.max_batch_frames)
        self._report_lock = threading.Lock()
        self._cache: OrderedDict[tuple, tuple[list[dict], list[dict], dict | None]] = OrderedDict()
        self._cache_lock = threading.Lock()

    def close(self) -> None:
        self.batcher.close()
        self.store.close()

    # coils -----------------------------------------------------------------------------------------------
    def open_coil(self, coil_id: str, geometry: dict, frame_shape: tuple[int, int]) -> tuple[dict, bool]:
        """Create the coil (True) or return the stored one if it has the same geometry (False); of clients
        opening one new coil at once, exactly one creates it. Another geometry: CoilConflict (409)."""
        check_coil_id(coil_id)
        g = geometry_from_manifest(geometry)
        g.validate(frame_shape[1], frame_shape[0])
        info_geometry = {**g.as_dict(), "frame_height_px": int(frame_shape[0]), "frame_width_px": int(frame_shape[1])}
        created = self.store.create_coil(coil_id, {"geometry": info_geometry, "model": self.chain.meta.model,
                                                   "chain": self.chain.describe(), "source": "service"})
        return self.store.coil(coil_id), created

    def coil(self, coil_id: str) -> Coil:
        """The stored coil as the inspection code sees it, `n_frames` = highest committed frame + 1."""
        return self._state(coil_id)[1]

    def _state(self, coil_id: str) -> tuple[dict, Coil, set[int]]:
        """(record, Coil, committed frames) from one read of each."""
        rec = self._record(coil_id)
        g = rec["info"].get("geometry") or {}
        if "frame_height_px" not in g:
            raise Conflict(f"coil {coil_id!r} was not opened by the service (no frame size stored); "
                           "inspect it with `steelscan inspect`")
        done = self.store.frames_done(coil_id)
        coil = Coil(coil_id, geometry_from_manifest(g), (int(g["frame_height_px"]), int(g["frame_width_px"])),
                    max(done) + 1 if done else 0)
        return rec, coil, done

    def _record(self, coil_id: str) -> dict:
        check_coil_id(coil_id)
        try:
            return self.store.coil(coil_id)
        except SteelscanError:
            raise NotFound(f"unknown coil {coil_id!r}: open it first with POST /v1/coils") from None

    # frames ----------------------------------------------------------------------------------------------
    def prepare_frame(self, coil_id: str, frame: int) -> Coil:
        """Checks before the upload is decoded: the coil exists and is open, the frame index is sane and not far
        past the coil's frames (a frame 9999999 once made every read of its coil list 10 million gaps)."""
        rec, coil, done = self._state(coil_id)
        if rec["status"] != "open":
            raise Conflict(f"coil {coil_id!r} is closed: it takes no more frames")
        if isinstance(frame, bool) or not isinstance(frame, int) or not 0 <= frame <= MAX_FRAME:
            raise SteelscanError(f"frame must be an integer 0..{MAX_FRAME} (its index from the coil head), "
                                 f"got {frame!r}")
        top = max(done) if done else -1
        if frame > top + self.max_frame_gap:
            raise SteelscanError(f"frame {frame} is {frame - top} frames past the highest committed frame ({top}) of "
                                 f"coil {coil_id!r}; at most {self.max_frame_gap} frames ahead are taken (frames are "
                                 "numbered in order from the coil head)")
        return coil

    def stored(self, coil_id: str, frame: int) -> FrameResult | None:
        """A retry of a committed frame is answered from the store, without inference (409 once closed)."""
        if frame not in self.store.frames_done(coil_id):
            return None
        if self._record(coil_id)["status"] != "open":
            raise Conflict(f"coil {coil_id!r} is closed: it takes no more frames")
        pieces = [p.as_dict() for p in self.store.pieces(coil_id, frame)]
        return FrameResult(coil_id, frame, False, pieces, 0.0, 0, 0, 0)

    def submit(self, job: FrameJob):
        """A Future of the FrameResult; inference and the commit happen on the batcher's thread."""
        return self.batcher.submit(job)

    def _inspect_batch(self, jobs: Sequence[FrameJob]) -> list[FrameResult | BaseException]:
        # n_frames unknown while frames stream in: every frame keeps its lower overlap half for the next
        items = [(j.frame, j.image, j.coil.geometry.owned_rows(j.frame, j.coil.frame_shape[0], None)) for j in jobs]
        results: list[FrameResult | BaseException] = []
        for job, (pieces, info) in zip(jobs, self.chain.pieces(items)):
            try:
                results.append(self._commit(job, pieces, {**info, "batch_frames": len(jobs)}))
            except BaseException as exc:  # noqa: BLE001 - one bad frame must not fail the others in its batch
                results.append(exc)
        return results

    def _commit(self, job: FrameJob, pieces: list, info: dict) -> FrameResult:
        """The frame's image under a temp name, the commit (naming it), then the rename only if the commit won."""
        cid, path = job.coil.coil_id, self._frame_path(job.coil.coil_id, job.frame)
        token = uuid.uuid4().hex
        tmp = self._temp_path(path, token)
        self._write_png(tmp, job.image, f"frame {job.frame} of coil {cid}")
        try:
            committed = self.store.add_frame(cid, job.frame, pieces, {**info, "image": token})
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        if committed:
            os.replace(tmp, path)
        else:  # a retry, or another client's commit won: its image stays
            tmp.unlink(missing_ok=True)
            pieces = self.store.pieces(cid, job.frame)
        return FrameResult(cid, job.frame, committed, [p.as_dict() for p in pieces], info["ms"], info["tiles"],
                           info["tiles_decoded"], info["batch_frames"])

    def _frame_path(self, coil_id: str, frame: int) -> Path:
        return self.data_dir / "frames" / check_coil_id(coil_id) / f"{int(frame):06d}.png"

    @staticmethod
    def _temp_path(path: Path, token: str) -> Path:
        return path.with_name(f".{path.name}.{token}.tmp")

    @staticmethod
    def _write_png(path: Path, image: np.ndarray, what: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        ok, buf = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        if not ok:
            raise SteelscanError(f"could not encode {what}")
        path.write_bytes(buf.tobytes())

    def read_frame(self, coil_id: str, frame: int) -> np.ndarray:
        path = self._frame_path(coil_id, frame)
        if not path.is_file():  # killed between a commit and its rename: the temp file named in the frame's info
            token = (self.store.frame_info(coil_id, frame) or {}).get("image")
            if isinstance(token, str) and _TOKEN.fullmatch(token) and self._temp_path(path, token).is_file():
                os.replace(self._temp_path(path, token), path)
        try:
            return read_image(path, channels=1)
        except ImageError:
            raise NotFound(f"frame {frame} of coil {coil_id!r} is not stored on this station") from None

    # results ---------------------------------------------------------------------------------------------
    def defects(self, coil_id: str) -> list[dict]:
        """The coil's defects so far, merged across frames and tiles, in strip coordinates (shared: don't mutate)."""
        _, coil, done = self._state(coil_id)
        return self._merged(coil, done)[0]

    def _merged(self, coil: Coil, done: set[int]) -> tuple[list[dict], list[dict], dict | None]:
        """(defects, periodic findings, provisional grade) of the committed frames, cached per frame count."""
        key = (coil.coil_id, len(done), coil.n_frames)
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        h, w = coil.frame_shape
        defects = [d.as_dict() for d in merge_pieces(self.store.pieces(coil.coil_id), coil.geometry, w, h,
                                                  within_frame=self.chain.merges_within_frame)]
        value = (defects, [f.as_dict() for f in find_periodic(defects)], self._grade(coil, defects))
        with self._cache_lock:
            self._cache[key] = value
            while len(self._cache) > _CACHED_COILS:
                self._cache.popitem(last=False)
        return value

    def summary(self, coil_id: str) -> dict:
        """The coil record plus counts by class, periodic findings and the grade (provisional while open)."""
        return self._summary(coil_id)[0]

    def coils(self, limit: int, offset: int) -> list[dict]:
        """Coils, newest first, each with the grade its detail shows: final once closed, else provisional (from
        the merge cache: one merge per new frame)."""
        out = []
        for rec in self.store.coils(limit, offset):
            if rec["status"] != "closed" and rec["info"].get("source") == "service":
                rec = {**rec, "grade": self.summary(rec["coil_id"])["grade"]}
            out.append({**rec, "grade_final": rec["status"] == "closed"})
        return out

    def _summary(self, coil_id: str) -> tuple[dict, list[dict]]:
        rec, coil, done = self._state(coil_id)
        defects, periodic, provisional = self._merged(coil, done)
        counts: dict[str, int] = {}
        for d in defects:
            counts[d["class"]] = counts.get(d["class"], 0) + 1
        missing, n_missing = missing_frames(done)
        doc = {**rec, "coil": coil.as_dict() if coil.n_frames else None, "n_defects": len(defects),
               "counts_by_class": counts, "periodic": periodic,
               "grade": rec["grade"] if rec["status"] == "closed" else provisional,
               "grade_final": rec["status"] == "closed", "missing_frames": missing, "n_missing_frames": n_missing}
        return doc, defects

    def _grade(self, coil: Coil, defects: list[dict]) -> dict | None:
        if not coil.n_frames:
            return None
        return grade_coil(defects, coil.length_m, coil.geometry.strip_width_mm, self.rules).as_dict()

    def close_coil(self, coil_id: str, allow_missing: bool = False) -> dict:
        """Grade the coil and close it to further frames; closing twice returns the stored grade. The grade is
        computed under the coil's lock in the store, on exactly the frames committed before the close."""
        rec, coil, _ = self._state(coil_id)
        if rec["status"] == "closed":
            return rec["grade"]

        def grade(done: set[int], pieces: list) -> dict:
            if not done:
                raise Conflict(f"coil {coil_id!r} has no frames yet: nothing to grade")
            c = Coil(coil_id, coil.geometry, coil.frame_shape, max(done) + 1)
            missing, n_missing = missing_frames(done, 1)
            if n_missing and not allow_missing:
                raise Conflict(f"coil {coil_id!r} lacks {n_missing} of frames 0..{c.n_frames - 1} (first: "
                               f"{missing[0]}); post them, or close with allow_missing=true")
            h, w = c.frame_shape
            return self._grade(c, [d.as_dict() for d in merge_pieces(pieces, c.geometry, w, h,
                                                                    within_frame=self.chain.merges_within_frame)])

        return self.store.close_coil(coil_id, grade)

    def crop(self, coil_id: str, defect_id: int) -> bytes:
        """PNG of a defect in its first frame, its box drawn in its class colour."""
        from steelscan.report import defect_crop

        found = [d for d in self.defects(coil_id) if d["id"] == defect_id]
        if not found:
            raise NotFound(f"coil {coil_id!r} has no defect {defect_id}")
        d = found[0]
        crop = defect_crop(self.read_frame(coil_id, d["frame"]), d["bbox"], d["class"], self.class_names)
        if crop is None:
            raise NotFound(f"defect {defect_id} of coil {coil_id!r} lies outside its frame")
        return cv2.imencode(".png", crop)[1].tobytes()

    def report(self, coil_id: str) -> Path:
        """The report folder of the coil, rewritten if frames or the grade changed since it was written."""
        from steelscan.report import write_report

        rec, coil, _ = self._state(coil_id)
        if not coil.n_frames:
            raise Conflict(f"coil {coil_id!r} has no frames yet: no report")
        out = self.data_dir / "reports" / check_coil_id(coil_id)
        stamp = f"{rec['n_frames']}:{rec['status']}"
        with self._report_lock:  # two readers must not write one folder at once
            marker = out / ".stamp"
            if marker.is_file() and marker.read_text() == stamp and (out / "report.html").is_file():
                return out
            doc, defects = self._summary(coil_id)
            made_by, warnings = provenance(self.chain, self.rules)  # what `steelscan inspect` reports too
            made_by = {**made_by, "model_source": made_by.get("model_source") or str(self.model),
                       "rules_version": str(self.rules.version)}
            write_report(out, {**doc["coil"], "status": doc["status"]}, defects, doc["periodic"], doc["grade"] or {},
                         lambda k: self.read_frame(coil_id, k), self.class_names, provenance=made_by,
                         warnings=warnings)
            marker.write_text(stamp)
        return out


def missing_frames(done: set[int], first: int = 100) -> tuple[list[int], int]:
    """The first `first` frames missing from 0..max(done), and how many are missing, from the gaps alone."""
    listed: list[int] = []
    prev = -1
    for k in sorted(done):
        if len(listed) < first and k > prev + 1:
            listed.extend(range(prev + 1, min(k, prev + 1 + first - len(listed))))
        prev = k
    return listed, prev + 1 - len(done)
