"""Grading on hand-made defect lists: scores, bands, limits, zones, and precise errors for bad rules."""

from __future__ import annotations

import json

import pytest
import yaml

from steelscan.cli import main
from steelscan.core.errors import SteelscanError
from steelscan.grading import DEFAULT_RULES, grade_coil, load_rules, rules_from_dict

RULES = {
    "product": "test strip",
    "classes": {"3": {"severity": 2.0, "max_area_mm2": 5000, "max_count_per_m": 0.1},
                "4": {"severity": 1.0, "max_density_per_m2": 0.05}},
    "zones": [{"name": "edge", "edge_mm": 50, "factor": 0.0, "exempt_from_limits": True},
              {"name": "head", "head_m": 1, "factor": 0.5}],
    "size_unit_mm2": 1000,
    "per_length_m": 100,
    "bands": [{"grade": "A", "max_score": 10}, {"grade": "B", "max_score": 30}],
    "pass_grades": ["A", "B"],
}


def d(cls: str, along: float, across: float, area: float) -> dict:
    return {"class": cls, "along_m": along, "across_mm": across, "area_mm2": area}


def test_score_and_bands_by_hand():
    rules = rules_from_dict(RULES)
    # class 3, 1000 mm², mid-strip: 2 x 1 x (1 + 1) = 4 points; on a 100 m coil: 4 per 100 m -> A
    r = grade_coil([d("3", 50, 600, 1000)], 100, 1200, rules)
    assert (r.grade, r.passed, r.score) == ("A", True, 4.0)
    assert r.decided_by == ["score 4.00 points per 100 m <= 10: grade A"]
    # five such defects on a 100 m coil: 20 points -> B (count 0.05/m is within the 0.1/m limit)
    r = grade_coil([d("3", 10 * i + 5, 600, 1000) for i in range(5)], 100, 1200, rules)
    assert (r.grade, r.score) == ("B", 20.0) and r.per_class["3"]["count_per_m"] == 0.05
    # the same five on a 200 m coil: half the score per 100 m
    assert grade_coil([d("3", 10 * i + 5, 600, 1000) for i in range(5)], 200, 1200, rules).score == 10.0
    # above every band
    r = grade_coil([d("4", 10 * i + 5, 600, 9000) for i in range(4)], 100, 1200, rules)
    assert (r.grade, r.passed, r.score) == ("reject", False, 40.0) and "above every band" in r.decided_by[0]


def test_limits_decide_and_are_listed():
    rules = rules_from_dict(RULES)
    r = grade_coil([d("3", 50, 600, 6000)], 100, 1200, rules)
    assert r.grade == "reject" and not r.passed
    assert r.decided_by[0] == "class 3: largest defect 6000 mm² > limit 5000 mm²"
    many = [d("3", i + 5, 600, 10) for i in range(11)]  # 11 on 100 m = 0.11/m > 0.1/m
    r = grade_coil(many, 100, 1200, rules)
    assert r.grade == "reject" and any("0.110 defects/m > limit 0.1/m" in s for s in r.decided_by)
    dense = [d("4", i * 10 + 5, 600, 10) for i in range(7)]  # 7 / (100 m x 1.2 m) = 0.0583/m² > 0.05
    assert any("defects/m² > limit 0.05/m²" in s for s in grade_coil(dense, 100, 1200, rules).decided_by)


def test_zones_reduce_points_and_exempt_from_limits():
    rules = rules_from_dict(RULES)
    edge = grade_coil([d("3", 50, 30, 6000), d("3", 50, 1180, 6000)], 100, 1200, rules)  # both within 50 mm
    assert edge.grade == "A" and edge.score == 0.0 and edge.per_class["3"]["counted_for_limits"] == 0
    head = grade_coil([d("3", 0.5, 600, 1000)], 100, 1200, rules)  # head zone: factor 0.5
    assert head.score == 2.0


def test_unknown_class_without_default_is_an_error_and_default_applies():
    with pytest.raises(SteelscanError, match="defect class '9' is not in the rules"):
        grade_coil([d("9", 1, 600, 10)], 100, 1200, rules_from_dict(RULES))
    r = grade_coil([d("9", 50, 600, 0)], 100, 1200, rules_from_dict({**RULES, "default": {"severity": 3}}))
    assert r.score == 3.0


@pytest.mark.parametrize("change,message", [
    ({"bands": [{"grade": "A", "max_score": 30}, {"grade": "B", "max_score": 10}]}, "ordered best first"),
    ({"pass_grades": ["Z"]}, "pass_grades ['Z'] are not grades"),
    ({"zones": [{"name": "x", "edge_mm": 5, "head_m": 1}]}, "exactly one of edge_mm, head_m, tail_m"),
    ({"classes": {"3": {"severity": -1}}}, "'classes.3.severity'"),
    ({"classes": {"3": {"max_area": 5}}}, "unknown key 'classes.3.max_area'"),
    ({"bands": None}, "'bands'"),
])
def test_invalid_rules_get_precise_errors(change, message):
    with pytest.raises(SteelscanError, match="invalid rules") as exc:
        rules_from_dict({**RULES, **change})
    assert message in str(exc.value)


def test_default_rules_load_and_bad_coil_geometry():
    rules = load_rules()
    assert rules.pass_grades and "3" in rules.classes and DEFAULT_RULES.is_file()
    with pytest.raises(SteelscanError, match="must be positive"):
        grade_coil([], 0, 1200, rules)


def test_grade_command(tmp_path, capsys):
    doc = {"coil": {"coil_id": "C1", "length_m": 100, "strip_width_mm": 1200}, "defects": [d("3", 50, 600, 6000)]}
    (tmp_path / "defects.json").write_text(json.dumps(doc))
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(RULES))
    out = tmp_path / "grade.json"
    assert main(["grade", str(tmp_path / "defects.json"), "--rules", str(tmp_path / "rules.yaml"),
                 "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "grade reject (FAIL)" in text and "largest defect 6000 mm² > limit 5000 mm²" in text
    assert json.loads(out.read_text())["grade"] == "reject"
    (tmp_path / "bad.json").write_text(json.dumps({"coil": {"length_m": 100}, "defects": []}))
    assert main(["grade", str(tmp_path / "bad.json")]) == 2
    assert "coil.strip_width_mm must be a number" in capsys.readouterr().err
