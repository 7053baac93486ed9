"""The package's import graph has no cycle, and no module imports another module's private names.

Every ``import`` and ``from ... import`` inside ``rollwise`` counts, including those inside functions (a lazy
import only hides a cycle). ``from pkg import name`` is an edge to ``pkg.name`` when that is a module, else
to ``pkg`` (its ``__init__``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import rollwise

ROOT = Path(rollwise.__file__).parent
REPO = ROOT.parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(path: Path, modules: dict[str, Path]) -> list[tuple[str, str]]:
    """(imported module, imported name or "") of every rollwise import in ``path``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [(a.name, "") for a in node.names if a.name.split(".")[0] == "rollwise"]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "rollwise":
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.append((sub, "") if sub in modules else (node.module, a.name))
    return out


def import_graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: {m for m, _ in _imports(path, modules) if m in modules and m != name}
            for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of nodes (first == last), or None."""
    state: dict[str, int] = {}  # 1 on the stack, 2 done
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_find_cycle_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) is None


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_module_imports_private_names_of_another():
    modules = _modules()
    bad = [f"{name} imports {mod}.{what}" for name, path in modules.items()
           for mod, what in _imports(path, modules) if what.startswith("_") and mod != name]
    for path in [*(REPO / "benchmarks").glob("*.py"), *(REPO / "scripts").glob("*.py")]:
        bad += [f"{path.name} imports {mod}.{what}" for mod, what in _imports(path, modules) if what.startswith("_")]
    assert not bad, bad
