"""The client's modules import one another at module level only, and the imports form no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFERRED_CONTAINER_MODULES = {"container.formats.recordio"}  # loads numba, which `import fmwals` must not


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(path): path for path in sorted((ROOT / "fmwals").rglob("*.py"))}


def _is_module(name: str) -> bool:
    path = ROOT.joinpath(*name.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def imported_modules(module: str, node: ast.Import | ast.ImportFrom) -> list[str]:
    """The modules an import statement of ``module`` loads: relative imports resolved, and
    ``from package import name`` naming the submodule when ``name`` is one."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level:
        package = module.split(".") if MODULES[module].name == "__init__.py" else module.split(".")[:-1]
        base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    return [f"{base}.{alias.name}" if _is_module(f"{base}.{alias.name}") else base for alias in node.names]


def imports(module: str) -> tuple[list[str], list[str]]:
    """(modules imported when ``module`` loads, modules imported inside its functions). Imports under
    ``if TYPE_CHECKING:`` count as loaded: they describe the same dependency."""
    eager: list[str] = []
    deferred: list[str] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                (deferred if in_function else eager).extend(imported_modules(module, child))
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(ast.parse(MODULES[module].read_text(), str(MODULES[module])), False)
    return eager, deferred


def client_graph() -> dict[str, set[str]]:
    """Module -> the client modules it imports when it loads."""
    return {module: {m for m in imports(module)[0] if m in MODULES} - {module} for module in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that ends where it starts, or None."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return None
        path.append(node)
        for target in sorted(graph[node]):
            cycle = visit(target)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return None

    return next((cycle for node in sorted(graph) if (cycle := visit(node))), None)


def test_relative_imports_are_resolved():
    local, package = "fmwals.backends.local", "fmwals.backends"
    assert imported_modules(local, ast.parse("from . import processes").body[0]) == ["fmwals.backends.processes"]
    assert imported_modules(local, ast.parse("from .. import jobs").body[0]) == ["fmwals.jobs"]
    assert imported_modules(local, ast.parse("from ..errors import EndpointError").body[0]) == ["fmwals.errors"]
    assert imported_modules(package, ast.parse("from .local import LocalBackend").body[0]) == [local]


def test_the_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_client_imports_form_no_cycle():
    graph = client_graph()
    assert "fmwals.model" in graph["fmwals.estimator"]  # the graph sees the client's own edges
    cycle = find_cycle(graph)
    assert cycle is None, " -> ".join(cycle or [])


def test_client_imports_project_modules_at_module_level():
    """Only the numba-backed RecordIO module is imported where it is used; everything else of the project
    at the top of the module, so that the import graph above is the whole story."""
    late = [
        f"{module} imports {name} inside a function"
        for module in MODULES
        for name in imports(module)[1]
        if name.split(".")[0] == "fmwals"
        or (name.split(".")[0] == "container" and name not in DEFERRED_CONTAINER_MODULES)
    ]
    assert not late, late
