"""Write synthetic data sets in exactly the real on-disk formats.

- Severstal (Kaggle): OUT/train_images/<9 hex>.jpg (1600x256, grey stored as 3-channel JPEG like Kaggle's)
  and OUT/train.csv `ImageId,ClassId,EncodedPixels`, one row per (image, present class), sorted; defect-free
  images have an image file and no row.
- NEU-CLS: flat OUT/Cr_1.bmp ... (200x200 8-bit grey BMP), numbered 1..count per class.
- NEU-DET: OUT/IMAGES/crazing_1.jpg (grey stored as 3 channels) + OUT/ANNOTATIONS/crazing_1.xml (Pascal VOC,
  laid out like the real files, 1-based inclusive box corners).

Determinism: image i is drawn from its own generator, `image_rng(seed, kind, *key)` (a SeedSequence spawn
key), so its bytes depend only on (seed, key): not on n, on the other images, or on the worker count.
A NEU photograph's key is (class, number), so NEU-CLS `Cr_7.bmp` and NEU-DET `crazing_7.jpg` from the same
seed are the same image, as in the real sets.
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from steelscan.data.classes import NEU_CLASSES, NEU_CLS_PREFIXES, NEU_PREFIX_TO_CLASS
from steelscan.data.rle import rle_encode
from steelscan.data.synthetic.neu_images import make_neu_image
from steelscan.data.synthetic.strips import class_sets_for, make_severstal_image
from steelscan.core.errors import SteelscanError

KIND_CODES = {"severstal": 1, "neu": 2, "coil": 3, "neu-clean": 4}
JPEG_QUALITY = 90
Progress = Callable[[int], None]


@dataclass
class SynthSummary:
    """What a writer made: images per class, defect-free images, extra figures, wall time."""

    kind: str
    out: Path
    n_images: int
    per_class: dict[str, int]
    defect_free: int = 0
    seconds: float = 0.0
    extra: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:
        classes = ", ".join(f"{k}: {v}" for k, v in self.per_class.items())
        more = "".join(f", {k} {v:.4g}" for k, v in self.extra.items())
        unit = "frames" if self.kind == "coil" else "images"
        return (f"{self.kind}: {self.n_images} {unit} in {self.out} ({classes}; defect-free {unit} "
                f"{self.defect_free}{more}) in {self.seconds:.1f} s")


def image_rng(seed: int, kind: str, *key: int) -> np.random.Generator:
    """The generator of one image (or coil part): a function of (seed, kind, key) alone."""
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(KIND_CODES[kind], *map(int, key))))


def check_args(n: int, seed: int, what: str = "images") -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise SteelscanError(f"the number of {what} must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise SteelscanError(f"seed must be a non-negative integer, got {seed!r}")


def prepare_out(out: str | Path, ours: Sequence[str], overwrite: bool) -> Path:
    """Make OUT ready: create it, or accept it empty; a non-empty OUT needs `overwrite`, which removes only
    our own outputs (`ours`: glob patterns relative to OUT) so no stale image outlives its labels."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SteelscanError(f"output {out} is a file; expected a new or empty folder")
    if out.is_dir():
        entries = sorted(p.name for p in out.iterdir())
        if entries and not overwrite:
            shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
            raise SteelscanError(
                f"output folder {out} is not empty ({len(entries)} entries: {shown}); "
                "choose a new folder or pass --overwrite to replace generated data there"
            )
        for pattern in ours:
            for p in sorted(out.glob(pattern)):
                if p.is_file() or p.is_symlink():
                    p.unlink()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _init_worker() -> None:
    cv2.setNumThreads(1)  # the pool is the parallelism; OpenCV's own threads would oversubscribe the cores


def parallel_map(fn: Callable, items: Iterable, n: int, workers: int | None, progress: Progress | None) -> Iterator:
    """fn over items in order, in a pool of `workers` processes (default: up to 2), reporting progress."""
    workers = min(2, os.cpu_count() or 1) if workers is None else max(1, int(workers))
    if workers == 1 or n < 8:
        for item in items:
            result = fn(item)
            if progress:
                progress(1)
            yield result
        return
    # Not "fork": a child forked after OpenCV ran its thread pool in the parent can hang in cv2 calls.
    ctx = mp.get_context("forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn")
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        for result in pool.imap(fn, items, chunksize=4):
            if progress:
                progress(1)
            yield result


def write_bytes(path: Path, ext: str, image: np.ndarray, params: Sequence[int] = ()) -> None:
    ok, buf = cv2.imencode(ext, image, list(params))
    if not ok:
        raise SteelscanError(f"OpenCV could not encode {path}")
    path.write_bytes(buf.tobytes())


def write_jpeg_3ch(path: Path, image: np.ndarray) -> None:
    """Grey image stored as a 3-channel baseline JPEG, as Kaggle and NEU-DET store theirs."""
    write_bytes(path, ".jpg", cv2.cvtColor(image, cv2.COLOR_GRAY2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])


# -- Severstal -----------------------------------------------------------------------------------------------


def severstal_ids(seed: int, n: int) -> list[str]:
    """Kaggle-like image ids (9 hex characters), unique within the set, a function of (seed, index)."""
    ids, seen = [], set()
    for i in range(n):
        attempt = 0
        while True:
            h = hashlib.sha1(f"steelscan-severstal:{seed}:{i}:{attempt}".encode()).hexdigest()[:9]
            if h not in seen:
                break
            attempt += 1
        seen.add(h)
        ids.append(h)
    return ids


def severstal_image(seed: int, index: int, classes: Sequence[int] | None = None):
    """Image `index` of the set written by `write_severstal(seed=seed, classes=classes)`: (image, masks)."""
    return make_severstal_image(image_rng(seed, "severstal", index), class_sets=class_sets_for(classes))


def _severstal_one(args: tuple, seed: int, folder: Path, classes: Sequence[int] | None):
    index, image_id = args
    image, masks = severstal_image(seed, index, classes)
    write_jpeg_3ch(folder / f"{image_id}.jpg", image)
    rows = [(k + 1, rle_encode(masks[k])) for k in range(4) if masks[k].any()]
    return image_id, rows, int(masks.max(0).sum())


def write_severstal(
    out: str | Path, n: int, seed: int = 0, *, classes: Sequence[int] | None = None, overwrite: bool = False,
    workers: int | None = None, progress: Progress | None = None,
) -> SynthSummary:
    """Write n Kaggle-format images + train.csv. `classes` keeps only class combinations holding one of them
    (e.g. [2] for extra class-2 samples); the default follows the real set (~47% defect-free)."""
    check_args(n, seed)
    class_sets_for(classes)  # validate before touching the disk
    t0 = time.perf_counter()
    out = prepare_out(out, ["train_images/*.jpg", "train.csv"], overwrite)
    folder = out / "train_images"
    folder.mkdir(exist_ok=True)
    ids = severstal_ids(seed, n)
    fn = partial(_severstal_one, seed=seed, folder=folder, classes=classes)
    rows, per_class, free, defect_px, defective = [], {str(k): 0 for k in range(1, 5)}, 0, 0, 0
    for image_id, image_rows, px in parallel_map(fn, enumerate(ids), n, workers, progress):
        rows += [(image_id, k, rle) for k, rle in image_rows]
        for k, _ in image_rows:
            per_class[str(k)] += 1
        free += not image_rows
        defect_px += px
        defective += bool(image_rows)
    rows.sort()
    tmp = out / "train.csv.tmp"  # the csv appears only once every image it names is on disk
    with open(tmp, "w", encoding="utf-8", newline="") as fh:
        fh.write("ImageId,ClassId,EncodedPixels\n")
        fh.writelines(f"{i}.jpg,{k},{rle}\n" for i, k, rle in rows)
    tmp.replace(out / "train.csv")
    share = defect_px / (defective * 256 * 1600) if defective else 0.0
    return SynthSummary("severstal", out, n, per_class, free, time.perf_counter() - t0,
                        {"defect pixel share of defective images": share})


# -- NEU -----------------------------------------------------------------------------------------------------


def neu_class(name: str) -> str:
    """Full NEU class name from a class name or a NEU-CLS prefix (case-insensitive)."""
    table = {c.lower(): c for c in NEU_CLASSES} | {p.lower(): c for p, c in NEU_PREFIX_TO_CLASS.items()}
    try:
        return table[str(name).strip().lower()]
    except KeyError:
        raise SteelscanError(
            f"unknown NEU class {name!r}; expected one of {', '.join(NEU_CLASSES)} or {', '.join(NEU_CLS_PREFIXES)}"
        ) from None


def neu_counts(
    n: int, class_counts: Mapping[str, int] | None = None, class_weights: Mapping[str, float] | None = None,
    classes: Sequence[str] | None = None,
) -> dict[str, int]:
    """Images per class. class_counts: exact counts (n is then ignored). Otherwise n is split over `classes`
    (default all six) by `class_weights` (default equal, as in the real set), largest remainder first."""
    if class_counts is not None:
        counts = {neu_class(k): int(v) for k, v in class_counts.items()}
        if any(v < 0 for v in counts.values()) or sum(counts.values()) <= 0:
            raise SteelscanError(f"class_counts must be non-negative with a positive total, got {dict(class_counts)}")
        return {c: counts[c] for c in NEU_CLASSES if counts.get(c)}
    check_args(n, 0)
    names = [neu_class(c) for c in classes] if classes else list(NEU_CLASSES)
    if class_weights is not None:
        w = {neu_class(k): float(v) for k, v in class_weights.items()}
        if any(v < 0 or not np.isfinite(v) for v in w.values()):
            raise SteelscanError(f"class_weights must be finite and non-negative, got {dict(class_weights)}")
        names = [c for c in names if w.get(c, 0.0) > 0]
    else:
        w = {c: 1.0 for c in names}
    if not names:
        raise SteelscanError("no NEU class left to generate: every chosen class has weight 0")
    p = np.array([w[c] for c in names]) / sum(w[c] for c in names)
    base = np.floor(p * n).astype(int)
    order = np.argsort(-(p * n - base), kind="stable")
    base[order[: n - base.sum()]] += 1
    return {c: int(k) for c, k in zip(names, base) if k > 0}


def neu_image(seed: int, class_name: str, number: int):
    """Photograph `number` of `class_name` for this seed: (image, boxes, labels), as both NEU writers use."""
    return make_neu_image(class_name, image_rng(seed, "neu", NEU_CLASSES.index(class_name), number))


def _neu_items(counts: Mapping[str, int], first_number: int) -> list[tuple[str, int]]:
    return [(c, first_number + j) for c in counts for j in range(counts[c])]


def _neu_cls_one(item: tuple[str, int], seed: int, out: Path) -> str:
    name, number = item
    image, _, _ = neu_image(seed, name, number)
    write_bytes(out / f"{NEU_CLS_PREFIXES[NEU_CLASSES.index(name)]}_{number}.bmp", ".bmp", image)
    return name


def voc_xml(stem: str, name: str, boxes: np.ndarray, labels: np.ndarray, size: tuple[int, int] = (200, 200)) -> str:
    """A NEU-DET annotation: tab-indented Pascal VOC as in the real files; boxes 0-based xyxy exclusive."""
    folder = NEU_CLS_PREFIXES[NEU_CLASSES.index(name)].lower()
    lines = ["<annotation>", f"\t<folder>{folder}</folder>", f"\t<filename>{stem}.jpg</filename>", "\t<source>",
             "\t\t<database>NEU-DET</database>", "\t</source>", "\t<size>", f"\t\t<width>{size[1]}</width>",
             f"\t\t<height>{size[0]}</height>", "\t\t<depth>1</depth>", "\t</size>", "\t<segmented>0</segmented>"]
    for (x1, y1, x2, y2), label in zip(boxes.astype(int).tolist(), labels.tolist()):
        lines += ["\t<object>", f"\t\t<name>{NEU_CLASSES[label]}</name>", "\t\t<pose>Unspecified</pose>",
                  "\t\t<truncated>0</truncated>", "\t\t<difficult>0</difficult>", "\t\t<bndbox>",
                  f"\t\t\t<xmin>{x1 + 1}</xmin>", f"\t\t\t<ymin>{y1 + 1}</ymin>",
                  f"\t\t\t<xmax>{x2}</xmax>", f"\t\t\t<ymax>{y2}</ymax>", "\t\t</bndbox>", "\t</object>"]
    return "\n".join(lines + ["</annotation>", ""])


def _neu_det_one(item: tuple[str, int], seed: int, out: Path) -> tuple[str, int]:
    name, number = item
    image, boxes, labels = neu_image(seed, name, number)
    stem = f"{name}_{number}"
    write_jpeg_3ch(out / "IMAGES" / f"{stem}.jpg", image)
    (out / "ANNOTATIONS" / f"{stem}.xml").write_text(voc_xml(stem, name, boxes, labels), encoding="utf-8")
    return name, len(boxes)


def _write_neu(kind: str, out, n, seed, class_counts, class_weights, classes, first_number, overwrite, workers,
               progress) -> SynthSummary:
    counts = neu_counts(n, class_counts, class_weights, classes)
    check_args(sum(counts.values()), seed)
    if isinstance(first_number, bool) or not isinstance(first_number, int) or first_number < 1:
        raise SteelscanError(f"first_number must be a positive integer, got {first_number!r}")
    t0 = time.perf_counter()
    if kind == "neu-cls":
        out = prepare_out(out, [f"{p}_*.bmp" for p in NEU_CLS_PREFIXES], overwrite)
        fn = partial(_neu_cls_one, seed=seed, out=out)
    else:
        out = prepare_out(out, ["IMAGES/*.jpg", "ANNOTATIONS/*.xml"], overwrite)
        (out / "IMAGES").mkdir(exist_ok=True)
        (out / "ANNOTATIONS").mkdir(exist_ok=True)
        fn = partial(_neu_det_one, seed=seed, out=out)
    items = _neu_items(counts, first_number)
    n_boxes = sum(r[1] if isinstance(r, tuple) else 0 for r in parallel_map(fn, items, len(items), workers, progress))
    extra = {"boxes": float(n_boxes)} if kind == "neu-det" else {}
    return SynthSummary(kind, out, len(items), counts, 0, time.perf_counter() - t0, extra)


def write_neu_cls(
    out: str | Path, n: int, seed: int = 0, *, class_counts: Mapping[str, int] | None = None,
    class_weights: Mapping[str, float] | None = None, classes: Sequence[str] | None = None, first_number: int = 1,
    overwrite: bool = False, workers: int | None = None, progress: Progress | None = None,
) -> SynthSummary:
    """Write a flat NEU-CLS folder of n BMPs (balanced by default; see `neu_counts` for the options).

    Numbers run first_number.. per class; a second call with a larger first_number adds extra samples of a
    minority class into another folder without repeating any image."""
    return _write_neu("neu-cls", out, n, seed, class_counts, class_weights, classes, first_number, overwrite,
                      workers, progress)


def write_neu_det(
    out: str | Path, n: int, seed: int = 0, *, class_counts: Mapping[str, int] | None = None,
    class_weights: Mapping[str, float] | None = None, classes: Sequence[str] | None = None, first_number: int = 1,
    overwrite: bool = False, workers: int | None = None, progress: Progress | None = None,
) -> SynthSummary:
    """Write a NEU-DET folder (IMAGES/*.jpg + ANNOTATIONS/*.xml) of n images; options as `write_neu_cls`."""
    return _write_neu("neu-det", out, n, seed, class_counts, class_weights, classes, first_number, overwrite,
                      workers, progress)
