"""Fuzz the decoders with atheris (libFuzzer for Python), one target at a time.

    python -m bench.fuzz.run TARGET [--time S | --runs N] [-- libFuzzer flags]
    python -m bench.fuzz.run all --time S        # every target in turn, each in its own process
    python -m bench.fuzz.run TARGET --minimize FILE   # the shortest input giving FILE's finding

A target's corpus lives in ``bench/fuzz/corpus/<target>/`` (seeded from the tests by ``bench.fuzz.seeds``
when empty; libFuzzer adds what reaches new code). An input that raises an exception outside the target's
``expected`` user errors, or takes more than ``--slow`` CPU seconds, is a finding: it is written to
``bench/fuzz/findings/<target>/`` (the smallest input per exception type and place, with its traceback) and
fuzzing goes on. A crash (signal) or an input past libFuzzer's ``-timeout`` ends the run with libFuzzer's own
``crash-*`` / ``timeout-*`` file there. Numba kernels are not instrumented (atheris instruments Python
bytecode): they are fuzzed blind, through the Python code around them.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bench.fuzz.targets import Target

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# Modules holding numba kernels, found by their decorators: left uninstrumented (numba cannot compile
# instrumented bytecode).
NUMBA_MODULES = tuple(
    ".".join(path.relative_to(ROOT).with_suffix("").parts)
    for package in ("algorithm", "container")
    for path in sorted((ROOT / package).rglob("*.py"))
    if re.search(r"^@(numba\.)?(njit|jit|intrinsic)\b", path.read_text(), re.MULTILINE)
)
# Modules the targets reach, instrumented for coverage.
INSTRUMENTED = (
    "container.formats.registry", "container.formats.triplets", "container.formats.fm_queries",
    "container.formats.wals_queries", "container.config", "algorithm.schemas", "algorithm.artifact",
    "algorithm.fm", "algorithm.wals_model", "bench.fuzz.targets",
)
# bench.fuzz.targets' names: that module is imported only once instrumentation is on
TARGET_NAMES = ("recordio", "csv", "libsvm", "json", "jsonlines", "triplets", "queries", "artifact", "config")
DONE = re.compile(r"Done (\d+) runs in (\d+) second")


class Findings:
    """Unexpected outcomes of one target, one per (exception type, innermost project frame), smallest input
    kept; the summary (``stats.json``) is rewritten as inputs run, so it survives libFuzzer's exit."""

    def __init__(self, target: str) -> None:
        self.directory = HERE / "findings" / target
        self.seen: dict[str, int] = {}
        self.inputs = 0
        self.started = time.monotonic()
        self.written = 0.0

    def add(self, kind: str, where: str, data: bytes, describe: Callable[[], str]) -> None:
        key = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{kind}-{where}")
        if key in self.seen and self.seen[key] <= len(data):
            return
        detail = describe()
        if key not in self.seen:
            print(f"\n#### finding {key} ({len(data)} bytes)\n{detail}", file=sys.stderr, flush=True)
        self.seen[key] = len(data)
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / f"{key}.bin").write_bytes(data)
        (self.directory / f"{key}.txt").write_text(f"{len(data)} bytes: {data!r}\n\n{detail}", encoding="utf-8")
        self.save()

    def count(self) -> None:
        self.inputs += 1
        if self.inputs % 1000 == 0 and time.monotonic() - self.written > 2:
            self.save()

    def save(self) -> None:
        self.written = time.monotonic()
        elapsed = self.written - self.started
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "stats.json").write_text(json.dumps(
            {"inputs": self.inputs, "seconds": round(elapsed, 1), "inputs_per_second": round(self.inputs / elapsed),
             "findings": sorted(self.seen)}, indent=1) + "\n", encoding="utf-8")


def _where(err: BaseException) -> str:
    """file:line of the innermost frame in the project (else the innermost frame)."""
    frames = traceback.extract_tb(err.__traceback__)
    inside = [f for f in frames if str(ROOT) in f.filename and "/bench/fuzz/" not in f.filename] or frames
    frame = inside[-1]
    return f"{Path(frame.filename).name}:{frame.lineno}"


def fuzz(target_name: str, libfuzzer_args: list[str], slow_seconds: float) -> None:
    """Run one target under atheris in this process (libFuzzer ends the process)."""
    import atheris

    with atheris.instrument_imports(include=["container", "algorithm", "bench.fuzz"], exclude=list(NUMBA_MODULES)):
        for module in INSTRUMENTED:
            importlib.import_module(module)
    from bench.fuzz import seeds
    from bench.fuzz.targets import TARGETS

    assert tuple(TARGETS) == TARGET_NAMES, "TARGET_NAMES must list bench.fuzz.targets.TARGETS"
    target = TARGETS[target_name]
    corpus = HERE / "corpus" / target_name
    if not corpus.is_dir() or not any(corpus.iterdir()):
        print(f"seeded {seeds.write(target_name, corpus)} inputs into {corpus}", file=sys.stderr)
    for seed in sorted(corpus.iterdir()):  # numba compiles (or loads its cache) before the clock starts
        _one(target, seed.read_bytes())
    findings = Findings(target_name)

    def test_one(data: bytes) -> None:
        findings.count()
        started = time.process_time()  # CPU time: a niced process waiting for a core is not slow
        try:
            target.run(data)
        except target.expected:
            pass
        except Exception as err:  # anything else is what the fuzzer looks for
            findings.add(type(err).__name__, _where(err), data, traceback.format_exc)
        elapsed = time.process_time() - started
        if elapsed > slow_seconds:
            findings.add("Slow", f"{elapsed:.0f}s", data, lambda: f"{elapsed:.2f} CPU seconds on one input")

    findings.directory.mkdir(parents=True, exist_ok=True)
    if not seeds.dictionary_file(corpus).exists():
        seeds.write_dictionary(target_name, corpus)
    argv = [sys.argv[0], str(corpus), f"-artifact_prefix={findings.directory}/",
            f"-dict={seeds.dictionary_file(corpus)}", *libfuzzer_args]
    print(f"fuzzing {target_name}: {target.doc}; libFuzzer {argv[1:]}", file=sys.stderr, flush=True)
    atheris.Setup(argv, test_one)
    atheris.Fuzz()


def _one(target: Target, data: bytes) -> None:
    with contextlib.suppress(Exception):  # the warm-up only compiles; fuzzing reports what it finds
        target.run(data)


def outcome(target: Target, data: bytes) -> str | None:
    """The finding ``data`` gives (exception type and place), None when it gives none."""
    try:
        target.run(data)
    except target.expected:
        return None
    except Exception as err:
        return f"{type(err).__name__}-{_where(err)}"
    return None


def minimize(target: Target, data: bytes) -> bytes:
    """The shortest input found by deleting ever smaller chunks of ``data`` while it gives the same finding."""
    wanted = outcome(target, data)
    if wanted is None:
        raise SystemExit(f"this input gives no finding on {target.name}")
    chunk = max(len(data) // 2, 1)
    while chunk:
        at = 0
        while at < len(data):
            shorter = data[:at] + data[at + chunk:]
            if outcome(target, shorter) == wanted:
                data = shorter
            else:
                at += chunk
        chunk //= 2
    return data


def run_all(targets: list[str], child_args: list[str]) -> int:
    """Each target in its own niced process (``child_args``: this command's options), one after the other;
    prints inputs run, rate and findings."""
    rows = []
    for name in targets:
        log = HERE / "findings" / name / "libfuzzer.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        command = ["nice", "-n", "19", sys.executable, "-m", "bench.fuzz.run", name, *child_args]
        print(" ".join(command), flush=True)
        with log.open("w") as out:
            code = subprocess.call(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        text = log.read_text(errors="replace")
        done = DONE.findall(text)
        stats = json.loads((log.parent / "stats.json").read_text()) if (log.parent / "stats.json").exists() else {}
        crashes = sorted(p.name for p in log.parent.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-")))
        runs = int(done[-1][0]) if done else stats.get("inputs", 0)
        seconds = int(done[-1][1]) if done else stats.get("seconds", 0)
        rows.append((name, runs, seconds, code, stats.get("findings", []) + crashes))
        print(f"{name}: {runs} inputs in {seconds} s ({runs / max(seconds, 1):.0f}/s), exit {code}, "
              f"findings: {rows[-1][4] or 'none'}", flush=True)
    print("\n| target | inputs | seconds | inputs/s | findings |\n|---|---|---|---|---|")
    for name, runs, seconds, _, found in rows:
        print(f"| {name} | {runs:,} | {seconds} | {runs / max(seconds, 1):,.0f} | {', '.join(found) or 'none'} |")
    return 1 if any(row[4] or row[3] for row in rows) else 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    ours, libfuzzer = (args[: args.index("--")], args[args.index("--") + 1:]) if "--" in args else (args, [])
    parser = argparse.ArgumentParser(prog="python -m bench.fuzz.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("target", choices=[*TARGET_NAMES, "all"])
    parser.add_argument("--time", type=int, help="seconds per target (libFuzzer -max_total_time)")
    parser.add_argument("--runs", type=int, help="inputs per target (libFuzzer -runs)")
    parser.add_argument("--slow", type=float, default=2.0, help="CPU seconds on one input that make it a finding")
    parser.add_argument("--timeout", type=int, default=20, help="seconds on one input that end the run (hang)")
    parser.add_argument("--max-len", type=int, default=16384, help="largest input in bytes")
    parser.add_argument("--minimize", type=Path, metavar="FILE", help="print the shortest input giving FILE's finding")
    options = parser.parse_args(ours)
    if options.minimize:
        from bench.fuzz.targets import TARGETS

        target = TARGETS[options.target]
        shortest = minimize(target, options.minimize.read_bytes())
        print(f"{outcome(target, shortest)} ({len(shortest)} bytes): {shortest!r}")
        return 0
    flags = [f"-timeout={options.timeout}", f"-max_len={options.max_len}", "-rss_limit_mb=2048",
             "-print_final_stats=1"]
    flags += [f"-max_total_time={options.time}"] if options.time else []
    flags += [f"-runs={options.runs}"] if options.runs else []
    if options.target == "all":
        return run_all(list(TARGET_NAMES), [a for a in args if a != "all"])
    fuzz(options.target, flags + libfuzzer, options.slow)
    return 0


if __name__ == "__main__":
    sys.exit(main())
