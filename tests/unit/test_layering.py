"""Data flows one way (contract -> decoding -> algorithm -> artifact -> serving); so do imports.

Each test checks a claim of docs/architecture.md, read from the page itself where the page lists names, so the
page and the code cannot drift apart.
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "architecture.md"
PACKAGES = ("algorithm", "container", "serve", "fmwals")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _resolve(path: Path, node: ast.ImportFrom) -> str:
    """The absolute module an ``ImportFrom`` names, relative imports included."""
    if node.level == 0:
        return node.module or ""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    base = package[:len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _is_module(name: str) -> bool:
    relative = ROOT / name.replace(".", "/")
    return relative.with_suffix(".py").is_file() or (relative / "__init__.py").is_file()


def _imports(package: str) -> list[tuple[Path, str]]:
    """(file, imported module) for every import anywhere in ``package`` (module level or inside functions);
    ``from pkg import module`` counts as importing ``pkg.module``."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(path, alias.name) for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                module = _resolve(path, node)
                if module:
                    found.append((path, module))
                found += [(path, name) for name in (".".join(filter(None, (module, a.name))) for a in node.names)
                          if _is_module(name)]
    return found


def _page_paragraph(start: str) -> str:
    text = PAGE.read_text()
    at = text.index(start)
    return text[at:text.index("\n\n", at)]


def _listed_modules() -> set[str]:
    """Every ``*.py`` the page's module map names, as paths relative to the repository root."""
    block = PAGE.read_text().split("```")[1]
    listed, directories, last_dir = set(), {}, None
    for line in block.splitlines():
        header = re.match(r"^(\w+)/\s", line)
        if header:
            directories, last_dir = {0: header.group(1)}, header.group(1)
            continue
        entry = re.match(r"^( +)(\S+)", line)
        if not directories or not entry:
            continue
        depth = len(entry.group(1)) // 2
        if depth <= max(directories) + 1 and depth >= 1:  # an entry line (deeper lines continue a description)
            parent = directories[depth - 1]
            directories = {d: p for d, p in directories.items() if d < depth}
            if entry.group(2).endswith("/"):
                directories[depth] = f"{parent}/{entry.group(2).rstrip('/')}"
            last_dir = parent
        listed |= {f"{last_dir}/{name}" for name in re.findall(r"(?<![/\w.])(\w+\.py)\b", line)}
    return listed


def test_the_page_names_this_test():
    assert f"`{Path(__file__).relative_to(ROOT)}`" in PAGE.read_text()


def test_the_page_lists_every_module_and_no_other():
    actual = {str(p.relative_to(ROOT)) for package in PACKAGES for p in (ROOT / package).rglob("*.py")
              if p.name != "__init__.py" or p.parent.name in ("fmwals", "backends")}
    listed = _listed_modules()
    assert not actual - listed, f"modules missing from docs/architecture.md: {sorted(actual - listed)}"
    assert not listed - actual, f"docs/architecture.md lists modules that do not exist: {sorted(listed - actual)}"


@pytest.mark.parametrize("package,forbidden", [
    ("algorithm", ("container", "serve", "fmwals", "flask", "gunicorn")),
    ("container", ("serve", "fmwals", "flask", "gunicorn")),
    ("serve", ("fmwals",)),
])
def test_no_upstream_imports(package, forbidden):
    bad = [f"{p.relative_to(ROOT)} imports {m}" for p, m in _imports(package) if m.split(".")[0] in forbidden]
    assert not bad, bad


def test_nothing_imports_serve():
    outside = [f"{p.relative_to(ROOT)} imports {m}" for package in PACKAGES if package != "serve"
               for p, m in _imports(package) if m.split(".")[0] == "serve"]
    assert not outside, outside


def test_client_imports_only_the_modules_the_page_lists():
    allowed = set(re.findall(r"`((?:algorithm|container)\.[\w.]+)`",
                             _page_paragraph("The client (`fmwals/`) imports")))
    assert allowed, "docs/architecture.md does not list the client's imports"
    used = {m for _, m in _imports("fmwals") if m.split(".")[0] in ("algorithm", "container", "serve")}
    packages_only = {m for m in used if any(other.startswith(m + ".") for other in used)}
    assert used - packages_only <= allowed, sorted(used - packages_only - allowed)


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
               "container.metrics_log", "container.errors", "container.channel_files")
    for module in modules:
        tree = ast.parse((ROOT / f"{module.replace('.', '/')}.py").read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        project = {n for n in names if n.split(".")[0] in PACKAGES}
        assert {n.split(".")[0] for n in names - project} <= set(sys.stdlib_module_names), (module, names)
        assert project <= set(modules), (module, names)


def test_client_imports_neither_numba_nor_flask():
    code = ("import sys, fmwals; heavy = {'numba', 'flask', 'gunicorn'} & set(sys.modules); "
            "assert not heavy, heavy")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)
