"""The package's shape, which later work must keep: no import cycle, no module too long to read."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "kws"
MAX_LINES = 700


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imported_modules(path: Path, modules: set[str]) -> set[str]:
    """The ``modules`` a source file imports, at any depth (lazy imports in functions too), but
    not in ``if TYPE_CHECKING:`` blocks, which never run. ``importlib.import_module`` counts:
    a file that calls it imports every module whose name it spells as a string."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    imported: set[str] = set()
    dynamic = False

    def visit(node: ast.AST) -> None:
        nonlocal dynamic
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            imported.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            imported.add(base)
            imported.update(f"{base}.{alias.name}" for alias in node.names)  # a submodule, if it is one
        elif isinstance(node, ast.Attribute) and node.attr == "import_module":
            dynamic = True
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    if dynamic:
        imported.update(
            n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)
        )
    return {m for m in imported if m in modules and m != name}


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: imported_modules(path, set(files)) for name, path in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` as the modules along it (first repeated last), or []."""
    done: set[str] = set()
    path: list[str] = []

    def walk(module: str) -> list[str]:
        if module in path:
            return [*path[path.index(module) :], module]
        if module in done:
            return []
        path.append(module)
        for target in sorted(graph[module]):
            cycle = walk(target)
            if cycle:
                return cycle
        path.pop()
        done.add(module)
        return []

    for module in sorted(graph):
        cycle = walk(module)
        if cycle:
            return cycle
    return []


def test_the_import_graph_is_read_from_the_source() -> None:
    """The graph sees what the checks rely on: lazy imports, relative imports, import_module,
    and not TYPE_CHECKING blocks (checked on the package itself, so it cannot go stale quietly)."""
    graph = import_graph()
    assert "kws.pipeline" in graph["kws.train"]  # lazy, inside __getattr__
    assert "kws.stream" in graph["kws"]  # importlib.import_module("kws.stream") by name
    assert "kws.export.generate" in graph["kws.export"]
    assert "kws.training.prepare" not in graph["kws.report"]  # annotations only
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_the_package() -> None:
    cycle = find_cycle(import_graph())
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def test_no_module_is_longer_than_a_reader_can_hold() -> None:
    lengths = {module_name(p): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert len(lengths) > 30  # the package was found
    too_long = {name: n for name, n in lengths.items() if n > MAX_LINES}
    assert not too_long, f"modules over {MAX_LINES} lines (split them by job): {too_long}"


def test_only_kws_progress_draws_progress() -> None:
    """Bar or line, and --quiet, are decided in one place: a module with its own tqdm bar would
    write \\r-redrawn bars into logs and pipes."""
    users = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(name.split(".")[0] == "tqdm" for name in names):
                users.add(module_name(path))
    assert users == {"kws.progress"}
