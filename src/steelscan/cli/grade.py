"""`steelscan grade DEFECTS.json [--rules RULES.yaml] [--json OUT]`: grade a coil's defect list."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table


def print_grade(result, console: Console) -> None:
    colour = "green" if result.passed else "red"
    table = Table("class", "count", "largest mm²", "per m", "per m²", "points", title=f"grading: {result.product}")
    for name, s in result.per_class.items():
        table.add_row(name, str(s["count"]), f"{s['largest_area_mm2']:.0f}", f"{s['count_per_m']:.3f}",
                      f"{s['density_per_m2']:.4f}", f"{s['points']:.1f}")
    console.print(table)
    console.print(f"[bold {colour}]grade {result.grade} ({'PASS' if result.passed else 'FAIL'})[/], "
                  f"score {result.score:.2f}")
    for line in result.decided_by:
        console.print(f"  decided by: {line}")


def command(
    defects: Path = typer.Argument(..., help="defects.json as `steelscan inspect` writes it"),
    rules: Path = typer.Option(None, "--rules", help="Rules YAML of the product (default: the rules the inspection "
                               "graded with, as defects.json names them, else the shipped Severstal example)"),
    json_out: Path = typer.Option(None, "--json", help="Write the grade as JSON here"),
) -> None:
    """Grade a coil from its defect list: score, grade, pass/fail and the rules that decided it."""
    from steelscan.grading import grade_coil, load_rules, read_defect_list

    if rules is not None:
        load_rules(rules)  # a bad rules file fails before the defect list is read
    coil, items = read_defect_list(defects)
    if rules is None:  # read_defect_list has checked the file is a JSON object
        made_by = json.loads(Path(defects).read_text()).get("produced_by")
        used = made_by.get("rules_file") if isinstance(made_by, dict) else None
        rules = Path(used) if isinstance(used, str) and Path(used).is_file() else None
    rule_set = load_rules(rules)
    result = grade_coil(items, float(coil["length_m"]), float(coil["strip_width_mm"]), rule_set)
    print_grade(result, Console())
    if json_out:
        Path(json_out).write_text(json.dumps(result.as_dict(), indent=2))
