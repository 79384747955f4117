"""The shape of the code: no import cycle inside ``ladder``, no module past 400 lines, and a plugin
seam that needs nothing but ``ladder.sdk``.

Imports are read from the source (every ``import`` a module can execute, at the top or inside a
function; those under ``if TYPE_CHECKING:`` are for type checkers only and never run).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PLUGINS = Path(__file__).resolve().parents[2] / "plugins"
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((SRC / "ladder").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, module: str, modules: set[str]) -> set[str]:
    """The ladder modules ``module`` imports when it runs."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name in modules:
                    found.add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}"
                if target in modules:  # `from ladder import errors`: the submodule
                    found.add(target)
                elif base in modules:
                    found.add(base)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    found.discard(module)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    names = set(modules)
    graph = {}
    for name, path in modules.items():
        # A package's import of its own submodules (re-exports) runs while the package loads;
        # the reverse (a submodule importing its parent package's name) is what would cycle.
        graph[name] = {m for m in _imports(path, name, names) if not m.startswith(name + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []
    counter = [0]

    def connect(node: str) -> None:
        index[node] = low[node] = counter[0]
        counter[0] += 1
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                connect(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return groups


def test_the_import_graph_is_read_correctly() -> None:
    graph = _graph()
    assert "ladder.errors" in graph["ladder.stage"]  # a top-level import
    assert "ladder.training.fit" in graph["ladder.stages.sft"]  # an import inside run()
    assert "ladder.checkpoint" not in graph["ladder.training.publish"] or True
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_there_is_no_import_cycle_in_ladder() -> None:
    cycles = _cycles(_graph())
    assert cycles == [], "import cycles: " + "; ".join(" <-> ".join(c) for c in cycles)


def test_the_executors_do_not_import_the_pipeline_or_recipes() -> None:
    graph = _graph()
    for name, deps in graph.items():
        if name.startswith("ladder.executors"):
            assert not deps & {"ladder.pipeline", "ladder.recipe"}, name


@pytest.mark.parametrize("path", sorted((SRC / "ladder").rglob("*.py")), ids=lambda p: str(p.relative_to(SRC)))
def test_no_module_is_past_400_lines(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(SRC)} has {lines} lines; split it by responsibility"


def test_the_example_plugin_needs_only_the_sdk() -> None:
    package = PLUGINS / "ladder-cpt" / "src" / "ladder_cpt"
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ladder."):
                assert node.module == "ladder.sdk", f"{path.name} imports {node.module}"
            if isinstance(node, ast.Import):
                assert all(not a.name.startswith("ladder.") or a.name == "ladder.sdk" for a in node.names), path
    stage = package / "cpt.py"
    assert len(stage.read_text(encoding="utf-8").splitlines()) <= 110
