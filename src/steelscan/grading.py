"""Grading: a pure function of a coil's defect list and a product's rules -> score, grade, pass/fail, and the
rules that decided it.

A rules file (YAML, one per product; see `steelscan/rules/default.yaml`, which documents every key, and
docs/rules.md):

- name, version: optional, for provenance (reports name the rules that graded a coil); `product` is shown
  with the grade.
- classes: per defect class name (as the model names its classes), a `severity` weight and optional
  limits: `max_area_mm2`, `max_length_mm` (along the coil), `max_width_mm` (across) of the largest single
  defect, `max_count_per_m` (defects per metre of coil), `max_density_per_m2` (defects per m² of strip).
  `default` applies to classes not listed; without it an unlisted class is an error.
- zones: regions where defects matter less: within `edge_mm` of either strip edge, or the first `head_m` /
  last `tail_m` metres of the coil. Each has a `factor` on the score and may exempt defects from limits.
- score: points per defect = severity x zone factor x (1 + area_mm2 / size_unit_mm2), summed and given
  per `per_length_m` metres of coil, so long and short coils compare.
- bands: grades by score, best first (`max_score` ascending); a broken limit sends the coil to
  `limit_grade`; `pass_grades` pass.

Defects are dicts as `steelscan inspect` writes them: class, along_m (from the head), across_mm (from the
left strip edge), area_mm2, and length_mm / width_mm where a rule limits them.

Shipped rules (`default_rules_for` picks one by the model's class names): default.yaml (Severstal ClassIds
'1'..'4'), neu.yaml (NEU's six classes), coil-demo.yaml (the synthetic coil's pits/line/scratch/patch) and
generic.yaml (a `default` entry only, for any other model). `check_rules_classes` refuses rules that name
a class the model does not know: a misspelt class fails when the station starts instead of never matching.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from steelscan.config import read_yaml_mapping
from steelscan.core.errors import ConfigError, DataError, SteelscanError

RULES_DIR = Path(__file__).parent / "rules"
DEFAULT_RULES = RULES_DIR / "default.yaml"
GENERIC_RULES = RULES_DIR / "generic.yaml"
# Tried in order by `default_rules_for`; generic.yaml is the fallback.
SHIPPED_RULES = (DEFAULT_RULES, RULES_DIR / "neu.yaml", RULES_DIR / "coil-demo.yaml")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClassRule(_Strict):
    severity: float = Field(1.0, ge=0)
    max_area_mm2: float | None = Field(None, gt=0)
    max_length_mm: float | None = Field(None, gt=0)  # the longest single defect, along the coil
    max_width_mm: float | None = Field(None, gt=0)  # the widest single defect, across the strip
    max_count_per_m: float | None = Field(None, ge=0)
    max_density_per_m2: float | None = Field(None, ge=0)


class Zone(_Strict):
    name: str
    edge_mm: float | None = Field(None, gt=0)
    head_m: float | None = Field(None, gt=0)
    tail_m: float | None = Field(None, gt=0)
    factor: float = Field(1.0, ge=0)
    exempt_from_limits: bool = False

    @model_validator(mode="after")
    def _one_region(self) -> Zone:
        if sum(v is not None for v in (self.edge_mm, self.head_m, self.tail_m)) != 1:
            raise ValueError(f"zone {self.name!r} needs exactly one of edge_mm, head_m, tail_m")
        return self


class Band(_Strict):
    grade: str
    max_score: float = Field(ge=0)


class Rules(_Strict):
    name: str | None = None
    version: int | str = 1
    product: str
    classes: dict[str, ClassRule]
    default: ClassRule | None = None
    zones: list[Zone] = []
    size_unit_mm2: float = Field(1000.0, gt=0)
    per_length_m: float = Field(100.0, gt=0)
    bands: list[Band]
    limit_grade: str = "reject"
    over_bands_grade: str = "reject"
    pass_grades: list[str]
    _source: str = PrivateAttr("(dict)")  # where it was read from; set by rules_from_dict, not a YAML key

    @property
    def source(self) -> str:
        return self._source

    @property
    def label(self) -> str:
        """How a report names these rules: name (or file name) and version."""
        return f"{self.name or Path(self._source).name} v{self.version}"

    @model_validator(mode="after")
    def _bands(self) -> Rules:
        if not self.bands:
            raise ValueError("bands must list at least one grade")
        scores = [b.max_score for b in self.bands]
        if scores != sorted(scores) or len(set(scores)) != len(scores):
            raise ValueError(f"bands must be ordered best first with rising max_score, got {scores}")
        known = {b.grade for b in self.bands} | {self.limit_grade, self.over_bands_grade}
        unknown = [g for g in self.pass_grades if g not in known]
        if unknown:
            raise ValueError(f"pass_grades {unknown} are not grades of the bands ({sorted(known)})")
        return self


def load_rules(path: str | Path | None = None) -> Rules:
    """Read and validate a rules file (default: the shipped one). Errors name the file and the key."""
    path = Path(path) if path is not None else DEFAULT_RULES
    return rules_from_dict(read_yaml_mapping(path, "rules"), str(path))


def rules_from_dict(tree: Any, source: str = "(dict)") -> Rules:
    if not isinstance(tree, dict):
        raise SteelscanError(f"rules {source} must be a mapping, got {type(tree).__name__}")
    try:
        rules = Rules.model_validate(tree)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                problems.append(f"unknown key '{key}'")
            elif err["type"] == "missing":
                problems.append(f"missing key '{key}'")
            else:
                problems.append(f"'{key}': {msg} (got {err.get('input')!r})" if key else msg)
        raise SteelscanError(f"invalid rules {source}: " + "; ".join(problems)) from None
    rules._source = source
    return rules


def check_rules_classes(rules: Rules, class_names: Sequence[str]) -> None:
    """Refuse rules that do not fit the model's classes: a rule naming a class the model does not know (a
    misspelling would never apply), or a class of the model with no rule and no `default` to take it."""
    known = [str(c) for c in class_names]
    unknown = [c for c in rules.classes if c not in known]
    if unknown:
        what = "class" if len(unknown) == 1 else "classes"
        raise ConfigError(f"rules file {rules.source} names {what} {', '.join(map(repr, unknown))}, which the model "
                          f"does not know; its classes: {', '.join(known)}")
    if rules.default is None:
        bare = [c for c in known if c not in rules.classes]
        if bare:
            raise ConfigError(f"rules file {rules.source} has no rule for the model's "
                              f"{'class' if len(bare) == 1 else 'classes'} {', '.join(map(repr, bare))} and no "
                              "`default` entry; add them or a default")


def default_rules_for(class_names: Sequence[str]) -> Path:
    """The shipped rules file whose classes are exactly the model's (in any order), else generic.yaml (a
    `default` entry only). Exactly, not a superset: `check_rules_classes` refuses rules naming unknown classes."""
    names = {str(c) for c in class_names}
    for path in SHIPPED_RULES:
        if set(load_rules(path).classes) == names:
            return path
    return GENERIC_RULES


@dataclass
class GradeResult:
    grade: str
    passed: bool
    score: float  # points per `per_length_m` metres
    decided_by: list[str]  # the rules that set the grade, in words
    per_class: dict[str, dict] = field(default_factory=dict)
    product: str = ""

    def as_dict(self) -> dict:
        return {"grade": self.grade, "passed": self.passed, "score": self.score, "decided_by": self.decided_by,
                "per_class": self.per_class, "product": self.product}


def _zones_of(d: dict, rules: Rules, length_m: float, width_mm: float) -> list[Zone]:
    across, along = float(d["across_mm"]), float(d["along_m"])
    out = []
    for z in rules.zones:
        if z.edge_mm is not None and min(across, width_mm - across) <= z.edge_mm:
            out.append(z)
        elif z.head_m is not None and along <= z.head_m:
            out.append(z)
        elif z.tail_m is not None and along >= length_m - z.tail_m:
            out.append(z)
    return out


def grade_coil(defects: Sequence[dict], length_m: float, width_mm: float, rules: Rules) -> GradeResult:
    """Score and grade one coil. Pure: the same defects and rules always give the same result."""
    if not (length_m > 0 and math.isfinite(length_m)) or not (width_mm > 0 and math.isfinite(width_mm)):
        raise SteelscanError(f"coil length and width must be positive, got {length_m} m x {width_mm} mm")
    area_m2 = length_m * width_mm / 1000.0
    stats: dict[str, dict] = {}
    breaks: list[str] = []
    total = 0.0
    for i, d in enumerate(defects):
        name = str(d["class"])
        rule = rules.classes.get(name, rules.default)
        if rule is None:
            raise SteelscanError(f"defect class {name!r} is not in the rules ({', '.join(rules.classes)}) "
                                 "and the rules have no default")
        zones = _zones_of(d, rules, length_m, width_mm)
        factor = min((z.factor for z in zones), default=1.0)
        exempt = any(z.exempt_from_limits for z in zones)
        area = float(d.get("area_mm2", 0.0))
        points = rule.severity * factor * (1.0 + area / rules.size_unit_mm2)
        total += points
        s = stats.setdefault(name, {"count": 0, "counted_for_limits": 0, "largest_area_mm2": 0.0, "points": 0.0})
        s["count"] += 1
        s["points"] += points
        # read even where a zone exempts the defect: a list lacking a needed size is wrong everywhere
        sizes = {key: _size(d, i, name, key, limit) for key, limit in
                 (("length_mm", rule.max_length_mm), ("width_mm", rule.max_width_mm)) if limit is not None}
        if not exempt:
            s["counted_for_limits"] += 1
            s["largest_area_mm2"] = max(s["largest_area_mm2"], area)
            for key, v in sizes.items():
                s[f"largest_{key}"] = max(s.get(f"largest_{key}", 0.0), v)
    for name, s in stats.items():
        rule = rules.classes.get(name, rules.default)
        s["count_per_m"] = s["counted_for_limits"] / length_m
        s["density_per_m2"] = s["counted_for_limits"] / area_m2
        if rule.max_area_mm2 is not None and s["largest_area_mm2"] > rule.max_area_mm2:
            breaks.append(f"class {name}: largest defect {s['largest_area_mm2']:.0f} mm² > limit {rule.max_area_mm2:g} mm²")
        if rule.max_length_mm is not None and s.get("largest_length_mm", 0.0) > rule.max_length_mm:
            breaks.append(f"class {name}: longest defect {s['largest_length_mm']:.0f} mm > limit "
                          f"{rule.max_length_mm:g} mm")
        if rule.max_width_mm is not None and s.get("largest_width_mm", 0.0) > rule.max_width_mm:
            breaks.append(f"class {name}: widest defect {s['largest_width_mm']:.0f} mm > limit "
                          f"{rule.max_width_mm:g} mm")
        if rule.max_count_per_m is not None and s["count_per_m"] > rule.max_count_per_m:
            breaks.append(f"class {name}: {s['count_per_m']:.3f} defects/m > limit {rule.max_count_per_m:g}/m")
        if rule.max_density_per_m2 is not None and s["density_per_m2"] > rule.max_density_per_m2:
            breaks.append(f"class {name}: {s['density_per_m2']:.4f} defects/m² > limit {rule.max_density_per_m2:g}/m²")
    score = total * rules.per_length_m / length_m
    if breaks:
        grade = rules.limit_grade
        decided = [*breaks, f"a broken limit grades the coil {grade}"]
    else:
        band = next((b for b in rules.bands if score <= b.max_score), None)
        grade = band.grade if band else rules.over_bands_grade
        where = f"<= {band.max_score:g}" if band else f"> {rules.bands[-1].max_score:g}, above every band"
        decided = [f"score {score:.2f} points per {rules.per_length_m:g} m {where}: grade {grade}"]
    return GradeResult(grade, grade in rules.pass_grades, round(score, 4), decided,
                       {k: {kk: round(v, 4) if isinstance(v, float) else v for kk, v in s.items()}
                        for k, s in sorted(stats.items())}, rules.product)


def _size(d: dict, i: int, name: str, key: str, limit: float) -> float:
    v = d.get(key)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        what = "max_length_mm" if key == "length_mm" else "max_width_mm"
        raise DataError(f"defect {i} (class {name!r}) lacks a numeric {key}, which the rule {what}: {limit:g} "
                        f"needs; got {v!r}")
    return float(v)


def read_defect_list(path: Path) -> tuple[dict, list[dict]]:
    """(coil, defects) from the JSON `steelscan inspect` writes: {"coil": {length_m, strip_width_mm, ...},
    "defects": [{class, along_m, across_mm, area_mm2, ...}, ...]}."""
    if not path.is_file():
        raise DataError(f"defect list not found: {path}")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path} is not JSON: {exc}") from None
    except OSError as exc:
        raise DataError(f"cannot read the defect list {path}: {exc.strerror or exc}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("coil"), dict) or not isinstance(doc.get("defects"), list):
        raise DataError(f"{path}: expected a JSON object with 'coil' (an object) and 'defects' (a list), as "
                        "`steelscan inspect` writes")
    coil = doc["coil"]
    for key in ("length_m", "strip_width_mm"):
        if not isinstance(coil.get(key), (int, float)):
            raise DataError(f"{path}: coil.{key} must be a number, got {coil.get(key)!r}")
    need = ("class", "along_m", "across_mm", "area_mm2")
    for i, d in enumerate(doc["defects"]):
        missing = [k for k in need if not isinstance(d, dict) or k not in d]
        if missing:
            raise DataError(f"{path}: defect {i} lacks {', '.join(missing)}")
        bad = [k for k in need[1:] if not isinstance(d[k], (int, float))]
        if bad:
            raise DataError(f"{path}: defect {i}: {', '.join(bad)} must be numbers")
    return coil, doc["defects"]
