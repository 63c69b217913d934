"""Inspecting a coil: frames in order -> the chain (tiles -> gate -> segmenter or detector -> classifier) ->
pieces -> records -> defects -> grade.

`inspect_frames` is the loop (a `steelscan.inspection.chain` chain does the pixels); it takes
any iterable of (index, frame), so a folder (`coil_frames`) and a
generator (a camera, or `steelscan.data.synthetic.coil.render_frame`) are the same to it. Each frame is
committed to the store with its pieces in one transaction before the next is read: a process killed
mid-coil keeps every committed frame, and a re-run skips them (no duplicates). Defects are merged from all
committed pieces at the end, so a resumed coil gives the same defect list as an uninterrupted one.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from steelscan.config import read_yaml_mapping
from steelscan.core.errors import ImageError, SteelscanError
from steelscan.core.images import IMAGE_SUFFIXES, read_image
from steelscan.grading import Rules, grade_coil, load_rules
from steelscan.inspection.geometry import StripGeometry, geometry_from_manifest
from steelscan.inspection.chain import FrameChain
from steelscan.inspection.merge import merge_pieces
from steelscan.inspection.periodic import find_periodic
from steelscan.store import Store

log = logging.getLogger(__name__)


@dataclass
class Coil:
    coil_id: str
    geometry: StripGeometry
    frame_shape: tuple[int, int]  # (H, W)
    n_frames: int
    manifest: dict = field(default_factory=dict)

    @property
    def length_m(self) -> float:
        h = self.frame_shape[0]
        return ((self.n_frames - 1) * self.geometry.step(h) + h) * self.geometry.mm_per_px_along / 1000.0

    def as_dict(self) -> dict:
        return {"coil_id": self.coil_id, "length_m": round(self.length_m, 4),
                "strip_width_mm": self.geometry.strip_width_mm, "surface_side": self.geometry.surface_side,
                "n_frames": self.n_frames, "frame_height_px": self.frame_shape[0], "frame_width_px": self.frame_shape[1],
                **self.geometry.as_dict()}


def frame_paths(coil_dir: Path) -> list[Path]:
    """Frames of a coil folder (COIL/frames/ or COIL/ itself) in coil order: frame k is the k-th.

    Names ending in a number (`000000.png`, `cam1_0001.jpg`, from any start) are ordered by it and must run
    without gaps; other names are taken in sorted order. Anything but a regular file (a named pipe, a device, a
    folder named like a frame) is skipped with a warning: reading a pipe would wait for a writer forever."""
    folder = coil_dir / "frames" if (coil_dir / "frames").is_dir() else coil_dir
    if not folder.is_dir():
        raise SteelscanError(f"coil folder not found: {coil_dir}")
    named = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
    files = [p for p in named if p.is_file()]  # stat only, never opened; follows links to regular files
    if len(files) < len(named):
        skipped = [p.name for p in named if not p.is_file()]
        log.warning("%s: skipped %d entr%s that %s not a regular file: %s", folder, len(skipped),
                    "y" if len(skipped) == 1 else "ies", "is" if len(skipped) == 1 else "are", ", ".join(skipped[:5]))
    if not files:
        raise SteelscanError(f"{folder}: expected frames ({', '.join(IMAGE_SUFFIXES)}), found none")
    numbers = [re.search(r"(\d+)$", p.stem) for p in files]
    if not all(numbers):
        return files
    found: dict[int, Path] = {}
    for p, m in zip(files, numbers):
        n = int(m.group(1))
        if n in found:
            raise SteelscanError(f"{folder}: frames {found[n].name} and {p.name} both have number {n}; expected one "
                                 "frame per number (one camera's frames per folder)")
        found[n] = p
    idx = sorted(found)
    n_missing = idx[-1] - idx[0] + 1 - len(idx)  # from the gaps: a name like cam_9999999.png must not cost a set
    if n_missing:
        first = next(a + 1 for a, b in zip(idx, idx[1:]) if b > a + 1)
        raise SteelscanError(f"{folder}: frames missing from the sequence: {n_missing} of {idx[0]}..{idx[-1]}, the "
                             f"first is number {first} (frames are numbered in order from the coil head)")
    return [found[i] for i in idx]


def read_frame(path: Path, shape: tuple[int, int] | None = None) -> np.ndarray:
    """An 8-bit grey frame (`steelscan.core.images.read_image`); truncated, empty, 16-bit, oversized, tiny (a
    side under MIN_MODEL_SIDE: a 1x1 frame is a mistake, not a strip) or wrong-size frames are refused with the
    reason (ImageError)."""
    from steelscan.core.images import MIN_MODEL_SIDE

    img = read_image(path, channels=1, min_side=MIN_MODEL_SIDE)
    if shape is not None and img.shape != tuple(shape):
        raise ImageError(f"frame {path} is {img.shape[1]}x{img.shape[0]} px; the coil's frames are "
                         f"{shape[1]}x{shape[0]}")
    return img


def open_coil(coil_dir: Path, manifest_path: Path | None = None, overrides: dict | None = None,
              coil_id: str | None = None) -> tuple[Coil, list[Path]]:
    """A coil folder's frames and geometry (manifest.yaml beside the frames unless given; options win)."""
    paths = frame_paths(coil_dir)
    manifest_path = manifest_path or (coil_dir / "manifest.yaml")
    # the default manifest may be absent (geometry from options); a named one must exist
    default = manifest_path == coil_dir / "manifest.yaml"
    manifest = {} if default and not manifest_path.is_file() else read_yaml_mapping(manifest_path, "manifest")
    geometry = geometry_from_manifest(manifest, overrides)
    first = read_frame(paths[0])
    geometry.validate(first.shape[1], first.shape[0])
    cid = coil_id or str(manifest.get("coil_id") or coil_dir.resolve().name)
    return Coil(cid, geometry, first.shape, len(paths), manifest), paths


def folder_frames(paths: list[Path], shape: tuple[int, int]) -> Callable[[set[int]], Iterator[tuple[int, np.ndarray]]]:
    """The frames of a folder as (index, image), skipping committed ones unread."""
    def frames(skip: set[int]) -> Iterator[tuple[int, np.ndarray]]:
        for k, p in enumerate(paths):
            if k not in skip:
                yield k, read_frame(p, shape)
    return frames


def inspect_frames(coil: Coil, frames: Callable[[set[int]], Iterable[tuple[int, np.ndarray]]],
                   chain: FrameChain, store: Store,
                   on_frame: Callable[[int, dict], None] | None = None) -> dict:
    """Inspect and commit every frame not yet committed; returns counts of this run. The chain's options
    say whether tiles are gated and how many tiles share a model call."""
    h, w = coil.frame_shape
    done = store.open_coil(coil.coil_id, {"geometry": coil.as_dict(), "model": chain.meta.model,
                                          "chain": chain.describe()})
    if done:
        log.info("coil %s: resuming, %d frame(s) already committed", coil.coil_id, len(done))
    stats = {"frames": 0, "resumed": len(done), "tiles": 0, "tiles_decoded": 0, "seconds": 0.0}
    group: list[tuple[int, np.ndarray, tuple[int, int]]] = []
    per_call = chain.frames_per_call((h, w))

    def flush() -> None:
        # frames of one call are inferred together, then committed one by one, in order
        for (k, _, _), (pieces, info) in zip(group, chain.pieces(group)):
            store.add_frame(coil.coil_id, k, pieces, info)
            stats["frames"] += 1
            stats["tiles"] += info["tiles"]
            stats["tiles_decoded"] += info["tiles_decoded"]
            stats["seconds"] += info["ms"] / 1000
            if on_frame is not None:
                on_frame(k, {"pieces": len(pieces), "ms": info["ms"], "committed": len(done) + stats["frames"]})
        group.clear()

    for k, frame in frames(done):
        if k >= coil.n_frames:
            raise SteelscanError(f"frame {k} is past the coil's {coil.n_frames} frames")
        group.append((k, frame, coil.geometry.owned_rows(k, h, coil.n_frames)))
        if len(group) >= per_call:
            flush()
    if group:
        flush()
    return stats


def finish_coil(coil: Coil, store: Store, rules: Rules | None = None, within_frame: bool = True) -> dict:
    """Merge the committed pieces into defects, find periodic ones, grade; the coil's result document.
    `within_frame`: the chain's `merges_within_frame`."""
    missing = sorted(set(range(coil.n_frames)) - store.frames_done(coil.coil_id))
    if missing:
        raise SteelscanError(f"coil {coil.coil_id}: {len(missing)} frame(s) not inspected yet, e.g. {missing[0]}")
    h, w = coil.frame_shape
    defects = merge_pieces(store.pieces(coil.coil_id), coil.geometry, w, h, within_frame=within_frame)
    items = [d.as_dict() for d in defects]
    periodic = [f.as_dict() for f in find_periodic(items)]
    grade = grade_coil(items, coil.length_m, coil.geometry.strip_width_mm, rules or load_rules()).as_dict()
    store.close_coil(coil.coil_id, grade)
    return {"coil": coil.as_dict(), "defects": items, "periodic": periodic, "grade": grade}


def write_results(doc: dict, out: Path) -> Path:
    """defects.json (what `steelscan grade` reads), written atomically."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "defects.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(path)
    return path
