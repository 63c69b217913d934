"""The coil report: one folder per inspected coil, readable in a browser with nothing else installed.

OUT/report.html (self-contained: inline CSS, no JS, images by relative path), coil_map.png (the strip
unrolled, defects by class and extent, periodic groups outlined), counts.png, gallery/defect_<id>.png
(crops of the largest / most confident defects), defects.csv and report.json (the same facts, for machines).
report.html is written last and atomically, so a report that looks finished is finished.

Classes are shown by the model's class names, each in its `plots.class_colour` (by its index in
`class_names`). The report names what produced it (`provenance`: model, rules, steelscan version, time of
writing) and shows `warnings` (e.g. `ModelMeta.baseline_warning`) above everything else.
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
import math
import os
import re
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
from matplotlib.collections import PatchCollection
from matplotlib.figure import Figure  # not pyplot: no global figure state, nothing to close
from matplotlib.patches import Rectangle
from matplotlib.ticker import MaxNLocator

from steelscan import __version__
from steelscan.plots import class_colour

log = logging.getLogger(__name__)

MAX_TABLE_ROWS = 500
_DEFECT_KEYS = ("id", "class", "confidence", "along_m", "across_mm", "length_mm", "width_mm", "area_mm2", "frame",
                "bbox", "coil_bbox_px", "area_px", "frames")
_BOX_KEYS = ("bbox", "coil_bbox_px")
# shown in the defect table when any defect has one set: a defect classifier renamed a detector's defect
_RENAME_KEYS = ("detector_class", "detector_confidence", "classifier_confidence")
_PROVENANCE = (("model", "model"), ("model_source", "model source"), ("classifier", "defect classifier"),
               ("rules", "rules"), ("rules_version", "rules version"), ("steelscan_version", "steelscan"),
               ("written_at", "written (UTC)"))
_COIL_KEYS = (("coil_id", "coil id"), ("length_m", "length (m)"), ("strip_width_mm", "strip width (mm)"),
              ("surface_side", "surface side"), ("n_frames", "frames"),
              ("mm_per_px_across", "mm/px across"), ("mm_per_px_along", "mm/px along"))


def _atomic_write(path: Path, data: bytes | str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class _Html(str):
    """Markup made here from escaped parts: table cells take it as it is."""


def _esc(v) -> str:
    return v if isinstance(v, _Html) else html.escape(_fmt(v))


def _fmt(v) -> str:
    if isinstance(v, bool) or v is None:
        return "" if v is None else str(v)
    if isinstance(v, (float, np.floating)):
        return f"{float(v):.3f}".rstrip("0").rstrip(".") if math.isfinite(v) and abs(v) < 1e7 else f"{float(v):g}"
    if isinstance(v, (list, tuple)):
        return ", ".join(_fmt(x) for x in v)
    return str(v)


def _mpl(s: str) -> str:
    return str(s).replace("$", r"\$")  # a lone $ would start matplotlib mathtext and fail the render


def _json_default(o):
    return o.item() if isinstance(o, np.generic) else o.tolist() if isinstance(o, np.ndarray) else str(o)


def _cls(d: dict) -> str:
    return str(d.get("class", "?"))


def _label(cls) -> str:
    """'class 3' for a bare ClassId (Severstal), the name itself for a named class ('scratches')."""
    return f"class {cls}" if str(cls).isdigit() else str(cls)


def _swatch(cls: str, colours: dict) -> _Html:
    b, g, r = colours.get(cls, (128, 128, 128))
    return _Html(f'<i class="sw" style="background:#{r:02x}{g:02x}{b:02x}"></i>{html.escape(cls)}')


def _colours(defects: list[dict], periodic: list[dict], class_names: Sequence[str]) -> dict[str, tuple]:
    """Every class, the model's first: a stable colour each (`plots.class_colour` of its index), so overlays,
    reports and the dashboard agree. Classes the model does not name follow, in order of appearance."""
    names = dict.fromkeys([*map(str, class_names), *map(_cls, defects),
                           *(str(p.get("class_name", "?")) for p in periodic)])
    return {c: class_colour(i) for i, c in enumerate(names)}


def _rgb(bgr: tuple[int, int, int]) -> tuple[float, float, float]:
    return bgr[2] / 255, bgr[1] / 255, bgr[0] / 255


def _num(d: dict, key: str, default: float = 0.0) -> float:
    try:
        v = float(d.get(key, default))
        return v if math.isfinite(v) else default
    except (TypeError, ValueError):
        return default


def _coil_map(path: Path, coil: dict, defects: list[dict], periodic: list[dict], colours: dict) -> None:
    length = _num(coil, "length_m") or max((_num(d, "along_m") + _num(d, "length_mm") / 2000 for d in defects),
                                           default=1.0) or 1.0
    width = _num(coil, "strip_width_mm") or max((_num(d, "across_mm") + _num(d, "width_mm") / 2 for d in defects),
                                                default=1.0) or 1.0
    fig = Figure(figsize=(12, 3.8))
    ax = fig.add_subplot()
    ax.add_patch(Rectangle((0, 0), length, width, facecolor="#f2f2f2", edgecolor="#777", lw=1, zorder=0))
    for cls, bgr in colours.items():
        mine = [d for d in defects if _cls(d) == cls]
        if not mine:
            continue
        # true extent as rectangles; a dot at the centre too, since a 50 mm defect on a 1 km coil is sub-pixel
        rects = [Rectangle((_num(d, "along_m") - _num(d, "length_mm") / 2000, _num(d, "across_mm") - _num(d, "width_mm") / 2),
                           _num(d, "length_mm") / 1000, _num(d, "width_mm")) for d in mine]
        ax.add_collection(PatchCollection(rects, facecolor=_rgb(bgr), edgecolor=_rgb(bgr), alpha=0.5, zorder=2))
        ax.scatter([_num(d, "along_m") for d in mine], [_num(d, "across_mm") for d in mine], s=14, color=_rgb(bgr),
                   zorder=3, label=_mpl(f"{_label(cls)} ({len(mine)})"))
    by_id = {str(d.get("id")): d for d in defects}
    for i, p in enumerate(periodic):
        members = [by_id[str(k)] for k in p.get("defect_ids", []) if str(k) in by_id]
        xs = [_num(d, "along_m") for d in members] or [_num(p, "first_along_m")]
        ys = [_num(d, "across_mm") for d in members] or [_num(p, "across_mm")]
        ax.scatter(xs, ys, s=90, facecolors="none", edgecolors="black", linewidths=1.3, zorder=4,
                   label="periodic member" if i == 0 else None)
        y = _num(p, "across_mm", ys[0])
        ax.plot([min(xs), max(xs)], [y, y], ls="--", lw=0.8, color="black", zorder=1)
        ax.annotate(_mpl(f"{_label(p.get('class_name'))}: pitch {_num(p, 'pitch_m'):.3f} m"), (min(xs), y),
                    xytext=(4, 7), textcoords="offset points", fontsize=8, zorder=5)
    ax.set_xlim(0, length)
    ax.set_ylim(0, width)
    ax.set_xlabel("along the coil from the head (m)")
    ax.set_ylabel("across from left edge (mm)")
    ax.set_title(_mpl(f"coil {coil.get('coil_id', '?')}: {len(defects)} defects"))
    if defects or periodic:
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    fig.tight_layout()
    _save_fig(fig, path)


def _counts_png(path: Path, counts: dict[str, int], colours: dict) -> None:
    fig = Figure(figsize=(max(4.0, 1.0 + 0.8 * len(counts)), 3.2))
    ax = fig.add_subplot()
    bars = ax.bar(range(len(counts)), list(counts.values()), color=[_rgb(colours[c]) for c in counts])
    ax.bar_label(bars, fontsize=8)
    slant = any(len(c) > 8 for c in counts)  # NEU's long names would overlap side by side
    ax.set_xticks(range(len(counts)), [_mpl(c) for c in counts], rotation=30 * slant, ha="right" if slant else "center")
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("class")
    ax.set_ylabel("defects")
    ax.set_ylim(0, max(1, *counts.values()) * 1.15)
    fig.tight_layout()
    _save_fig(fig, path)


def _save_fig(fig: Figure, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    _atomic_write(path, buf.getvalue())


def _pick_gallery(defects: list[dict], n: int) -> list[dict]:
    """Half the places to the largest, the rest to the most confident (so small, sure defects show too)."""
    if n <= 0:
        return []
    area = sorted(range(len(defects)), key=lambda i: (-_num(defects[i], "area_mm2"), -_num(defects[i], "confidence"), i))
    conf = sorted(range(len(defects)), key=lambda i: (-_num(defects[i], "confidence"), -_num(defects[i], "area_mm2"), i))
    chosen: list[int] = []
    for i in area[: (n + 1) // 2] + conf:
        if len(chosen) >= n:
            break
        if i not in chosen:
            chosen.append(i)
    return sorted((defects[i] for i in chosen), key=lambda d: (_num(d, "along_m"), str(d.get("id"))))


def _crop(frame: np.ndarray, bbox, bgr) -> np.ndarray | None:
    img = np.asarray(frame)
    img = cv2.cvtColor(img.astype(np.uint8), cv2.COLOR_GRAY2BGR) if img.ndim == 2 else img[..., :3].astype(np.uint8)
    h, w = img.shape[:2]
    x1, y1, x2, y2 = (int(v) for v in bbox)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if x2 <= x1 or y2 <= y1:
        return None
    m = max(12, max(x2 - x1, y2 - y1) // 4)
    cx1, cy1, cx2, cy2 = max(0, x1 - m), max(0, y1 - m), min(w, x2 + m), min(h, y2 + m)
    crop = img[cy1:cy2, cx1:cx2]
    side = max(crop.shape[:2])
    s = 160 / side if side < 160 else (480 / side if side > 480 else 1.0)  # tiny: magnify; huge: keep thumbnails light
    if s != 1.0:
        size = (max(1, round(crop.shape[1] * s)), max(1, round(crop.shape[0] * s)))
        crop = cv2.resize(crop, size, interpolation=cv2.INTER_NEAREST if s > 1 else cv2.INTER_AREA)
    crop = np.ascontiguousarray(crop)
    p1 = (int((x1 - cx1) * s), int((y1 - cy1) * s))
    p2 = (max(p1[0], int((x2 - cx1) * s) - 1), max(p1[1], int((y2 - cy1) * s) - 1))  # x2/y2 are exclusive
    cv2.rectangle(crop, p1, p2, tuple(int(c) for c in bgr), 2)
    return crop


def defect_crop(frame: np.ndarray, bbox, class_name: str, class_names: Sequence[str] = ("1", "2", "3", "4")):
    """A defect's crop, its box drawn in its class colour as in the report's gallery (BGR uint8), or None."""
    return _crop(frame, bbox, _colours([{"class": class_name}], [], class_names)[str(class_name)])


def _gallery(out: Path, defects: list[dict], read_frame: Callable[[int], np.ndarray], colours: dict,
             max_gallery: int) -> list[tuple[dict, str]]:
    gdir = out / "gallery"
    gdir.mkdir(exist_ok=True)
    written: list[tuple[dict, str]] = []
    bad: set = set()
    cached: tuple = (None, None)  # picks run along the coil, so neighbours share a frame: keep the last one
    for d in _pick_gallery(defects, max_gallery):
        k = d.get("frame")
        if k in bad:
            continue
        try:  # a bad frame or box must cost its crops, never the report
            if cached[0] != k:
                cached = (k, read_frame(int(k)))
        except Exception as exc:  # noqa: BLE001
            log.warning("report: frame %s cannot be read (%s); its defects are left out of the gallery", k, exc)
            bad.add(k)
            continue
        try:
            crop = _crop(cached[1], d.get("bbox", (0, 0, 0, 0)), colours[_cls(d)])
        except Exception as exc:  # noqa: BLE001
            log.warning("report: defect %s cannot be cropped from frame %s (%s)", d.get("id"), k, exc)
            continue
        if crop is None:
            log.warning("report: defect %s: box %s is empty in frame %s", d.get("id"), d.get("bbox"), k)
            continue
        name = f"defect_{re.sub(r'[^A-Za-z0-9_-]', '_', str(d.get('id')))}.png"
        ok, png = cv2.imencode(".png", crop)
        if ok:
            _atomic_write(gdir / name, png.tobytes())
            written.append((d, f"gallery/{name}"))
    keep = {Path(rel).name for _, rel in written}
    for old in gdir.glob("defect_*.png"):  # crops of an earlier run into the same folder would mislead
        if old.name not in keep:
            old.unlink(missing_ok=True)
    return written


def _csv(defects: list[dict]) -> str:
    extra = [k for d in defects for k in d if k not in _DEFECT_KEYS]
    cols: list[str] = []
    for k in [*_DEFECT_KEYS, *extra]:
        new = [f"{k}_{c}" for c in ("x1", "y1", "x2", "y2")] if k in _BOX_KEYS else [k]
        cols += [c for c in new if c not in cols]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for d in defects:
        row = {}
        for k, v in d.items():
            if k in _BOX_KEYS and isinstance(v, (list, tuple)) and len(v) == 4:
                row.update({f"{k}_{c}": x for c, x in zip(("x1", "y1", "x2", "y2"), v)})
            elif k == "frames" and isinstance(v, (list, tuple)):
                row[k] = ";".join(str(x) for x in v)
            elif isinstance(v, (list, tuple, dict)):
                row[k] = json.dumps(v, default=_json_default)
            elif k not in _BOX_KEYS:
                row[k] = v
        w.writerow(row)
    return buf.getvalue()


def _table(header: Sequence[str], rows: list[Sequence]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(v)}</td>" for v in r) + "</tr>\n" for r in rows)
    return f"<table><tr>{head}</tr>\n{body}</table>"


_CSS = """body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0}
td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;font-size:13px}th{background:#eee}
.pass{color:#fff;background:#2a2;padding:1px 6px}.fail{color:#fff;background:#c22;padding:1px 6px}
.warn{background:#fff3cd;border:2px solid #d39e00;padding:.4em 1em;margin:.5em 0;font-weight:bold}
i.sw{display:inline-block;width:11px;height:11px;margin-right:5px;vertical-align:-1px}
.gallery{display:flex;flex-wrap:wrap;gap:10px}figure{margin:0;width:180px;font-size:12px}
figure img{max-width:180px;border:1px solid #999}img.plot{max-width:100%}"""


def write_report(out: Path, coil: dict, defects: list[dict], periodic: list[dict], grade: dict,
                 read_frame: Callable[[int], np.ndarray] | None = None, class_names: Sequence[str] = ("1", "2", "3", "4"),
                 max_gallery: int = 48, *, provenance: dict | None = None, warnings: Sequence[str] = ()) -> Path:
    """Write the coil report into `out` (created) and return the path of its report.html.

    provenance: what produced it, shown and kept in report.json: `model`, `model_source`, `classifier`
    (optional), `rules`, `rules_version`, `steelscan_version` (default: this one); other keys are shown too.
    warnings: lines shown prominently at the top, e.g. `ModelMeta.baseline_warning()`.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    colours = _colours(defects, periodic, class_names)
    counts = {c: 0 for c in colours}
    for d in defects:
        counts[_cls(d)] += 1
    prov = {"steelscan_version": __version__, **{k: v for k, v in (provenance or {}).items() if v not in (None, "")},
            "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    warnings = [str(w) for w in warnings if w]

    _coil_map(out / "coil_map.png", coil, defects, periodic, colours)
    _counts_png(out / "counts.png", counts, colours)
    shots = _gallery(out, defects, read_frame, colours, max_gallery) if read_frame is not None else []
    _atomic_write(out / "defects.csv", _csv(defects))
    _atomic_write(out / "report.json", json.dumps({"coil": coil, "grade": grade, "periodic": periodic,
                                                   "counts_by_class": counts, "defects": defects,
                                                   "provenance": prov, "warnings": warnings},
                                                  indent=1, default=_json_default) + "\n")

    coil_id = str(coil.get("coil_id", "?"))
    passed = bool(grade.get("passed"))
    verdict = f'<span class="{"pass" if passed else "fail"}">{"PASS" if passed else "FAIL"}</span>'
    warn_html = "".join(f'<p class="warn">Warning: {_esc(w)}</p>' for w in warnings)
    prov_rows = [(label, prov[k]) for k, label in _PROVENANCE if k in prov]
    prov_rows += [(k, v) for k, v in prov.items() if k not in dict(_PROVENANCE) and isinstance(v, (str, int, float))]
    summary = [(label, coil[k]) for k, label in _COIL_KEYS if k in coil]
    summary += [(k, v) for k, v in coil.items() if k not in dict(_COIL_KEYS) and isinstance(v, (str, int, float))]
    summary += [("defects", len(defects)), ("periodic findings", len(periodic))]
    rows, prov_html = ("".join(f"<tr><th>{html.escape(str(k))}</th><td>{_esc(v)}</td></tr>" for k, v in kv)
                       for kv in (summary, prov_rows))
    rows += f"<tr><th>grade</th><td>{_esc(grade.get('grade', '?'))} {verdict}</td></tr>"
    decided = "".join(f"<li>{_esc(line)}</li>" for line in grade.get("decided_by", []))
    per_class = grade.get("per_class") or {}
    pc_keys = list(dict.fromkeys(k for v in per_class.values() for k in v))
    pc_table = _table(["class", *pc_keys], [[_swatch(c, colours), *(v.get(k, "") for k in pc_keys)]
                                            for c, v in per_class.items()])
    per_m = _num(coil, "length_m")
    cnt_table = _table(["class", "count", "per m"] if per_m else ["class", "count"],
                       [[_swatch(c, colours), n, n / per_m] if per_m else [_swatch(c, colours), n]
                        for c, n in counts.items()])
    pkeys = ("pitch_m", "roll_diameter_m", "count", "across_mm", "first_along_m", "residual_mm", "missing",
             "defect_ids")
    per_html = ("<p>Defects of one class repeating at a fixed pitch along the coil, at one position across "
                "it: the marks of a roll (pitch = the roll's circumference).</p>" + _table(
                    ["class", "pitch (m)", "roll Ø (m)", "marks", "across (mm)", "first along (m)",
                     "residual (mm)", "missing marks", "defect ids"],
                    [[_swatch(str(p.get("class_name", "?")), colours), *(p.get(k, "") for k in pkeys)]
                     for p in periodic])) if periodic else "<p>none found</p>"
    figs = "".join(
        f'<figure><img src="{html.escape(rel)}" alt="defect {_esc(d.get("id"))}"><figcaption>#{_esc(d.get("id"))} '
        f'{_esc(_label(_cls(d)))}, conf {_num(d, "confidence"):.2f}<br>{_num(d, "along_m"):.3f} m, '
        f'{_num(d, "across_mm"):.1f} mm across<br>{_num(d, "length_mm"):.1f} x {_num(d, "width_mm"):.1f} mm, '
        f'{_num(d, "area_mm2"):.0f} mm²</figcaption></figure>' for d, rel in shots)
    if read_frame is None or not defects:
        gallery = "<p>no frames given: no gallery</p>" if defects else "<p>no defects</p>"
    else:
        lost = min(len(defects), max(0, max_gallery)) - len(shots)
        gallery = (f'<div class="gallery">{figs}</div><p>{len(shots)} of {len(defects)} defects shown, the largest '
                   "and the most confident" + (f"; {lost} could not be cropped (see the log)" if lost else "") + "</p>")
    renamed = [k for k in _RENAME_KEYS if any(d.get(k) is not None for d in defects)]
    tcols = ("id", "class", "confidence", *renamed, "along_m", "across_mm", "length_mm", "width_mm", "area_mm2",
             "frame", "bbox", "frames")
    dtable = _table(tcols, [[_swatch(_cls(d), colours) if k == "class" else d.get(k, "") for k in tcols]
                            for d in defects[:MAX_TABLE_ROWS]])
    if len(defects) > MAX_TABLE_ROWS:
        dtable += f"<p>showing the first {MAX_TABLE_ROWS} of {len(defects)} defects; all are in defects.csv</p>"
    title = f"Coil {html.escape(coil_id)}: inspection report"
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title><style>{_CSS}</style></head><body>
<h1>{title}</h1>
{warn_html}
<h2>Summary</h2><table>{rows}</table>
<h2>Produced by</h2><table>{prov_html}</table>
<h2>Grade: {_esc(grade.get('grade', '?'))} {verdict}</h2>
<p>product {_esc(grade.get('product', ''))}, score {_esc(grade.get('score', ''))}</p>
<p>decided by:</p><ul>{decided}</ul>
{pc_table if per_class else ''}
<h2>Coil map</h2><img class="plot" src="coil_map.png" alt="coil map">
<h2>Defects by class</h2>{cnt_table}<img class="plot" src="counts.png" alt="defect counts by class">
<h2>Periodic defects (roll marks)</h2>{per_html}
<h2>Gallery</h2>{gallery}
<h2>Defects ({len(defects)})</h2>{dtable}
<p>Machine-readable: <a href="defects.csv">defects.csv</a>, <a href="report.json">report.json</a></p>
</body></html>
"""
    path = out / "report.html"
    _atomic_write(path, page)
    return path
