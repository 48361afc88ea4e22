"""The compilation log line: said when numba compiles, silent when the kernels come from its cache."""

import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent("""
    import logging, sys
    from container.kernel_compilation import logged_compilation
    logging.basicConfig(level=logging.INFO, stream=sys.stdout, format="%(message)s")
    from kernel import double
    with logged_compilation(logging.getLogger("t"), ": a note"):
        assert double(2.0) == 4.0
        assert double(3.0) == 6.0  # compiled once per signature
""")
KERNEL = textwrap.dedent("""
    from numba import njit

    @njit(cache=True)
    def double(x):
        return 2 * x
""")


def _run(tmp_path: Path) -> str:
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": f"{ROOT}:{tmp_path}", "NUMBA_CACHE_DIR": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_first_run_says_it_compiles_and_the_next_run_loads_the_cache_silently(tmp_path):
    (tmp_path / "kernel.py").write_text(KERNEL)
    first = _run(tmp_path)
    assert first.count("Compiling numba kernels, first run on this machine only") == 1
    assert f"takes tens of seconds: a note; they are cached in {tmp_path / 'cache'} for the next runs" in first
    assert "Compiled 1 numba kernel(s) in " in first
    assert list((tmp_path / "cache").rglob("*.nbi")), "numba wrote no cache index"
    assert _run(tmp_path) == ""
