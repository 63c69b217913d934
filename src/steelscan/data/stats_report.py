"""Printing and plotting `steelscan.data.stats.compute_stats` output: rich tables and a PNG, from the dict alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from steelscan.core.errors import SteelscanError

N_EXAMPLES = 3  # examples per problem kind in the printed table (the JSON keeps them all)


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


def _counts(mapping: dict, limit: int = 4) -> str:
    parts = [f"{k} {v}" for k, v in list(mapping.items())[:limit]]
    more = f" and {len(mapping) - limit} more" if len(mapping) > limit else ""
    return ", ".join(parts) + more if parts else "none"


def print_stats(stats: dict, console: Console | None = None) -> None:
    """Print `compute_stats` output as rich tables, ending with the problems table."""
    console = console or Console()
    fmt = stats["format"]
    names = stats.get("class_names") or [c["class"] for c in stats["per_class"]]
    console.print(f"[bold]{escape(fmt)}[/] {escape(stats['path'])}: {stats['n_images']} images; "
                  f"{stats.get('task', '')} data, {len(names)} classes: {escape(', '.join(names))}")
    splits = stats.get("images_per_split", {})
    skipped = stats.get("skipped") or {}
    console.print(f"images per split: {_counts(splits)}"
                  + (f"; left out on purpose: {_counts(skipped)}" if skipped else ""))
    if stats.get("image_sizes") is not None:
        sizes = {f"{s['width']}x{s['height']}": s["images"] for s in stats["image_sizes"]}
        console.print(f"image sizes (W x H): {_counts(sizes, 3)}; channels: {_counts(stats['channel_modes'])}; "
                      f"files: {_counts(stats['file_types'])}")
    if stats.get("severstal"):
        _print_severstal(stats, console)
    else:
        _print_classes(stats, console)
        if fmt == "neu-cls":
            _print_neu_cls(stats, console)
        elif fmt == "neu-det":
            _print_neu_det(stats, console)
        elif stats.get("task") == "detection":
            _print_boxes(stats, console)
        if stats.get("task") != "classification":
            console.print(f"defect-free images: {stats['n_defect_free']} of {stats['n_images']}")
    _print_problems(stats, console)


def _print_classes(s: dict, console: Console) -> None:
    splits = list(s.get("images_per_split", {}))
    unit = {"classification": "images", "detection": "boxes", "segmentation": "images showing it"}.get(s.get("task"))
    table = _table(f"Samples per class ({unit})", "class", "samples", "% of samples", *splits,
                   *(["images"] if s.get("task") == "detection" else []))
    for c in s["per_class"]:
        row = [escape(c["class"]), str(c["samples"]), _pct(c["sample_share"])]
        row += [str(c["per_split"].get(sp, 0)) for sp in splits]
        if s.get("task") == "detection":
            row.append(str(c.get("images_with_boxes", c["images"])))
        table.add_row(*row, style="red" if c["samples"] < 10 else None)
    total = sum(c["samples"] for c in s["per_class"])
    by_split = [str(sum(c["per_split"].get(sp, 0) for c in s["per_class"])) for sp in splits]
    table.add_row("all", str(total), "", *by_split, *([""] if s.get("task") == "detection" else []), style="bold")
    console.print(table)


def _print_boxes(s: dict, console: Console) -> None:
    sizes = _table("Box sizes in pixels: min / median / max", "class", "boxes", "width", "height", "area")
    for c in s["per_class"]:
        sizes.add_row(escape(c["class"]), str(c["boxes"]), *("/".join(_num(c[key][q]) for q in ("min", "median", "max"))
                                                          for key in ("width", "height", "area")))
    all_ = s["box_size"]
    sizes.add_row("all", str(s["n_boxes"]), *("/".join(_num(all_[key][q]) for q in ("min", "median", "max"))
                                              for key in ("width", "height", "area")), style="bold")
    console.print(sizes)
    b = s["boxes_per_image"]
    mean = "-" if b["mean"] is None else f"{b['mean']:.2f}"
    console.print(f"boxes per image: min {_num(b['min'])}, median {_num(b['median'])}, max {_num(b['max'])}, "
                  f"mean {mean}")


def _print_problems(s: dict, console: Console) -> None:
    rows = s.get("problems", [])
    if not rows:
        console.print("[green]no problems found[/]")
        return
    table = _table(f"Problems ({s.get('n_problems', sum(r['count'] for r in rows))})", "kind", "count", "what",
                   "first examples", left=("kind", "what", "first examples"))
    for r in rows:
        examples = "\n".join(escape(f"{e['path']}: {e['message']}") for e in r["examples"][:N_EXAMPLES])
        if r["count"] > N_EXAMPLES:
            examples += f"\n... and {r['count'] - N_EXAMPLES} more"
        table.add_row(r["kind"], str(r["count"]), r["description"], examples)
    console.print(table)


def _print_neu_cls(s: dict, console: Console) -> None:
    table = _table("NEU-CLS images per class", "class", "prefix", "images", "% of images", "numbers",
                   "mean grey", left=("class", "prefix"))
    for c in s["per_class"]:
        numbers = "-" if c.get("numbers") is None else f"{c['numbers'][0]}..{c['numbers'][1]}"
        mean = "-" if c.get("mean_grey") is None else f"{c['mean_grey']:.1f}"
        table.add_row(c["class"], c.get("prefix") or "", str(c["images"]), _pct(c["image_share"]), numbers, mean)
    table.add_row("defect-free", "", str(s["n_defect_free"]), _pct(0.0), "", "", style="dim")
    console.print(table)


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
    if stats.get("severstal"):
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
    elif stats["format"] in ("neu-cls", "neu-det"):
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
    else:
        _plot_generic(stats, left, right)
    fig.savefig(out, dpi=110)
    return out


def _plot_generic(stats: dict, left, right) -> None:
    per = stats["per_class"]
    names = [c["class"] for c in per]
    splits = list(stats.get("images_per_split", {})) or ["all"]
    x = np.arange(len(names))
    width = 0.8 / len(splits)
    for j, split in enumerate(splits):
        values = [c["per_split"].get(split, 0) if split != "all" else c["samples"] for c in per]
        _bars(left, x - 0.4 + width * (j + 0.5), values, width, split, [str(v) for v in values])
    left.set_xticks(x, names, rotation=20)
    unit = {"classification": "images", "detection": "boxes"}.get(stats.get("task"), "images showing the class")
    left.set_ylabel(unit)
    left.set_title(f"{stats['format']}: samples per class and split ({stats['n_images']} images)")
    left.legend()
    split_counts = stats.get("images_per_split", {})
    labels = list(split_counts) + (["defect-free"] if stats.get("task") != "classification" else [])
    values = list(split_counts.values()) + ([stats["n_defect_free"]] if stats.get("task") != "classification" else [])
    _bars(right, np.arange(len(labels)), values, 0.6, None, [str(v) for v in values])
    right.set_xticks(np.arange(len(labels)), labels)
    right.set_ylabel("images")
    right.set_title(f"Images per split; {stats.get('n_problems', 0)} problems found")


def _bars(ax, x, heights, width, label, texts) -> None:
    bars = ax.bar(x, heights, width, label=label)
    if texts:
        ax.bar_label(bars, labels=texts, fontsize=8)
    ax.margins(y=0.12)
