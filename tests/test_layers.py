"""The package's layers import one way (data -> engine -> tasks -> deploy -> station -> cli/service), with no
import cycles between modules at import time (imports inside functions are deferred and not counted)."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "steelscan"

# A module of a layer may import its own layer and the layers listed for it, never one further down the flow.
ALLOWED = {
    "core": set(),
    "data": {"core"},
    "metrics": {"core"},
    "losses": {"core"},
    "models": {"core", "data"},
    "engine": {"core", "data", "models", "config"},
    "deploy": {"core", "data", "models", "metrics", "postprocess", "engine"},
}


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _top_level_imports(path: Path) -> set[str]:
    """steelscan modules imported at module level (not inside functions or classes' methods)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("steelscan"):
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("steelscan"))
    return out


def _graph() -> dict[str, set[str]]:
    modules = {_module(p): p for p in SRC.rglob("*.py")}
    return {m: {i for i in _top_level_imports(p) if i in modules and i != m} for m, p in modules.items()}


def test_no_import_cycles():
    graph = _graph()
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(m: str, stack: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            # A package's __init__ importing its own submodules is how registries fill: not a cycle.
            if n.startswith(m + "."):
                continue
            if state.get(n) == 1 and not m.startswith(n + "."):
                cycles.append(stack[stack.index(n):] + [n] if n in stack else [m, n])
            elif n not in state:
                visit(n, [*stack, n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_layers_import_one_way():
    wrong = []
    for m, deps in _graph().items():
        layer = m.split(".")[1] if m.count(".") else ""
        if layer not in ALLOWED:
            continue
        for d in deps:
            target = d.split(".")[1] if "." in d else ""  # "" = the package root (its version)
            if target and target != layer and target not in ALLOWED[layer]:
                wrong.append(f"{m} imports {d}")
    assert not wrong, "layer violations: " + "; ".join(sorted(wrong))
