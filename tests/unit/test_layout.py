"""The shape of the product code: no import cycles between its modules, no oversized module.

Imports are read with :mod:`ast`, at every depth: an import inside a function or under
``if TYPE_CHECKING:`` is an edge like any other (a lazy import that dodges a cycle at run
time is still a cycle in the design). ``from pkg import mod`` is an edge to ``pkg.mod`` when
``mod`` is a module; an import of a package is an edge to its ``__init__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("common", "gateway", "shard", "bench")
#: Most lines one product module may have.
MAX_LINES = 450


def product_modules() -> dict[str, Path]:
    """Dotted module name → file, for every module of the product packages."""
    modules: dict[str, Path] = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module named by ``from <node.module> import ...`` inside ``module``."""
    if not node.level:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    if node.level > 1:
        base = base[:len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The product modules ``module`` imports, at any depth of its syntax tree."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(module, path.name == "__init__.py", node)
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                found.add(submodule if submodule in known else source)
    return {name for name in found if name in known and name != module}


def import_graph() -> dict[str, set[str]]:
    modules = product_modules()
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm: the groups of modules that reach each other (only groups of two or more)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
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
            visit(node)
    return groups


def a_cycle(graph: dict[str, set[str]], group: list[str]) -> list[str]:
    """One concrete loop through the first module of ``group`` (breadth first: a shortest one)."""
    start, members = group[0], set(group)
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for target in sorted(graph[node] & members):
            if target == start:
                return [*paths[node], start]
            if target not in paths:
                paths[target] = [*paths[node], target]
                queue.append(target)
    raise AssertionError(f"no cycle through {start}")  # unreachable for a strongly connected group


def test_the_import_graph_sees_imports_at_any_depth() -> None:
    graph = import_graph()
    assert "common.config" in graph["common.cli"]  # a top-level import
    assert "gateway.server" in graph["common.cli"]  # an import inside a function


def test_no_import_cycles() -> None:
    graph = import_graph()
    cycles = [" -> ".join(a_cycle(graph, group)) + f"   (group of {len(group)}: {', '.join(group)})"
              for group in strongly_connected(graph)]
    assert not cycles, "product modules import each other:\n" + "\n".join(cycles)


def test_no_oversized_module() -> None:
    sizes = {name: len(path.read_text().splitlines()) for name, path in product_modules().items()}
    oversized = [f"{name}: {lines} lines" for name, lines in sorted(sizes.items()) if lines > MAX_LINES]
    assert not oversized, f"modules over {MAX_LINES} lines:\n" + "\n".join(oversized)
