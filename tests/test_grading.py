"""Grading on hand-made defect lists: scores, bands, limits, zones, and precise errors for bad rules; rules
checked against a model's classes, and the shipped rules files picked by class names."""

from __future__ import annotations

import json

import pytest
import yaml

from steelscan.cli import main
from steelscan.core.errors import ConfigError, DataError, SteelscanError
from steelscan.data.classes import NEU_CLASSES
from steelscan.data.synthetic.coil import CLASS_NAMES as COIL_CLASSES
from steelscan.grading import (
    DEFAULT_RULES,
    GENERIC_RULES,
    RULES_DIR,
    check_rules_classes,
    default_rules_for,
    grade_coil,
    load_rules,
    rules_from_dict,
)

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


def sized(cls: str, along: float, across: float, length: float, width: float) -> dict:
    return {**d(cls, along, across, 1000), "length_mm": length, "width_mm": width}


LW_RULES = {**RULES, "classes": {**RULES["classes"], "3": {"severity": 2.0, "max_length_mm": 500, "max_width_mm": 40}}}


def test_length_and_width_limits():
    rules = rules_from_dict(LW_RULES)
    at_limit = grade_coil([sized("3", 50, 600, 500, 40)], 100, 1200, rules)
    assert at_limit.grade == "A" and at_limit.per_class["3"]["largest_length_mm"] == 500
    long = grade_coil([sized("3", 50, 600, 620, 10), sized("3", 60, 600, 100, 10)], 100, 1200, rules)
    assert long.grade == "reject" and long.decided_by[0] == "class 3: longest defect 620 mm > limit 500 mm"
    wide = grade_coil([sized("3", 50, 600, 100, 45)], 100, 1200, rules)
    assert wide.grade == "reject" and wide.decided_by[0] == "class 3: widest defect 45 mm > limit 40 mm"
    assert not any("longest" in s for s in wide.decided_by)
    # the edge zone exempts from these limits as from the others
    edge = grade_coil([sized("3", 50, 30, 900, 90)], 100, 1200, rules)
    assert edge.grade == "A" and "largest_length_mm" not in edge.per_class["3"]


def test_a_defect_lacking_a_size_a_rule_needs_is_a_clear_error():
    rules = rules_from_dict(LW_RULES)
    with pytest.raises(DataError) as exc:
        grade_coil([sized("3", 50, 600, 100, 10), d("3", 60, 600, 10)], 100, 1200, rules)
    assert str(exc.value) == ("defect 1 (class '3') lacks a numeric length_mm, which the rule max_length_mm: 500 "
                              "needs; got None")
    with pytest.raises(DataError, match="lacks a numeric width_mm, which the rule max_width_mm: 40 needs; got 'wide'"):
        grade_coil([{**sized("3", 50, 600, 100, 10), "width_mm": "wide"}], 100, 1200, rules)
    # in an exempt zone too: the list is wrong wherever the defect lies
    with pytest.raises(DataError, match="lacks a numeric length_mm"):
        grade_coil([d("3", 50, 30, 10)], 100, 1200, rules)
    # a class whose rule limits no size needs none
    assert grade_coil([d("4", 50, 600, 10)], 100, 1200, rules).grade == "A"


def test_rules_naming_a_class_the_model_does_not_know_are_refused():
    severstal = load_rules()
    check_rules_classes(severstal, ["1", "2", "3", "4"])
    with pytest.raises(ConfigError) as exc:
        check_rules_classes(severstal, COIL_CLASSES)
    assert str(exc.value) == (f"rules file {DEFAULT_RULES} names classes '1', '2', '3', '4', which the model does "
                              "not know; its classes: pits, line, scratch, patch")
    with pytest.raises(ConfigError) as exc:
        check_rules_classes(rules_from_dict({**RULES, "default": {"severity": 1}}, "r.yaml"), ["3", "scratch"])
    assert str(exc.value) == "rules file r.yaml names class '4', which the model does not know; its classes: 3, scratch"
    assert "\n" not in str(exc.value)
    # `default` is not a class; without it, a class of the model that no rule names is refused as well
    check_rules_classes(rules_from_dict({**RULES, "default": {"severity": 1}}), ["3", "4", "9"])
    with pytest.raises(ConfigError, match="no rule for the model's class '9' and no `default` entry"):
        check_rules_classes(rules_from_dict(RULES), ["3", "4", "9"])


def test_default_rules_for_picks_the_file_of_the_model_classes():
    assert default_rules_for(NEU_CLASSES) == RULES_DIR / "neu.yaml"
    assert default_rules_for(list(reversed(NEU_CLASSES))) == RULES_DIR / "neu.yaml"  # order does not matter
    assert default_rules_for(("1", "2", "3", "4")) == DEFAULT_RULES
    assert default_rules_for(COIL_CLASSES) == RULES_DIR / "coil-demo.yaml"
    # no shipped file has exactly these classes: the generic one, a `default` entry only
    for names in (("clean", "defect"), NEU_CLASSES[:3], (*NEU_CLASSES, "stain")):
        assert default_rules_for(names) == GENERIC_RULES
    generic = load_rules(GENERIC_RULES)
    assert generic.classes == {} and generic.default is not None
    check_rules_classes(generic, ("clean", "defect"))


def _shipped_model_classes(name: str) -> tuple[str, ...]:
    from steelscan.engine.runs import read_checkpoint, resolve_model

    return read_checkpoint(resolve_model(name), mmap=True)[1].class_names


@pytest.mark.parametrize("path", sorted(RULES_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_rules_file_loads_and_fits_its_models(path):
    expected = {"default.yaml": lambda: _shipped_model_classes("severstal"),
                "neu.yaml": lambda: _shipped_model_classes("neu-det"),
                "coil-demo.yaml": lambda: COIL_CLASSES, "generic.yaml": lambda: ()}
    assert path.name in expected, f"a new shipped rules file {path.name}: add the classes it is for here"
    classes = expected[path.name]()
    rules = load_rules(path)
    assert set(rules.classes) == set(classes)
    assert rules.name and rules.version and rules.source == str(path)
    check_rules_classes(rules, classes or ("anything",))
    assert default_rules_for(classes or ("anything",)) == path
    if path.name == "neu.yaml":
        assert rules.classes["scratches"].max_length_mm and rules.classes["scratches"].max_width_mm


def test_rules_carry_name_version_and_source(tmp_path):
    tree = {**RULES, "name": "strip-x", "version": "2024.2"}
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(tree))
    rules = load_rules(tmp_path / "x.yaml")
    assert (rules.name, rules.version, rules.source) == ("strip-x", "2024.2", str(tmp_path / "x.yaml"))
    assert rules.label == "strip-x v2024.2"
    bare = rules_from_dict(RULES)
    assert (bare.name, bare.version, bare.source, bare.label) == (None, 1, "(dict)", "(dict) v1")
    with pytest.raises(SteelscanError, match="unknown key 'source'"):  # set by loading, not by the file
        rules_from_dict({**RULES, "source": "elsewhere"})


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
    ({"classes": {"3": {"max_length_mm": 0}}}, "'classes.3.max_length_mm'"),
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
