"""Data flows one way (contract -> decoding -> algorithm -> artifact -> serving); so do imports."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _imports(package: str) -> list[tuple[Path, str]]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(path, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.append((path, node.module))
    return found


@pytest.mark.parametrize("package,forbidden", [
    ("algorithm", ("container", "serve", "flask", "gunicorn")),
    ("container", ("serve", "flask", "gunicorn")),
])
def test_no_upstream_imports(package, forbidden):
    bad = [f"{p.relative_to(ROOT)} imports {m}" for p, m in _imports(package)
           if m.split(".")[0] in forbidden]
    assert not bad, bad


def test_algorithm_reads_no_environment():
    offenders = []
    for path in sorted((ROOT / "algorithm").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
                offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, offenders


def test_schema_and_metric_modules_are_stdlib_only():
    """The client wrapper reads these without pulling in numpy, numba or Flask."""
    modules = ("algorithm.hyperparameters", "algorithm.schemas", "algorithm.optimizer_defaults",
               "container.metrics_log", "container.errors")
    allowed = {"__future__", "collections", "dataclasses", "json", "logging", "math", "re", "typing"}
    for module in modules:
        tree = ast.parse((ROOT / f"{module.replace('.', '/')}.py").read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        assert {n.split(".")[0] for n in names} - {"algorithm", "container"} <= allowed, (module, names)
        assert {n for n in names if n.split(".")[0] in ("algorithm", "container")} <= set(modules), (module, names)


def test_client_imports_neither_numba_nor_flask():
    import subprocess
    import sys

    code = ("import sys, fmwals; heavy = {'numba', 'flask', 'gunicorn'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)
