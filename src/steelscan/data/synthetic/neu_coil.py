"""A coil made of real images: real NEU-DET images laid out as a coil, their boxes its ground truth.

Not a real coil: each photograph is a separate sample of a separate strip, put side by side so that the
inspection station (frames -> tiles -> pieces -> merged coil defects) can be audited on real defects, and
compared with the detector run on each image alone (`steelscan evaluate-coil --baseline-model`).

Layout: the images of one split of a detection data set (default val, picked exactly as `steelscan evaluate
neu-det --split val` picks them, so the shipped `neu-det` detector never trained on any of them) in natural
name order (crazing_4, crazing_9, crazing_14, ...), dealt round-robin by class (`interleave`; order "name"
keeps name order, where runs of one class touch at every seam and the station merges them). Image i is slot i % per_frame of frame i // per_frame, at
coil px x = slot * w, y = frame * h; frames are per_frame * w across by h along and do not overlap. All images
must have one size (refused otherwise: resizing would change the defects). The last frame's empty slots are a
plain blank of the images' mean grey: copies of images would duplicate truth defects, and black would be an
edge no detector has seen. Scale: a nominal 0.5 mm/px both ways (NEU states none); the strip fills the frame.

Files: OUT/frames/000000.png ... (8-bit grey), OUT/manifest.yaml (`steelscan synth coil`'s keys, so
`steelscan inspect` reads it; "content" says what it is) and OUT/defects_truth.json: every box with "class"
(1-based index into "class_names"), "class_name", "frame", "bbox" (in the frame), "frames", "coil_bbox_px",
along_m / across_mm / length_mm / width_mm, and "source"; top-level "sources" lists each image with its path
(relative to "sources_root"), frame, slot and x / y offset in coil px. Boxes are rounded to whole pixels.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import yaml

from steelscan.core.errors import DataError, SteelscanError
from steelscan.core.images import read_image
from steelscan.data.formats import read_data
from steelscan.data.formats.base import Item
from steelscan.data.splits import split_items
from steelscan.data.synthetic.coil import PNG_FAST
from steelscan.data.synthetic.writers import Progress, SynthSummary, prepare_out, write_bytes

CONTENT = "real {what} images laid out as a coil"
MM_PER_PX = 0.5  # nominal: NEU states no scale; 1600 px frames are then an 800 mm strip
SPLITS = ("train", "val", "test", "all")
# The split `steelscan evaluate MODEL --split val` uses for a built-in model (no run config of its own).
VAL_FRACTION, SEED, VAL_REMAINDERS = 0.2, 0, (4,)
FORMAT_NAMES = {"neu-det": "NEU-DET", "voc": "Pascal VOC", "yolo": "YOLO", "coco": "COCO"}


@dataclass
class NeuCoilSummary(SynthSummary):
    """SynthSummary whose line says plainly what the coil is made of."""

    content: str = ""
    frames: int = 0
    frame_size: tuple[int, int] = (0, 0)  # (width, height) px
    boxes: int = 0
    blank: int = 0

    def line(self) -> str:
        classes = ", ".join(f"{k} {v}" for k, v in self.per_class.items())
        return (f"neu-coil: {self.content}: {self.n_images} images ({self.boxes} boxes: {classes}; "
                f"{self.defect_free} without a box) in {self.frames} frames of {self.frame_size[0]}x"
                f"{self.frame_size[1]} px ({self.blank} blank slots) in {self.out}, {self.seconds:.1f} s")


ORDERS = ("interleaved", "name")


def _natural(item: Item) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", item.name)]


def interleave(items: list[Item]) -> list[Item]:
    """Items dealt round-robin by their main class (the most frequent label of the image; no box: its own
    group), each group in its given order. With 6 NEU classes and 8 images per frame, no two images of one
    class then touch, across or along: on steel a defect does not end at an image seam exactly where another
    of its class begins, and the station would rightly merge two such pieces into one defect."""
    groups: dict[int, list[Item]] = {}
    for it in items:
        main = int(np.bincount(it.labels).argmax()) if len(it.labels) else -1
        groups.setdefault(main, []).append(it)
    queues = [groups[k] for k in sorted(groups)]
    return [q[i] for i in range(max(map(len, queues))) for q in queues if i < len(q)]


def coil_items(root: str | Path, split: str = "val", fmt: str | None = None, limit: int | None = None,
               order: str = "interleaved"):
    """(data, items): the images of `split` of a detection data set, in natural name order, then (`order`
    "interleaved") dealt round-robin by class."""
    if order not in ORDERS:
        raise SteelscanError(f"order must be one of {', '.join(ORDERS)}, got {order!r}")
    if split not in SPLITS:
        raise SteelscanError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    data = read_data(root, fmt)
    if data.task != "detection":
        raise DataError(f"{root} is {data.format} data, a {data.task} layout; a coil needs detection boxes")
    items = data.items if split == "all" else getattr(split_items(data, VAL_FRACTION, SEED, VAL_REMAINDERS), split)
    if not items:
        raise DataError(f"{root} has no {split} images ({data.format} data; its own splits: "
                        f"{', '.join(data.own_splits) or 'none'})")
    items = sorted(items, key=_natural)
    if order == "interleaved":
        items = interleave(items)
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit <= 0:
            raise SteelscanError(f"the number of images must be a positive integer, got {limit!r}")
        items = items[:limit]
    sizes = {it.size for it in items if it.size is not None}
    if len(sizes) > 1:
        a, b = sorted(sizes)[:2]
        ia, ib = (next(it for it in items if it.size == s) for s in (a, b))
        raise DataError(f"a coil needs images of one size; {ia.name} is {a[1]}x{a[0]} px but {ib.name} is "
                        f"{b[1]}x{b[0]} px (resizing would change the defects)")
    return data, items


def _dump(truth: dict) -> str:
    """JSON with one list entry per line: readable, diffable, still plain JSON."""
    parts = []
    for k, v in truth.items():
        if isinstance(v, list) and v and isinstance(v[0], dict):
            parts.append(f" {json.dumps(k)}: [\n" + ",\n".join(f"  {json.dumps(d)}" for d in v) + "\n ]")
        else:
            parts.append(f" {json.dumps(k)}: {json.dumps(v)}")
    return "{\n" + ",\n".join(parts) + "\n}\n"


def write_neu_coil(root: str | Path, out: str | Path, split: str = "val", per_frame: int = 8, *,
                   limit: int | None = None, fmt: str | None = None, overwrite: bool = False, order: str = "interleaved",
                   progress: Progress | None = None) -> NeuCoilSummary:
    """Lay the `split` images of the detection data set at `root` out as a coil in `out` (see the module
    docstring); `limit`: only the first images."""
    t0 = time.perf_counter()
    if isinstance(per_frame, bool) or not isinstance(per_frame, int) or not 1 <= per_frame <= 64:
        raise SteelscanError(f"per_frame must be an integer 1..64, got {per_frame!r}")
    data, items = coil_items(root, split, fmt, limit, order)
    h, w = read_image(items[0].path, channels=1).shape
    W = per_frame * w
    if W * MM_PER_PX > 5000:
        raise SteelscanError(f"{per_frame} images of {w} px per frame make a {W * MM_PER_PX:g} mm strip at "
                             f"{MM_PER_PX} mm/px; the station takes at most 5000 mm: use at most "
                             f"{int(5000 // (w * MM_PER_PX))} per frame")
    out = prepare_out(out, ["frames/*.png", "manifest.yaml", "defects_truth.json"], overwrite)
    (out / "frames").mkdir(exist_ok=True)
    root = Path(root).resolve()
    names = list(data.class_names)
    what = FORMAT_NAMES.get(data.format, data.format)
    n_frames = -(-len(items) // per_frame)
    sources, defects, grey_sum = [], [], 0.0
    for k in range(n_frames):
        frame = np.zeros((h, W), np.uint8)
        chunk = items[k * per_frame : (k + 1) * per_frame]
        for slot, it in enumerate(chunk):
            img = read_image(it.path, channels=1)
            if img.shape != (h, w):
                raise DataError(f"a coil needs images of one size; {it.name} is {img.shape[1]}x{img.shape[0]} px "
                                f"but {items[0].name} is {w}x{h} px (resizing would change the defects)")
            x0, y0 = slot * w, k * h
            frame[:, x0 : x0 + w] = img
            grey_sum += float(img.mean())
            src = it.path.resolve()
            sources.append({"index": len(sources),
                            "path": src.relative_to(root).as_posix() if src.is_relative_to(root) else str(src),
                            "frame": k, "slot": slot, "x": x0, "y": y0, "width": w, "height": h,
                            "boxes": len(it.boxes)})
            for box, label in zip(it.boxes, it.labels):
                defects.append(_defect(len(defects), box, names, int(label), k, x0, y0, len(sources) - 1))
        if len(chunk) < per_frame:  # the last frame's empty slots: the mean grey of the images
            frame[:, len(chunk) * w :] = int(round(grey_sum / len(items)))
        write_bytes(out / "frames" / f"{k:06d}.png", ".png", frame, PNG_FAST)
        if progress:
            progress(1)
    blank = n_frames * per_frame - len(items)
    content = CONTENT.format(what=what)
    coil_id = f"NEUCOIL-{split}"
    length_m = n_frames * h * MM_PER_PX / 1000.0
    truth = {
        "coil_id": coil_id, "content": content, "length_m": length_m, "class_names": names,
        "units": {"bbox": "px xyxy, 0-based, x2/y2 exclusive", "along_m": "m from the head end (coil row 0)",
                  "across_mm": "mm from the left strip edge", "sources x/y": "coil px of the image's top-left"},
        "sources_root": str(root), "split": split, "sources": sources, "defects": defects, "periodic": [],
    }
    (out / "defects_truth.json").write_text(_dump(truth), encoding="utf-8")
    manifest = {
        "coil_id": coil_id, "content": content, "surface_side": "top",
        "camera": f"none: {content} ({per_frame} per frame, side by side)",
        "n_frames": n_frames, "frames": "frames/{index:06d}.png",
        "frame_width_px": W, "frame_height_px": h, "frame_overlap_px": 0, "frame_step_px": h,
        "mm_per_px_across": MM_PER_PX, "mm_per_px_along": MM_PER_PX, "strip_width_mm": W * MM_PER_PX,
        "strip_edges_px": [0, W], "coil_length_m": length_m,
        "rolling_direction": "+y: coil row 0 (head end) is the top row of frame 0",
        "generator": {"name": "steelscan synth neu-coil", "source": str(root), "format": data.format,
                      "split": split, "images": len(items), "per_frame": per_frame, "blank_slots": blank,
                      "blank_grey": int(round(grey_sum / len(items)))},
    }
    (out / "manifest.yaml").write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    per_class = dict(sorted(Counter(d["class_name"] for d in defects).items(), key=lambda kv: names.index(kv[0])))
    return NeuCoilSummary("neu-coil", out, len(items), per_class, sum(1 for s in sources if not s["boxes"]),
                          time.perf_counter() - t0, content=content, frames=n_frames, frame_size=(W, h),
                          boxes=len(defects), blank=blank)


def _defect(i: int, box: np.ndarray, names: list[str], label: int, frame: int, x0: int, y0: int,
            source: int) -> dict:
    """One truth defect: an image box (float xyxy) moved by its slot's offset, rounded to whole pixels."""
    bx1, by1, bx2, by2 = (int(round(float(v))) for v in box)
    bx2, by2 = max(bx2, bx1 + 1), max(by2, by1 + 1)  # a sub-pixel box keeps one pixel
    fbox = [bx1 + x0, by1, bx2 + x0, by2]
    cx1, cy1, cx2, cy2 = fbox[0], by1 + y0, fbox[2], by2 + y0
    return {"id": i, "class": label + 1, "class_name": names[label], "frame": frame, "bbox": fbox,
            "frames": [{"frame": frame, "bbox": fbox}], "coil_bbox_px": [cx1, cy1, cx2, cy2],
            "along_m": round((cy1 + cy2) / 2 * MM_PER_PX / 1000.0, 6),
            "across_mm": round((cx1 + cx2) / 2 * MM_PER_PX, 3),
            "length_mm": round((cy2 - cy1) * MM_PER_PX, 3), "width_mm": round((cx2 - cx1) * MM_PER_PX, 3),
            "source": source}
