"""A synthetic coil: ordered area-scan frames of one moving strip surface, with its ground truth.

On-disk format (what the inspection station reads):

- OUT/frames/000000.png, 000001.png, ...: 8-bit grey PNG frames, `frame_width` px across the strip (x) by
  `frame_height` px along it (y). Frame k covers coil rows [k * step, k * step + frame_height), step =
  frame_height - frame_overlap: consecutive frames share `frame_overlap` rows, pixel for pixel. The strip
  moves so that coil row 0 (the head end) is the top of frame 0; both strip edges are in view with dark
  background beyond them, at fixed columns `strip_edges_px` = [left, right) (no lateral wander).
- OUT/manifest.yaml: coil id, frame geometry, mm per pixel across and along, strip width, surface side.
- OUT/train.csv + OUT/train_images -> frames: the same frames in Kaggle's Severstal layout (ImageId, ClassId,
  EncodedPixels; RLE column-major on the frame's H x W), so a coil is also a segmentation training folder.
- OUT/yolo/: the same frames as a YOLO detection folder (data.yaml naming the classes, labels/*.txt with each
  defect's box in each frame it appears in; images/ links to ../frames), so a coil also trains a detector.
- OUT/defects_truth.json: every defect with its Severstal ClassId ("class"), its class name ("class_name": what
  a model trained on coils calls it; top-level "class_names" lists them by ClassId - 1), kind, the frames it
  appears in and its box there (xyxy, 0-based, x2/y2 exclusive), its box in coil pixels, and its centre along
  the coil in metres (from the head end) and across the strip in mm (from the left strip edge, image x =
  left). Defects can straddle two frames. One periodic group repeats a roll mark every roll circumference
  (pi x roll diameter) at a fixed across position; `periodic` lists the groups with their exact pitch.

Determinism: the whole coil is a function of (seed, options); frames are rendered independently (in
parallel) and agree exactly on their shared rows.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path

import cv2
import numpy as np
import yaml

from steelscan.data.rle import rle_encode
from steelscan.data.synthetic.defects import SEVERSTAL_DRAWERS, draw_roll_mark
from steelscan.data.synthetic.texture import StripTexture, finish
from steelscan.data.synthetic.writers import (
    Progress,
    SynthSummary,
    check_args,
    image_rng,
    parallel_map,
    prepare_out,
    write_bytes,
)
from steelscan.core.errors import SteelscanError

# Grain does not compress: Huffman-only coding after the "up" filter is 2.5x faster than zlib level 1 and
# a little smaller.
PNG_FAST = [cv2.IMWRITE_PNG_COMPRESSION, 1, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_HUFFMAN_ONLY,
            cv2.IMWRITE_PNG_FILTER, cv2.IMWRITE_PNG_FILTER_UP]
KIND_NAMES = {1: "pits", 2: "line", 3: "scratch", 4: "patch"}
# Class names by Severstal ClassId: what a model trained on coils calls them (roll marks are ClassId 1 dents).
CLASS_NAMES = ("pits", "line", "scratch", "patch")
KIND_WEIGHTS = {1: 0.15, 2: 0.05, 3: 0.6, 4: 0.2}  # roughly Severstal's class mix


@dataclass(frozen=True)
class CoilSpec:
    """Geometry of a synthetic coil (all options of `write_coil` that change pixels)."""

    seed: int = 0
    n_frames: int = 100
    frame_width: int = 1024
    frame_height: int = 512
    frame_overlap: int = 32
    mm_per_px_across: float = 1.5
    mm_per_px_along: float = 1.0
    strip_width_mm: float = 1250.0
    roll_diameter_m: float = 0.6
    defects_per_metre: float = 0.25

    @property
    def step(self) -> int:
        return self.frame_height - self.frame_overlap

    @property
    def length_px(self) -> int:
        return (self.n_frames - 1) * self.step + self.frame_height

    def validate(self) -> None:
        check_args(self.n_frames, self.seed, "frames")
        if not 64 <= self.frame_width <= 8192 or not 64 <= self.frame_height <= 8192:
            raise SteelscanError(f"frames must be 64..8192 px each way, got {self.frame_width}x{self.frame_height}")
        if not 0 <= self.frame_overlap < self.frame_height // 2:
            raise SteelscanError(
                f"frame overlap must be 0..{self.frame_height // 2 - 1} px, got {self.frame_overlap}")
        strip_px = self.strip_width_mm / self.mm_per_px_across
        if not (self.mm_per_px_across > 0 and self.mm_per_px_along > 0 and 64 <= strip_px <= self.frame_width - 8):
            raise SteelscanError(
                f"strip {self.strip_width_mm} mm at {self.mm_per_px_across} mm/px is {strip_px:.0f} px; it must "
                f"fit in the {self.frame_width} px frame with a margin (64..{self.frame_width - 8} px)")
        if not self.roll_diameter_m > 0 or not self.defects_per_metre >= 0:
            raise SteelscanError("roll_diameter_m must be > 0 and defects_per_metre >= 0")


@dataclass(frozen=True)
class Stamp:
    """One defect on the coil: box (coil px, x2/y2 exclusive) and the generator key that draws it."""

    cls: int
    kind: str
    x0: int
    y0: int
    w: int
    h: int
    key: tuple[int, ...]
    group: str | None = None


def _drawer(stamp: Stamp):
    return draw_roll_mark if stamp.kind == "roll_mark" else SEVERSTAL_DRAWERS[stamp.cls]


@lru_cache(maxsize=4)
def coil_plan(spec: CoilSpec) -> tuple[StripTexture, tuple[int, int], tuple[Stamp, ...], float]:
    """(texture, strip edges px, defect stamps, roll-mark pitch px): the coil's layout, drawn from the seed."""
    rng = image_rng(spec.seed, "coil", 0)
    W, L = spec.frame_width, spec.length_px
    strip_px = int(round(spec.strip_width_mm / spec.mm_per_px_across))
    slack = W - strip_px
    left = int(slack // 2 + rng.integers(-(slack // 4), slack // 4 + 1))
    edges = (left, left + strip_px)
    texture = StripTexture(W, rng, strip_left=edges[0], strip_right=edges[1])
    stamps: list[Stamp] = []
    taken: list[tuple[int, int, int, int]] = []

    def free(x0: int, y0: int, w: int, h: int) -> bool:
        return all(x0 + w + 8 <= a or c + 8 <= x0 or y0 + h + 8 <= b or d + 8 <= y0 for a, b, c, d in taken)

    def add(stamp: Stamp) -> None:
        stamps.append(stamp)
        taken.append((stamp.x0, stamp.y0, stamp.x0 + stamp.w, stamp.y0 + stamp.h))

    # Periodic roll mark: one imprint per roll turn, same shape (same key), same across position.
    pitch = math.pi * spec.roll_diameter_m * 1000.0 / spec.mm_per_px_along
    mh, mw = int(rng.integers(14, 30)), int(rng.integers(12, 26))
    mx = int(rng.integers(edges[0] + 10, edges[1] - mw - 10))
    phase = rng.uniform(0, min(pitch, max(1.0, L - mh)))
    y = phase
    while y + mh <= L:
        add(Stamp(1, "roll_mark", mx, int(round(y)), mw, mh, (2, 0), "roll_mark_0"))
        y += pitch
    # One defect that surely straddles two frames: it spans a whole overlap band.
    if spec.n_frames >= 2:
        k = int(rng.integers(0, spec.n_frames - 1))
        h = spec.frame_overlap + int(rng.integers(60, 200))
        y0 = (k + 1) * spec.step + spec.frame_overlap // 2 - h // 2
        for _ in range(50):
            w = int(rng.integers(20, 120))
            x0 = int(rng.integers(edges[0] + 4, edges[1] - w - 4))
            if free(x0, y0, w, h):
                add(Stamp(3, "scratch", x0, y0, w, h, (1, 0)))
                break
    # Random defects, Poisson along the coil.
    n = int(rng.poisson(spec.defects_per_metre * L * spec.mm_per_px_along / 1000.0))
    classes = list(KIND_WEIGHTS)
    p = np.array([KIND_WEIGHTS[c] for c in classes])
    for i in range(n):
        cls = classes[int(rng.choice(len(classes), p=p / p.sum()))]
        h, w = _coil_size(cls, rng)
        w = min(w, strip_px - 8)
        for _ in range(30):
            x0 = int(rng.integers(edges[0] + 4, edges[1] - w - 4 + 1))
            y0 = int(rng.integers(0, max(1, L - h)))
            if y0 + h <= L and free(x0, y0, w, h):
                add(Stamp(cls, KIND_NAMES[cls], x0, y0, w, h, (1, i + 1)))
                break
    stamps.sort(key=lambda s: (s.y0, s.x0))
    return texture, edges, tuple(stamps), pitch


def _coil_size(cls: int, rng: np.random.Generator) -> tuple[int, int]:
    """(length along, width across) in px of a random coil defect."""
    if cls == 1:
        return int(rng.uniform(25, 110)), int(rng.uniform(20, 80))
    if cls == 2:
        return int(rng.uniform(150, 900)), int(rng.uniform(10, 22))
    if cls == 3:
        return int(rng.uniform(80, 1000)), int(np.clip(rng.lognormal(np.log(40), 0.8), 10, 300))
    return int(rng.uniform(80, 300)), int(np.clip(rng.lognormal(np.log(150), 0.5), 50, 450))


def _stamp_rng(spec: CoilSpec, stamp: Stamp) -> np.random.Generator:
    return image_rng(spec.seed, "coil", *stamp.key)


@lru_cache(maxsize=4)
def coil_masks(spec: CoilSpec) -> tuple[np.ndarray, ...]:
    """Each stamp's mask in its box. Masks depend only on the generator, not the pixels under them."""
    _, _, stamps, _ = coil_plan(spec)
    return tuple(_drawer(s)(np.zeros((s.h, s.w), np.float32), _stamp_rng(spec, s)) for s in stamps)


def frame_masks(spec: CoilSpec, k: int) -> np.ndarray:
    """Frame k's truth masks, uint8 [4, frame_height, frame_width] (Severstal ClassIds 1-4)."""
    _, _, stamps, _ = coil_plan(spec)
    fy0 = k * spec.step
    fy1 = fy0 + spec.frame_height
    out = np.zeros((4, spec.frame_height, spec.frame_width), np.uint8)
    for s, m in zip(stamps, coil_masks(spec)):
        a, b = max(s.y0, fy0), min(s.y0 + s.h, fy1)
        if a < b:
            out[s.cls - 1, a - fy0 : b - fy0, s.x0 : s.x0 + s.w] |= (m[a - s.y0 : b - s.y0] > 0).astype(np.uint8)
    return out


def kaggle_rows(spec: CoilSpec) -> list[str]:
    """train.csv rows (new Kaggle format) of every frame's defects; frames without any are listed by ImageId
    only in the folder, as in Kaggle's own train.csv."""
    rows = ["ImageId,ClassId,EncodedPixels"]
    for k in range(spec.n_frames):
        for c, m in enumerate(frame_masks(spec, k), start=1):
            if m.any():
                rows.append(f"{k:06d}.png,{c},{rle_encode(m)}")
    return rows


def render_frame(spec: CoilSpec, k: int) -> np.ndarray:
    """Frame k (uint8 [frame_height, frame_width])."""
    texture, _, stamps, _ = coil_plan(spec)
    fy0 = k * spec.step
    fy1 = fy0 + spec.frame_height
    img = texture.render(fy0, fy1)
    for s in stamps:
        if s.y0 >= fy1 or s.y0 + s.h <= fy0:
            continue
        if fy0 <= s.y0 and s.y0 + s.h <= fy1:
            canvas = img[s.y0 - fy0 : s.y0 - fy0 + s.h, s.x0 : s.x0 + s.w]
            _drawer(s)(canvas, _stamp_rng(spec, s))
            continue
        # Crosses the frame border: draw on the full box from the texture so both frames agree.
        canvas = texture.render(s.y0, s.y0 + s.h)[:, s.x0 : s.x0 + s.w]
        _drawer(s)(canvas, _stamp_rng(spec, s))
        a, b = max(s.y0, fy0), min(s.y0 + s.h, fy1)
        img[a - fy0 : b - fy0, s.x0 : s.x0 + s.w] = canvas[a - s.y0 : b - s.y0]
    return finish(img)


def coil_truth(spec: CoilSpec) -> dict:
    """Ground truth: defects (tight boxes of their masks) per frame and on the coil, periodic groups."""
    _, edges, stamps, pitch = coil_plan(spec)
    masks = coil_masks(spec)
    defects, groups = [], {}
    for i, (s, m) in enumerate(zip(stamps, masks)):
        ys, xs = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
        x0, y0 = s.x0 + int(xs[0]), s.y0 + int(ys[0])
        x1, y1 = s.x0 + int(xs[-1]) + 1, s.y0 + int(ys[-1]) + 1
        frames = []
        first = max(0, -(-(y0 - spec.frame_height + 1) // spec.step))  # ceil division: first frame reaching y0
        for k in range(first, min(spec.n_frames, (y1 - 1) // spec.step + 1)):
            fy0 = k * spec.step
            a, b = max(y0, fy0), min(y1, fy0 + spec.frame_height)
            if a < b:
                frames.append({"frame": k, "bbox": [x0, a - fy0, x1, b - fy0]})
        d = {
            "id": i, "class": s.cls, "class_name": CLASS_NAMES[s.cls - 1], "kind": s.kind, "periodic_group": s.group,
            "frame": frames[0]["frame"], "bbox": frames[0]["bbox"], "frames": frames,
            "coil_bbox_px": [x0, y0, x1, y1],
            "along_m": round((y0 + y1) / 2 * spec.mm_per_px_along / 1000.0, 6),
            "across_mm": round(((x0 + x1) / 2 - edges[0]) * spec.mm_per_px_across, 3),
            "length_mm": round((y1 - y0) * spec.mm_per_px_along, 3),
            "width_mm": round((x1 - x0) * spec.mm_per_px_across, 3),
            "area_px": int(m.sum()),
        }
        defects.append(d)
        if s.group:
            groups.setdefault(s.group, []).append(d)
    periodic = [{
        "group": g, "class": ds[0]["class"], "class_name": ds[0]["class_name"], "kind": ds[0]["kind"],
        "count": len(ds),
        "pitch_m": pitch * spec.mm_per_px_along / 1000.0, "pitch_px": pitch,
        "roll_diameter_m": spec.roll_diameter_m, "across_mm": ds[0]["across_mm"],
        "first_along_m": ds[0]["along_m"], "defect_ids": [d["id"] for d in ds],
    } for g, ds in groups.items()]
    return {"coil_id": coil_id(spec), "length_m": spec.length_px * spec.mm_per_px_along / 1000.0,
            "class_names": list(CLASS_NAMES),
            "units": {"bbox": "px xyxy, 0-based, x2/y2 exclusive", "along_m": "m from the head end (coil row 0)",
                      "across_mm": "mm from the left strip edge"},
            "defects": defects, "periodic": periodic}


def dump_truth(truth: dict) -> str:
    """JSON with one defect (or periodic group) per line: readable, diffable, still plain JSON."""
    head = [f" {json.dumps(k)}: {json.dumps(v)}" for k, v in truth.items() if k not in ("defects", "periodic")]
    lists = [f" {json.dumps(k)}: [\n" + ",\n".join(f"  {json.dumps(d)}" for d in truth[k]) + "\n ]"
             for k in ("defects", "periodic")]
    return "{\n" + ",\n".join(head + lists) + "\n}\n"


MIN_BOX_PX = 4  # a defect's sliver at a frame edge (its rest is in the next frame) is not a training box


def write_yolo(out: Path, spec: CoilSpec, truth: dict) -> None:
    """OUT/yolo: data.yaml + labels/<frame>.txt (normalised cx cy w h per defect per frame) + images -> frames."""
    root = out / "yolo"
    (root / "labels").mkdir(parents=True, exist_ok=True)
    lines: dict[int, list[str]] = {k: [] for k in range(spec.n_frames)}
    W, H = spec.frame_width, spec.frame_height
    for d in truth["defects"]:
        for f in d["frames"]:
            x0, y0, x1, y1 = f["bbox"]
            if min(x1 - x0, y1 - y0) < MIN_BOX_PX:
                continue
            lines[f["frame"]].append(f"{d['class'] - 1} {(x0 + x1) / 2 / W:.6f} {(y0 + y1) / 2 / H:.6f} "
                                     f"{(x1 - x0) / W:.6f} {(y1 - y0) / H:.6f}")
    for k, rows in lines.items():
        (root / "labels" / f"{k:06d}.txt").write_text("".join(r + "\n" for r in rows), encoding="utf-8")
    (root / "data.yaml").write_text(yaml.safe_dump({"path": ".", "train": "images", "names": list(CLASS_NAMES)},
                                                   sort_keys=False), encoding="utf-8")
    if not (root / "images").exists():
        (root / "images").symlink_to("../frames", target_is_directory=True)


def coil_id(spec: CoilSpec) -> str:
    return f"SYN{spec.seed:06d}"


def manifest(spec: CoilSpec) -> dict:
    _, edges, _, _ = coil_plan(spec)
    return {
        "coil_id": coil_id(spec), "surface_side": "top", "camera": "area-scan frames, strip edges in view",
        "n_frames": spec.n_frames, "frames": "frames/{index:06d}.png",
        "frame_width_px": spec.frame_width, "frame_height_px": spec.frame_height,
        "frame_overlap_px": spec.frame_overlap, "frame_step_px": spec.step,
        "mm_per_px_across": spec.mm_per_px_across, "mm_per_px_along": spec.mm_per_px_along,
        "strip_width_mm": spec.strip_width_mm, "strip_edges_px": list(edges),
        "coil_length_m": spec.length_px * spec.mm_per_px_along / 1000.0,
        "rolling_direction": "+y: coil row 0 (head end) is the top row of frame 0",
        "generator": {"name": "steelscan synth coil", "seed": spec.seed},
    }


def _frame_one(k: int, spec: CoilSpec, folder: Path) -> int:
    write_bytes(folder / f"{k:06d}.png", ".png", render_frame(spec, k), PNG_FAST)
    return k


def write_coil(
    out: str | Path, n_frames: int = 100, seed: int = 0, *, overwrite: bool = False, workers: int | None = None,
    progress: Progress | None = None, **options,
) -> SynthSummary:
    """Write a coil: frames/, manifest.yaml, defects_truth.json. `options` are CoilSpec fields
    (frame_width, frame_height, frame_overlap, mm_per_px_across/along, strip_width_mm, roll_diameter_m,
    defects_per_metre)."""
    try:
        spec = CoilSpec(seed=seed, n_frames=n_frames, **options)
    except TypeError as exc:
        raise SteelscanError(f"unknown coil option: {exc}") from None
    spec.validate()
    t0 = time.perf_counter()
    out = prepare_out(out, ["frames/*.png", "manifest.yaml", "defects_truth.json", "train.csv", "train_images",
                            "yolo/labels/*.txt", "yolo/data.yaml", "yolo/images"], overwrite)
    folder = out / "frames"
    folder.mkdir(exist_ok=True)
    for _ in parallel_map(partial(_frame_one, spec=spec, folder=folder), range(n_frames), n_frames, workers, progress):
        pass
    truth = coil_truth(spec)
    (out / "defects_truth.json").write_text(dump_truth(truth), encoding="utf-8")
    (out / "manifest.yaml").write_text(yaml.safe_dump(manifest(spec), sort_keys=False), encoding="utf-8")
    (out / "train.csv").write_text("\n".join(kaggle_rows(spec)) + "\n", encoding="utf-8")
    if not (out / "train_images").exists():
        (out / "train_images").symlink_to("frames", target_is_directory=True)
    write_yolo(out, spec, truth)
    per_class: dict[str, int] = {}
    for d in truth["defects"]:
        per_class[d["kind"]] = per_class.get(d["kind"], 0) + 1
    clean = sum(1 for k in range(n_frames) if not any(f["frame"] == k for d in truth["defects"] for f in d["frames"]))
    return SynthSummary("coil", out, n_frames, per_class, clean, time.perf_counter() - t0,
                        {"length m": truth["length_m"], "roll mark pitch m": truth["periodic"][0]["pitch_m"]
                         if truth["periodic"] else 0.0})
