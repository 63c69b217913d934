"""Grading: a pure function of a coil's defect list and a product's rules -> score, grade, pass/fail, and the
rules that decided it.

A rules file (YAML, one per product; see `steelscan/rules/default.yaml`, which documents every key):

- classes: per defect class name, a `severity` weight and optional limits: `max_area_mm2` (the largest
  single defect), `max_count_per_m` (defects per metre of coil), `max_density_per_m2` (defects per m² of
  strip). `default` applies to classes not listed; without it an unlisted class is an error.
- zones: regions where defects matter less: within `edge_mm` of either strip edge, or the first `head_m` /
  last `tail_m` metres of the coil. Each has a `factor` on the score and may exempt defects from limits.
- score: points per defect = severity x zone factor x (1 + area_mm2 / size_unit_mm2), summed and given
  per `per_length_m` metres of coil, so long and short coils compare.
- bands: grades by score, best first (`max_score` ascending); a broken limit sends the coil to
  `limit_grade`; `pass_grades` pass.

Defects are dicts as `steelscan inspect` writes them: class, along_m (from the head), across_mm (from the
left strip edge), area_mm2 (length_mm and width_mm are not needed here).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from steelscan.config import read_yaml_mapping
from steelscan.core.errors import DataError, SteelscanError

DEFAULT_RULES = Path(__file__).parent / "rules" / "default.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClassRule(_Strict):
    severity: float = Field(1.0, ge=0)
    max_area_mm2: float | None = Field(None, gt=0)
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
    product: str
    version: int = 1
    classes: dict[str, ClassRule]
    default: ClassRule | None = None
    zones: list[Zone] = []
    size_unit_mm2: float = Field(1000.0, gt=0)
    per_length_m: float = Field(100.0, gt=0)
    bands: list[Band]
    limit_grade: str = "reject"
    over_bands_grade: str = "reject"
    pass_grades: list[str]

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
        return Rules.model_validate(tree)
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
    for d in defects:
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
        if not exempt:
            s["counted_for_limits"] += 1
            s["largest_area_mm2"] = max(s["largest_area_mm2"], area)
    for name, s in stats.items():
        rule = rules.classes.get(name, rules.default)
        s["count_per_m"] = s["counted_for_limits"] / length_m
        s["density_per_m2"] = s["counted_for_limits"] / area_m2
        if rule.max_area_mm2 is not None and s["largest_area_mm2"] > rule.max_area_mm2:
            breaks.append(f"class {name}: largest defect {s['largest_area_mm2']:.0f} mm² > limit {rule.max_area_mm2:g} mm²")
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
