"""The package's import graph has no cycle, counting every import: module level, inside
functions (lazy) and under ``if TYPE_CHECKING`` (issue 24: layers only point down)."""

from __future__ import annotations

import ast
from pathlib import Path

import neuralcollapse

PACKAGE = Path(neuralcollapse.__file__).resolve().parent
ROOT = "neuralcollapse"


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _resolve(module: str, level: int, current: str, is_package: bool) -> str:
    if level == 0:
        return module
    base = current.split(".")
    base = base if is_package else base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join([*base, module] if module else base)


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports anywhere in its source."""
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(node.module or "", node.level, name, is_package)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    targets.append(sub if sub in modules else base)
            for target in targets:
                # `import a.b.c` runs a.b.c; edges go to the deepest package module named
                while target and target not in modules:
                    target = target.rpartition(".")[0]
                if not target.startswith(ROOT) or target == name:
                    continue
                graph[name].add(target)
                # importing a.b.c first runs the packages a.b and a: edges to them too,
                # except to the packages the importer itself lives in
                parent = target.rpartition(".")[0]
                while parent and not name.startswith(parent + ".") and parent != name:
                    graph[name].add(parent)
                    parent = parent.rpartition(".")[0]
    return graph


def find_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each strongly connected component with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0

    def visit(node: str) -> None:
        nonlocal counter
        index[node] = low[node] = counter
        counter += 1
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return components


def test_the_graph_sees_lazy_and_type_checking_imports():
    graph = {"a": {"b"}, "b": {"a"}, "c": set()}
    assert find_cycles(graph) == [["a", "b"]]
    real = import_graph()
    # the registry reaches the config module (module level) and the trainer package exists
    assert "neuralcollapse.config" in real["neuralcollapse.registry"]
    assert any(name.startswith("neuralcollapse.train.") for name in real)


def test_no_import_cycle():
    cycles = find_cycles(import_graph())
    assert cycles == [], "import cycles (lazy imports included): " + "; ".join(
        " <-> ".join(cycle) for cycle in cycles
    )
