"""The coil report: files, HTML content and escaping, CSV/JSON round trips, clean coils, unreadable frames;
class names and colours, what produced the report, warnings, periodic findings, renamed defects."""

from __future__ import annotations

import csv
import html
import json
import re
from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np
import pytest

import steelscan
from steelscan.data.classes import NEU_CLASSES
from steelscan.plots import class_colour
from steelscan.report import write_report

H, W = 64, 256
FRAMES = np.random.default_rng(0).integers(0, 256, (3, H, W), dtype=np.uint8)
COIL = {"coil_id": "C-0042", "length_m": 2.0, "strip_width_mm": 1200.0, "surface_side": "top", "n_frames": 3,
        "mm_per_px_across": 4.7, "mm_per_px_along": 4.0, "seed": 7}
GRADE = {"grade": "B", "passed": True, "score": 3.25, "product": "demo",
         "decided_by": ["score 3.25 points per 100 m <= 5: grade B", "class 3: 2 defects & one <odd> line"],
         "per_class": {"3": {"count": 2, "points": 2.1}}}


def _defect(i, cls, frame, bbox, conf=0.8, along=0.5):
    x1, y1, x2, y2 = bbox
    return {"id": i, "class": cls, "confidence": conf, "along_m": along, "across_mm": (x1 + x2) / 2 * 4.7,
            "length_mm": (y2 - y1) * 4.0, "width_mm": (x2 - x1) * 4.7, "area_mm2": (y2 - y1) * 4.0 * (x2 - x1) * 4.7,
            "frame": frame, "bbox": list(bbox), "coil_bbox_px": [x1, y1 + 50 * frame, x2, y2 + 50 * frame],
            "area_px": (y2 - y1) * (x2 - x1), "frames": [frame]}


DEFECTS = [_defect(0, "1", 0, (10, 5, 30, 20), 0.9, 0.1), _defect(1, "3", 1, (100, 0, 140, 64), 0.7, 0.8),
           _defect(2, "3", 2, (200, 10, 204, 13), 0.95, 1.6), _defect(3, "4", 2, (240, 40, 256, 64), 0.6, 1.7)]
PERIODIC = [{"class_name": "3", "pitch_m": 0.8123, "roll_diameter_m": 0.2586, "count": 2, "across_mm": 564.0,
             "first_along_m": 0.8, "defect_ids": [1, 2], "residual_mm": 1.5, "missing": 0}]


def _read(k):
    return FRAMES[k]


def _img_srcs(page):
    return re.findall(r'<img[^>]*\ssrc="([^"]+)"', page)


def test_full_report(tmp_path):
    out = tmp_path / "rep"
    path = write_report(out, COIL, DEFECTS, PERIODIC, GRADE, read_frame=_read)
    assert path == out / "report.html"
    for name in ("report.html", "coil_map.png", "counts.png", "defects.csv", "report.json"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    for d in DEFECTS:
        crop = cv2.imread(str(out / "gallery" / f"defect_{d['id']}.png"))
        assert crop is not None and max(crop.shape[:2]) >= 160  # tiny defects are magnified
    assert not list(out.glob(".*.tmp")) and not list((out / "gallery").glob(".*.tmp"))

    page = path.read_text()
    assert "C-0042" in page and "<title>" in page
    assert ">B " in page and "PASS" in page and "FAIL" not in page
    for line in GRADE["decided_by"]:
        assert html.escape(line) in page
    assert "<odd>" not in page
    assert "0.812" in page  # the pitch
    srcs = _img_srcs(page)
    assert "coil_map.png" in srcs and "counts.png" in srcs and len(srcs) == 2 + len(DEFECTS)
    for src in srcs:
        assert (out / src).is_file(), src
    assert "http" not in page and "<script" not in page

    with open(out / "defects.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["id"]) for r in rows] == [d["id"] for d in DEFECTS]
    assert [int(rows[1][f"bbox_{c}"]) for c in ("x1", "y1", "x2", "y2")] == DEFECTS[1]["bbox"]
    assert rows[1]["class"] == "3" and float(rows[2]["confidence"]) == pytest.approx(0.95)
    assert "coil_bbox_px_y2" in rows[0] and "bbox" not in rows[0]

    rep = json.loads((out / "report.json").read_text())
    assert set(rep) == {"coil", "grade", "periodic", "counts_by_class", "defects", "provenance", "warnings"}
    assert rep["counts_by_class"] == {"1": 1, "2": 0, "3": 2, "4": 1}
    assert rep["defects"] == DEFECTS and rep["periodic"] == PERIODIC and rep["coil"]["coil_id"] == "C-0042"


def test_clean_coil_and_failing_grade(tmp_path):
    grade = {**GRADE, "grade": "reject", "passed": False, "decided_by": ["class 1: limit broken"]}
    path = write_report(tmp_path, COIL, [], [], grade, read_frame=_read)
    page = path.read_text()
    assert "FAIL" in page and "none found" in page and "class 1: limit broken" in page
    for src in _img_srcs(page):
        assert (tmp_path / src).is_file()
    with open(tmp_path / "defects.csv", newline="") as f:
        assert list(csv.DictReader(f)) == []
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["defects"] == [] and sum(rep["counts_by_class"].values()) == 0
    assert not list(tmp_path.rglob("defect_*.png"))


def test_unreadable_frame_is_skipped(tmp_path, caplog):
    def read(k):
        if k == 2:
            raise OSError("frame 2 corrupt")
        return FRAMES[k]

    path = write_report(tmp_path, COIL, DEFECTS, PERIODIC, GRADE, read_frame=read)
    gallery = tmp_path / "gallery"
    assert sorted(p.name for p in gallery.glob("*.png")) == ["defect_0.png", "defect_1.png"]
    assert "frame 2 cannot be read" in caplog.text
    page = path.read_text()
    assert "2 could not be cropped" in page
    for src in _img_srcs(page):
        assert (tmp_path / src).is_file()
    # a later run into the same folder keeps only its own crops
    write_report(tmp_path, COIL, DEFECTS, PERIODIC, GRADE, read_frame=_read, max_gallery=1)
    assert len(list(gallery.glob("*.png"))) == 1


def test_text_is_escaped(tmp_path):
    evil = "<script>alert(1)</script>"
    coil = {**COIL, "coil_id": evil}
    defects = [{**DEFECTS[0], "class": evil}, DEFECTS[1]]
    periodic = [{**PERIODIC[0], "class_name": evil, "defect_ids": [0]}]
    path = write_report(tmp_path, coil, defects, periodic, GRADE, read_frame=_read, class_names=("1", "2", "3", "4"))
    page = path.read_text()
    assert "<script" not in page
    assert html.escape(evil) in page
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["counts_by_class"][evil] == 1 and rep["coil"]["coil_id"] == evil


def test_no_reader_no_gallery(tmp_path):
    page = write_report(tmp_path, COIL, DEFECTS, [], GRADE).read_text()
    assert _img_srcs(page) == ["coil_map.png", "counts.png"]
    assert "none found" in page


def test_gallery_picks_largest_and_most_confident(tmp_path):
    write_report(tmp_path, COIL, DEFECTS, [], GRADE, read_frame=_read, max_gallery=2)
    # defect 1 has the largest area, defect 2 the highest confidence (and a tiny box)
    assert sorted(p.name for p in (tmp_path / "gallery").glob("*.png")) == ["defect_1.png", "defect_2.png"]


def test_long_defect_table_is_truncated(tmp_path, monkeypatch):
    import steelscan.report as report

    monkeypatch.setattr(report, "MAX_TABLE_ROWS", 2)
    page = write_report(tmp_path, COIL, DEFECTS, [], GRADE).read_text()
    assert "showing the first 2 of 4 defects" in page
    table = page.split("<h2>Defects (4)</h2>")[1]
    assert table.count("<tr><td>") == 2
    with open(tmp_path / "defects.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 4


def _hex(k: int) -> str:
    b, g, r = class_colour(k)
    return f"#{r:02x}{g:02x}{b:02x}"


def _section(page: str, heading: str) -> str:
    return page.split(f"<h2>{heading}")[1].split("<h2>")[0]


def test_class_names_and_their_colours(tmp_path):
    names = {"1": "crazing", "3": "scratches", "4": "inclusion"}
    defects = [{**d, "class": names[d["class"]]} for d in DEFECTS]
    periodic = [{**PERIODIC[0], "class_name": "scratches"}]
    page = write_report(tmp_path, COIL, defects, periodic, GRADE, _read, NEU_CLASSES).read_text()  # positional
    # each class in its plots.class_colour, by its index in the model's classes
    for name in ("crazing", "scratches", "inclusion"):
        swatch = f'<i class="sw" style="background:{_hex(NEU_CLASSES.index(name))}"></i>{name}'
        assert swatch in _section(page, "Defects by class") and swatch in _section(page, "Defects (4)")
    assert f'background:{_hex(NEU_CLASSES.index("scratches"))}"></i>scratches' in _section(page, "Periodic")
    # named classes are shown by their names, not as "class N"
    assert "#1 scratches, conf 0.70" in page and not re.search(r"class \d", _section(page, "Gallery"))
    rep = json.loads((tmp_path / "report.json").read_text())
    assert list(rep["counts_by_class"]) == list(NEU_CLASSES) and rep["counts_by_class"]["scratches"] == 2
    # bare Severstal ClassIds read as "class 3"
    page = write_report(tmp_path / "s", COIL, DEFECTS, [], GRADE, _read).read_text()
    assert "#1 class 3, conf 0.70" in page and f'background:{_hex(2)}"></i>3' in page


def test_provenance_and_warnings(tmp_path):
    before = datetime.now(timezone.utc).replace(microsecond=0)
    prov = {"model": "unet_x", "model_source": "runs/seg-7/model.onnx", "classifier": None, "rules": "neu-hot-rolled",
            "rules_version": 3, "site": "<line 2>"}
    warning = "model unet_x scored Kaggle Dice 0.8 on its validation data, no better than predicting no defects <0.86>"
    page = write_report(tmp_path, COIL, DEFECTS, PERIODIC, GRADE, _read, provenance=prov,
                        warnings=[warning]).read_text()
    produced = _section(page, "Produced by")
    for label, value in (("model", "unet_x"), ("model source", "runs/seg-7/model.onnx"), ("rules", "neu-hot-rolled"),
                         ("rules version", "3"), ("steelscan", steelscan.__version__), ("site", "&lt;line 2&gt;")):
        assert f"<tr><th>{label}</th><td>{value}</td></tr>" in produced, label
    assert "defect classifier" not in produced  # not given: not shown
    written = re.search(r"<th>written \(UTC\)</th><td>([^<]+)</td>", produced).group(1)
    assert before <= datetime.fromisoformat(written) <= datetime.now(timezone.utc) and written.endswith("+00:00")
    # the warning comes first, above the summary, escaped
    warn = page.index('<p class="warn">Warning: ' + html.escape(warning) + "</p>")
    assert warn < page.index("<h2>Summary") and "<0.86>" not in page
    rep = json.loads((tmp_path / "report.json").read_text())
    assert rep["warnings"] == [warning] and rep["provenance"]["model"] == "unet_x"
    assert rep["provenance"]["steelscan_version"] == steelscan.__version__ and "classifier" not in rep["provenance"]
    # without either: the version and the time still, and no warning box
    page = write_report(tmp_path / "b", COIL, DEFECTS, [], GRADE).read_text()
    assert 'class="warn"' not in page and f"<th>steelscan</th><td>{steelscan.__version__}</td>" in page


def test_periodic_findings_are_listed(tmp_path):
    page = write_report(tmp_path, COIL, DEFECTS, PERIODIC, GRADE, _read).read_text()
    periodic = _section(page, "Periodic defects (roll marks)")
    assert "<th>class</th><th>pitch (m)</th><th>roll Ø (m)</th><th>marks</th><th>across (mm)</th>" in periodic
    assert f'{_hex(2)}"></i>3</td><td>0.812</td><td>0.259</td><td>2</td><td>564</td>' in periodic
    assert "the marks of a roll" in periodic


def test_renamed_defects_show_detector_and_classifier(tmp_path):
    renamed = {**DEFECTS[1], "class": "4", "detector_class": "3", "detector_confidence": 0.55,
               "classifier_confidence": 0.91}
    page = write_report(tmp_path, COIL, [DEFECTS[0], renamed], [], GRADE).read_text()
    table = _section(page, "Defects (2)")
    assert "<th>detector_class</th><th>detector_confidence</th><th>classifier_confidence</th>" in table
    assert "</i>4</td><td>0.7</td><td>3</td><td>0.55</td><td>0.91</td>" in table
    assert "<td>0.9</td><td></td><td></td><td></td>" in table  # the defect the classifier left alone
    # none renamed (the keys present but unset, as the records write them): no such columns
    unset = [{**d, "detector_class": None, "classifier_confidence": None} for d in DEFECTS]
    page = write_report(tmp_path / "plain", COIL, unset, [], GRADE).read_text()
    assert "detector_class" not in _section(page, "Defects (4)")


def test_dashboard_colours_classes_as_the_report_and_writes_no_markup():
    js = (Path(steelscan.__file__).parent / "service" / "static" / "app.js").read_text()
    palette = re.search(r"const PALETTE = \[([^\]]+)\]", js).group(1)
    assert re.findall(r'"(#[0-9a-f]{6})"', palette) == [_hex(k) for k in range(10)]  # plots.class_colour's table
    # XSS: data reaches the page as text only
    assert "innerHTML" not in js and "insertAdjacentHTML" not in js and "document.write" not in js
