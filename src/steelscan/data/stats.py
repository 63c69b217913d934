"""Data set statistics for every label layout: class balance, splits, image and box sizes, and the problems
a labelling export gets wrong.

`compute_stats(path, fmt=None) -> dict` reads PATH with `steelscan.data.formats.read_data` (layout detected
when `fmt` is None) and returns plain JSON-ready numbers; `stats_report.print_stats` draws rich tables from
that dict and `stats_report.plot_stats` a PNG, so the three stay independent (the CLI's --json writes the
same dict). Every result has "format", "task", "path", "class_names", "n_images", "n_defect_free",
"images_per_split", "per_class" (one dict per class, in class order), "image_sizes", "channel_modes" and
"problems"; detection adds box counts and sizes. Severstal (Kaggle's 4 classes on 1600x256) adds pixel
shares and the full-set figures beside ours; NEU-CLS and NEU-DET add their file-name facts.

Problems are the readers' (`LabelledData.problems`: unreadable images, labels without images, boxes outside
the image, ...) plus two found here: byte-identical image files (`duplicate_file`, one per group) and
classes with fewer than `FEW_SAMPLES` samples (`few_samples`).
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track

from steelscan.core.errors import DataError, SteelscanError
from steelscan.data.classes import NEU_CLASSES, NEU_CLS_PREFIXES, SEVERSTAL_CLASSES, SEVERSTAL_FULL_SET, SEVERSTAL_SHAPE
from steelscan.data.formats import FORMATS as READERS
from steelscan.data.formats import PROBLEM_KINDS, LabelledData, Problem, detect_format, format_name
from steelscan.data.severstal import SeverstalDataset, decode_masks

FORMATS = (*READERS, "severstal")  # "severstal": read as rle, checked strictly as Kaggle's layout
FEW_SAMPLES = 10  # a class with fewer samples than this is a problem
UNSPLIT = "unsplit"  # images_per_split key for items without a split of their own


def _progress(seq: Sequence, description: str, enabled: bool) -> Iterable:
    # stderr, transient, terminals only: the bar never mixes into printed tables or redirected output.
    console = Console(stderr=True)
    return track(seq, description=description, console=console, transient=True,
                 disable=not (enabled and console.is_terminal))


def _share(part: float, whole: float) -> float:
    return float(part) / float(whole) if whole else 0.0


def _summary(values: np.ndarray) -> dict:
    if values.size == 0:
        return {"min": None, "median": None, "max": None}
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}


def compute_stats(path: str | Path, fmt: str | None = None, progress: bool = False) -> dict:
    """Statistics of the data set at `path` read as `fmt` (a format name or alias; detected when None)."""
    fmt = None if fmt is None else str(getattr(fmt, "value", fmt))
    path = Path(path)
    if not path.exists():
        raise DataError(f"data folder not found: {path}")
    strict_severstal = fmt is not None and fmt.strip().lower() == "severstal"
    name = format_name(fmt) if fmt else detect_format(path)
    severstal = _severstal_stats(path, progress) if strict_severstal else None  # Kaggle's own checks first
    data = READERS[name].reader(path)
    stats = labelled_stats(data, progress)
    if severstal is None and _looks_severstal(data):
        try:
            severstal = _severstal_stats(path, progress)
        except SteelscanError:
            severstal = None  # the lenient reader's problems already say what is wrong
    if severstal is not None:
        _merge(stats, severstal)
    elif data.format == "neu-cls":
        _merge(stats, _neu_cls_extras(data, progress))
    elif data.format == "neu-det":
        _merge(stats, _neu_det_extras(data))
    return stats


def _merge(stats: dict, extra: dict) -> None:
    per_class = extra.pop("per_class", None)
    stats.update(extra)
    if per_class is not None:
        for ours, theirs in zip(stats["per_class"], per_class):
            ours.update(theirs)


def _looks_severstal(data: LabelledData) -> bool:
    sizes = {it.size for it in data.items if it.size is not None}
    return (data.format == "rle" and list(data.class_names) == list(SEVERSTAL_CLASSES)
            and sizes <= {SEVERSTAL_SHAPE} and (data.root / "train.csv").is_file())


# ----------------------------------------------------------------------------------------------- any layout


def labelled_stats(data: LabelledData, progress: bool = False) -> dict:
    """The layout-independent statistics and problems of a `LabelledData`."""
    items, k = data.items, len(data.class_names)
    problems = list(data.problems)
    headers = _headers(data, problems, progress)
    split_of = [it.split or UNSPLIT for it in items]
    splits = [s for s in (*data.own_splits, UNSPLIT) if s in set(split_of)]
    per_split_samples = {s: np.zeros(k, np.int64) for s in splits}
    images_per_class = np.zeros(k, np.int64)
    defect_free = 0
    for it, split in zip(items, split_of):
        if data.task == "classification":
            present = [it.label] if it.label is not None else []
            per_split_samples[split][present] += 1
        elif data.task == "detection":
            labels = np.asarray(it.labels, np.int64)
            labels = labels[(labels >= 0) & (labels < k)]
            np.add.at(per_split_samples[split], labels, 1)
            present = np.unique(labels).tolist()
            defect_free += len(labels) == 0
        else:
            present = [c for c in it.present if 0 <= c < k]
            per_split_samples[split][present] += 1
            defect_free += not present
        images_per_class[present] += 1
    samples = sum(per_split_samples.values(), np.zeros(k, np.int64))
    per_class = [
        {"class": name, "samples": int(samples[i]), "sample_share": _share(samples[i], samples.sum()),
         "images": int(images_per_class[i]), "image_share": _share(images_per_class[i], len(items)),
         "per_split": {s: int(per_split_samples[s][i]) for s in splits}}
        for i, name in enumerate(data.class_names)
    ]
    stats = {
        "format": data.format, "task": data.task, "path": str(data.root), "class_names": list(data.class_names),
        "n_images": len(items), "n_defect_free": int(defect_free),
        "images_per_split": {s: split_of.count(s) for s in splits},
        "skipped": dict(data.skipped), "per_class": per_class, **_image_facts(headers),
    }
    if data.task == "detection":
        stats.update(_box_stats(data, per_class))
    duplicates = _duplicates(data, progress)
    for group in duplicates:
        problems.append(Problem("duplicate_file", group[0], f"same bytes as {', '.join(group[1:])}"))
    for c in per_class:
        if c["samples"] < FEW_SAMPLES:
            problems.append(Problem("few_samples", c["class"], f"{c['samples']} samples (fewer than {FEW_SAMPLES})"))
    stats["duplicate_groups"] = duplicates
    stats["problems"] = _problem_rows(problems)
    stats["n_problems"] = len(problems)
    return stats


def _headers(data: LabelledData, problems: list[Problem], progress: bool) -> list[tuple]:
    """(height, width, mode, file type) per readable image from its header; unreadable ones become problems."""
    from PIL import Image, UnidentifiedImageError

    known = {p.path for p in problems if p.kind == "unreadable_image"}
    out = []
    for it in _progress(data.items, "reading image headers", progress):
        if not it.path.is_file():
            continue  # a labels-only copy or a missing image: the reader's problem to report
        try:
            with Image.open(it.path) as im:
                out.append((im.size[1], im.size[0], im.mode, im.format or it.path.suffix.lstrip(".").upper()))
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            if it.name not in known:
                problems.append(Problem("unreadable_image", it.name, f"not a readable image: {exc}"))
    return out


def _image_facts(headers: list[tuple]) -> dict:
    sizes = Counter((h, w) for h, w, _, _ in headers)
    return {
        "image_sizes": [{"height": h, "width": w, "images": n} for (h, w), n in sizes.most_common()],
        "channel_modes": dict(Counter(mode for *_, mode, _ in headers).most_common()),
        "file_types": dict(Counter(kind for *_, kind in headers).most_common()),
    }


def _box_stats(data: LabelledData, per_class: list[dict]) -> dict:
    k = len(data.class_names)
    boxes = [np.asarray(it.boxes, np.float64).reshape(-1, 4) for it in data.items]
    labels = [np.asarray(it.labels, np.int64) for it in data.items]
    all_boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4))
    all_labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    w, h = all_boxes[:, 2] - all_boxes[:, 0], all_boxes[:, 3] - all_boxes[:, 1]
    for i, c in enumerate(per_class):
        sel = all_labels == i
        c.update({"boxes": int(sel.sum()), "box_share": _share(sel.sum(), len(all_labels)),
                  "images_with_boxes": c["images"], "width": _summary(w[sel]), "height": _summary(h[sel]),
                  "area": _summary(w[sel] * h[sel])})
    per_image = np.array([len(lab) for lab in labels])
    return {
        "n_boxes": int(((all_labels >= 0) & (all_labels < k)).sum()),
        "boxes_per_image": {**_summary(per_image), "mean": float(per_image.mean()) if len(per_image) else None},
        "box_size": {"width": _summary(w), "height": _summary(h), "area": _summary(w * h)},
        "box_convention": "xyxy, 0-based pixel edges, x2/y2 exclusive",
    }


def _duplicates(data: LabelledData, progress: bool) -> list[list[str]]:
    """Groups (item names) of byte-identical image files; only files of equal size are hashed."""
    by_size: dict[int, list] = defaultdict(list)
    seen: set[Path] = set()
    for it in data.items:
        try:
            real = it.path.resolve()
            if real in seen:  # two items on one file (a YOLO list naming it twice) are not a copy
                continue
            by_size[it.path.stat().st_size].append(it)
            seen.add(real)
        except OSError:
            continue
    candidates = [it for group in by_size.values() if len(group) > 1 for it in group]
    by_hash: dict[str, list[str]] = defaultdict(list)
    for it in _progress(candidates, "hashing images", progress):
        digest = hashlib.blake2b(digest_size=20)
        try:
            with open(it.path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
        except OSError:
            continue
        by_hash[digest.hexdigest()].append(it.name)
    return sorted(sorted(names) for names in by_hash.values() if len(names) > 1)


def _problem_rows(problems: list[Problem]) -> list[dict]:
    by_kind: dict[str, list[Problem]] = defaultdict(list)
    for p in problems:
        by_kind[p.kind].append(p)
    order = [k for k in PROBLEM_KINDS if k in by_kind] + sorted(set(by_kind) - set(PROBLEM_KINDS))
    return [{"kind": kind, "description": PROBLEM_KINDS.get(kind, kind), "count": len(by_kind[kind]),
             "examples": [{"path": p.path, "message": p.message} for p in by_kind[kind]]} for kind in order]


# ----------------------------------------------------------------------------------------------- NEU


_NEU_STEM = re.compile(r"^(?P<cls>.+?)_(?P<num>\d+)$")


def _neu_cls_extras(data: LabelledData, progress: bool) -> dict:
    from steelscan.core.images import read_image

    grey: dict[int, list[float]] = defaultdict(list)
    numbers: dict[int, list[int]] = defaultdict(list)
    for it in _progress(data.items, "reading NEU-CLS images", progress):
        try:
            grey[it.label].append(float(read_image(it.path, channels=1).mean()))
        except SteelscanError:
            pass  # the header check above already lists it
        if it.group is not None and it.group.isdigit():
            numbers[it.label].append(int(it.group))
    return {"per_class": [
        {"prefix": NEU_CLS_PREFIXES[i] if i < len(NEU_CLS_PREFIXES) else None,
         "numbers": [min(numbers[i]), max(numbers[i])] if numbers[i] else None,
         "mean_grey": float(np.mean(grey[i])) if grey[i] else None}
        for i in range(len(data.class_names))
    ]}


def _neu_det_extras(data: LabelledData) -> dict:
    """Image-level classes by file name (crazing_12.jpg), and boxes of another class than that."""
    from steelscan.data.neu import neu_class_name

    by_name = np.zeros(len(NEU_CLASSES), np.int64)
    other_images = other_boxes = 0
    for it in data.items:
        match = _NEU_STEM.match(it.path.stem)
        try:
            label = NEU_CLASSES.index(neu_class_name(match["cls"])) if match else None
        except (SteelscanError, ValueError):
            label = None
        if label is None:
            continue
        by_name[label] += 1
        other = int((np.asarray(it.labels) != label).sum())
        other_images += other > 0
        other_boxes += other
    n = len(data.items)
    return {
        "images_with_other_class_boxes": int(other_images), "other_class_boxes": int(other_boxes),
        "box_convention": "xyxy, 0-based pixel edges, x2/y2 exclusive (VOC xmin-1, ymin-1, xmax, ymax)",
        "per_class": [{"images": int(v), "image_share": _share(v, n)} for v in by_name],
    }


# ----------------------------------------------------------------------------------------------- Severstal


def _severstal_stats(root: Path, progress: bool) -> dict:
    ds = SeverstalDataset.from_root(root)
    height, width = ds.shape
    image_pixels = height * width
    k = len(SEVERSTAL_CLASSES)
    images = np.zeros(k, dtype=np.int64)
    pixels = np.zeros(k, dtype=np.int64)
    n_defective = n_multi = defect_pixels = overlap_pixels = 0
    for image_id in _progress(ds.image_ids, "decoding Severstal masks", progress):
        if not ds.labels.rows_for(image_id):
            continue  # defect-free: nothing to decode
        mask = decode_masks(ds.labels, image_id, ds.shape)
        # count_nonzero without an axis takes numpy's fast path; with axis=1 it is several times slower.
        per_class = np.array([np.count_nonzero(channel) for channel in mask], dtype=np.int64)
        pixels += per_class
        images += per_class > 0
        n_defective += 1
        present = np.flatnonzero(per_class)
        if len(present) <= 1:  # the common case; the union needs no second pass
            defect_pixels += int(per_class.sum())
            continue
        n_multi += 1
        layers = mask[present].sum(axis=0, dtype=np.uint8)
        defect_pixels += int(np.count_nonzero(layers))
        overlap_pixels += int(np.count_nonzero(layers > 1))
    n = len(ds)
    ref = SEVERSTAL_FULL_SET
    per_class = [
        {
            "class": name,
            "images": int(images[i]),
            "image_share": _share(images[i], n),
            "pixels": int(pixels[i]),
            "pixel_share": _share(pixels[i], n * image_pixels),
            "share_of_defect_pixels": _share(pixels[i], pixels.sum()),
            "full_set_images": int(ref["images_per_class"][i]),
            "full_set_image_share": _share(ref["images_per_class"][i], ref["n_images"]),
        }
        for i, name in enumerate(SEVERSTAL_CLASSES)
    ]
    if ds.id_source == "list":
        ids_from = "image_ids.txt"
    else:
        ids_from = "train_images/" if ds.id_source == "folder" else "train.csv (defect-free images unknown)"
    return {
        "severstal": True,
        "csv_format": ds.labels.format,
        "masks_only": ds.masks_only,
        "image_ids_from": ids_from,
        "image_shape": [height, width],
        "n_images": n,
        "n_defect_free": n - n_defective,
        "defect_free_share": _share(n - n_defective, n),
        "n_defective": n_defective,
        "n_multi_class": n_multi,
        "per_class": per_class,
        "defect_pixels": defect_pixels,
        "overlap_pixels": overlap_pixels,
        "defect_pixel_share": _share(defect_pixels, n * image_pixels),
        "defect_pixel_share_of_defective_images": _share(defect_pixels, n_defective * image_pixels),
        "full_set": {**ref, "images_per_class": list(ref["images_per_class"]),
                     "defect_free_share": _share(ref["n_defect_free"], ref["n_images"])},
    }


from steelscan.data.stats_report import plot_stats, print_stats  # noqa: E402 - re-exported, imports nothing back

__all__ = ["FEW_SAMPLES", "FORMATS", "compute_stats", "labelled_stats", "plot_stats", "print_stats"]
