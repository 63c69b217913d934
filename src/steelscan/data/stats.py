"""Data set statistics: class imbalance at image, pixel and box level.

`compute_stats(path, fmt) -> dict` does the work and returns plain JSON-ready numbers; `print_stats` draws
rich tables from that dict and `plot_stats` a PNG, so the three stay independent (the CLI's --json writes
the same dict).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import track
from rich.table import Table

from steelscan.data.classes import NEU_CLASSES, NEU_CLS_PREFIXES, SEVERSTAL_CLASSES, SEVERSTAL_FULL_SET
from steelscan.data.neu import list_neu_cls, list_neu_det, load_grey_image
from steelscan.data.severstal import SeverstalDataset, decode_masks
from steelscan.core.errors import SteelscanError

FORMATS = ("severstal", "neu-cls", "neu-det")


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


def compute_stats(path: str | Path, fmt: str, progress: bool = False) -> dict:
    """Statistics of the data set at `path` read as `fmt` (one of FORMATS): a JSON-ready dict.

    Every result has "format", "path", "n_images", "n_defect_free" and "per_class" (a list of dicts, one
    per class in the fixed class order); the other keys depend on the format.
    """
    fmt = str(getattr(fmt, "value", fmt))
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data folder not found: {path}")
    if not path.is_dir():
        raise SteelscanError(f"expected a data folder for --format {fmt}, got a file: {path}")
    if fmt == "severstal":
        return _severstal_stats(path, progress)
    if fmt == "neu-cls":
        return _neu_cls_stats(path, progress)
    if fmt == "neu-det":
        return _neu_det_stats(path)
    raise SteelscanError(f"unknown data format {fmt!r}; expected one of {', '.join(FORMATS)}")


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
        "format": "severstal",
        "path": str(root),
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


def _neu_cls_stats(root: Path, progress: bool) -> dict:
    items = list_neu_cls(root)
    grey: dict[int, list[float]] = {i: [] for i in range(len(NEU_CLASSES))}
    for it in _progress(items, "reading NEU-CLS images", progress):
        grey[it.label].append(float(load_grey_image(it.path).mean()))  # also checks each file decodes, 200x200
    per_class = []
    for i, name in enumerate(NEU_CLASSES):
        numbers = [it.number for it in items if it.label == i]
        per_class.append({
            "class": name,
            "prefix": NEU_CLS_PREFIXES[i],
            "images": len(numbers),
            "image_share": _share(len(numbers), len(items)),
            "numbers": [min(numbers), max(numbers)] if numbers else None,
            "mean_grey": float(np.mean(grey[i])) if grey[i] else None,
        })
    return {"format": "neu-cls", "path": str(root), "n_images": len(items), "n_defect_free": 0, "per_class": per_class}


def _neu_det_stats(root: Path) -> dict:
    items = list_neu_det(root)
    boxes = np.concatenate([it.boxes for it in items]) if items else np.zeros((0, 4), np.float32)
    labels = np.concatenate([it.labels for it in items]) if items else np.zeros(0, np.int64)
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    per_class = []
    for i, name in enumerate(NEU_CLASSES):
        sel = labels == i
        n_images = sum(it.label == i for it in items)
        per_class.append({
            "class": name,
            "images": n_images,  # by file name (image-level class)
            "image_share": _share(n_images, len(items)),
            "images_with_boxes": sum(bool((it.labels == i).any()) for it in items),
            "boxes": int(sel.sum()),
            "box_share": _share(sel.sum(), len(labels)),
            "width": _summary(w[sel]),
            "height": _summary(h[sel]),
            "area": _summary(w[sel] * h[sel]),
        })
    per_image = np.array([len(it.labels) for it in items])
    other = [int((it.labels != it.label).sum()) for it in items]
    return {
        "format": "neu-det",
        "path": str(root),
        "n_images": len(items),
        "n_defect_free": sum(n == 0 for n in per_image.tolist()),
        "n_boxes": int(len(labels)),
        "boxes_per_image": {**_summary(per_image), "mean": float(per_image.mean()) if len(items) else None},
        "images_with_other_class_boxes": sum(n > 0 for n in other),
        "other_class_boxes": sum(other),
        "box_convention": "xyxy, 0-based pixel edges, x2/y2 exclusive (VOC xmin-1, ymin-1, xmax, ymax)",
        "per_class": per_class,
    }


# ----------------------------------------------------------------------------------------------- printing


def _pct(x: float | None, digits: int = 1) -> str:
    return "-" if x is None else f"{100 * x:.{digits}f}%"


def _num(x: float | None) -> str:
    return "-" if x is None else f"{x:g}"


def _table(title: str, *columns: str, left: tuple[str, ...] = ("class",)) -> Table:
    """A table whose label columns are left-aligned and number columns right-aligned."""
    table = Table(title=title)
    for col in columns:
        table.add_column(col, justify="left" if col in left else "right")
    return table


def print_stats(stats: dict, console: Console | None = None) -> None:
    """Print `compute_stats` output as rich tables."""
    console = console or Console()
    fmt = stats["format"]
    console.print(f"[bold]{fmt}[/] {stats['path']}: {stats['n_images']} images")
    if fmt == "severstal":
        _print_severstal(stats, console)
    elif fmt == "neu-cls":
        table = _table("NEU-CLS images per class", "class", "prefix", "images", "% of images", "numbers",
                       "mean grey", left=("class", "prefix"))
        for c in stats["per_class"]:
            numbers = "-" if c["numbers"] is None else f"{c['numbers'][0]}..{c['numbers'][1]}"
            mean = "-" if c["mean_grey"] is None else f"{c['mean_grey']:.1f}"
            table.add_row(c["class"], c["prefix"], str(c["images"]), _pct(c["image_share"]), numbers, mean)
        table.add_row("defect-free", "", str(stats["n_defect_free"]), _pct(0.0), "", "", style="dim")
        console.print(table)
    else:
        _print_neu_det(stats, console)


def _print_severstal(s: dict, console: Console) -> None:
    ref = s["full_set"]
    console.print(
        f"labels: train.csv ({s['csv_format']} format); image ids from {s['image_ids_from']}"
        + ("; masks only (no images)" if s["masks_only"] else "")
    )
    images = _table("Severstal images per class (an image may hold several classes)",
                    "class", "images", "% of images", "full set", "full set %")
    images.add_row("defect-free", str(s["n_defect_free"]), _pct(s["defect_free_share"]),
                   str(ref["n_defect_free"]), _pct(ref["defect_free_share"]))
    for c in s["per_class"]:
        images.add_row(c["class"], str(c["images"]), _pct(c["image_share"]),
                       str(c["full_set_images"]), _pct(c["full_set_image_share"]))
    images.add_row("all", str(s["n_images"]), "", str(ref["n_images"]), "", style="bold")
    console.print(images)
    pixels = _table("Severstal pixels per class", "class", "pixels", "% of all pixels", "% of defect pixels")
    for c in s["per_class"]:
        pixels.add_row(c["class"], str(c["pixels"]), _pct(c["pixel_share"], 3), _pct(c["share_of_defect_pixels"]))
    console.print(pixels)
    console.print(
        f"defective images: {s['n_defective']} ({s['n_multi_class']} with several classes); "
        f"defect pixels: {_pct(s['defect_pixel_share'], 2)} of all pixels, "
        f"[bold]{_pct(s['defect_pixel_share_of_defective_images'], 2)}[/] of the pixels of defective images "
        f"(full set: {_pct(ref['defect_pixel_share_of_defective_images'], 2)})"
    )


def _print_neu_det(s: dict, console: Console) -> None:
    counts = _table("NEU-DET images (by file name) and boxes (by box label) per class",
                    "class", "images", "images with boxes", "boxes", "% of boxes")
    for c in s["per_class"]:
        counts.add_row(c["class"], str(c["images"]), str(c["images_with_boxes"]), str(c["boxes"]), _pct(c["box_share"]))
    counts.add_row("defect-free", str(s["n_defect_free"]), "", "", "", style="dim")
    counts.add_row("all", str(s["n_images"]), "", str(s["n_boxes"]), "", style="bold")
    console.print(counts)
    sizes = _table("NEU-DET box sizes in pixels: min / median / max", "class", "width", "height", "area")
    for c in s["per_class"]:
        sizes.add_row(c["class"], *("/".join(_num(c[key][q]) for q in ("min", "median", "max"))
                                    for key in ("width", "height", "area")))
    console.print(sizes)
    b = s["boxes_per_image"]
    console.print(
        f"boxes per image: min {_num(b['min'])}, median {_num(b['median'])}, max {_num(b['max'])}, "
        f"mean {b['mean']:.2f}; {s['images_with_other_class_boxes']} images hold {s['other_class_boxes']} "
        f"boxes of a class other than their file name"
    )


# ----------------------------------------------------------------------------------------------- plotting


def plot_stats(stats: dict, out: str | Path) -> Path:
    """Draw the class counts / shares of `compute_stats` output into a PNG at `out`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # Agg: no display needed
    from matplotlib.figure import Figure

    out = Path(out)
    if out.suffix.lower() != ".png":
        raise SteelscanError(f"--plot expects a .png file name, got {out}")
    out.parent.mkdir(parents=True, exist_ok=True)
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    per = stats["per_class"]
    names = [c["class"] for c in per]
    x = np.arange(len(names) + 1)
    if stats["format"] == "severstal":
        ref = stats["full_set"]
        ours = [stats["defect_free_share"]] + [c["image_share"] for c in per]
        full = [ref["defect_free_share"]] + [c["full_set_image_share"] for c in per]
        _bars(left, x - 0.2, ours, 0.4, "this data", [str(stats["n_defect_free"])] + [str(c["images"]) for c in per])
        _bars(left, x + 0.2, full, 0.4, "full set (Kaggle)", None)
        left.set_xticks(x, ["defect-free"] + [f"class {n}" for n in names])
        left.set_ylabel("share of images")
        left.set_title(f"Images per class ({stats['n_images']} images)")
        left.legend()
        shares = [c["share_of_defect_pixels"] for c in per]
        _bars(right, x[1:], shares, 0.6, None, [_pct(v) for v in shares])
        right.set_xticks(x[1:], [f"class {n}" for n in names])
        right.set_ylabel("share of defect pixels")
        right.set_title(
            f"Defect pixels: {_pct(stats['defect_pixel_share_of_defective_images'], 2)} of defective images' pixels "
            f"(full set {_pct(ref['defect_pixel_share_of_defective_images'], 2)})", fontsize=9
        )
    else:
        counts = [c["images"] for c in per]
        _bars(left, x[:-1], counts, 0.6, None, [str(v) for v in counts])
        left.set_xticks(x[:-1], names, rotation=20)
        left.set_ylabel("images")
        left.set_title(f"{stats['format']}: images per class ({stats['n_images']} images, no defect-free)")
        if stats["format"] == "neu-det":
            boxes = [c["boxes"] for c in per]
            _bars(right, x[:-1], boxes, 0.6, None, [str(v) for v in boxes])
            right.set_ylabel("boxes")
            right.set_title(f"Boxes per class ({stats['n_boxes']} boxes)")
        else:
            grey = [c["mean_grey"] or 0.0 for c in per]
            _bars(right, x[:-1], grey, 0.6, None, [f"{v:.0f}" for v in grey])
            right.set_ylabel("mean grey level (0-255)")
            right.set_title("Mean grey level per class")
        right.set_xticks(x[:-1], names, rotation=20)
    fig.savefig(out, dpi=110)
    return out


def _bars(ax, x, heights, width, label, texts) -> None:
    bars = ax.bar(x, heights, width, label=label)
    if texts:
        ax.bar_label(bars, labels=texts, fontsize=8)
    ax.margins(y=0.12)
