"""Distributed WALS against one host: seconds per sweep and bytes sent per sweep, interleaved in one invocation.

Data: the implicit bench set (``bench.wals_data.implicit_counts``, 100k x 20k, 5M counts; all entries
trained) as CSV triplets with string ids (``u<row>,i<col>,<count>``). One host: ``WALS.fit`` on the matrix
``train_wals`` builds from all of it (the sweeps it runs), this process pinned to one core, one thread.
Distributed: a dask scheduler in this process (the driver, on the same core as host 1, as on a real first
host) and one worker process per host pinned to its own core
(taskset), each with its own ``/opt/ml`` holding a ShardedByS3Key-style share (entry i on host i mod N).
Both with ``alpha=40, unobserved_weight=1, regularization_coeff=10``, cholesky (or ``--solver``), the same
seed. Reported: the seconds per sweep after the first (each round's mean, the median over the rounds), from
one sweep's end to the next (one host: its two half-sweeps and the sweep's training loss and Gramians;
distributed: the same work on the hosts, as the driver sees it) and their ratio; one host's half-sweeps alone
(what its log line counts) and that ratio; the CPU seconds per sweep of the one host (its metrics included)
and of the busiest host (its solves, loss and Gramian), the training loss of the last sweep of each, and the
MiB of factors moved per sweep (the driver's log line).

    OPENBLAS_NUM_THREADS=1 .venv/bin/python -m bench.bench_wals_distributed --hosts 2 --rounds 2 --sweeps 3
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from algorithm.checkpoint import Checkpoints
from algorithm.schemas import JOB_SETTINGS, parse_for_algorithm
from algorithm.wals import WALS
from bench.wals_data import implicit_counts
from container import wals_data
from container.config import ChannelConfig
from container.paths import SageMakerPaths
from container.wals_distributed import train_wals_distributed
from tests.integration.dask_hosts import loopback_hosts

THROUGHPUT = re.compile(r"train throughput=([0-9.]+) records/second")
LOSS = re.compile(r"epoch=(\d+), train loss <loss>=(\S+)")
SOLVING = re.compile(r"\(solving, per host, wall/CPU s: ([^)]*)\)")
TRAFFIC = re.compile(r"Sweep \d+: [0-9.]+ s on \d+ hosts .*; ([0-9.]+) MiB of factors between the hosts, ([0-9.]+) MiB "
                     r"sent by the driver, ([0-9.]+) MiB gathered")


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _write_csv(path: Path, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        out.write("row,col,value\n")
        for start in range(0, rows.size, 500_000):
            part = slice(start, start + 500_000)
            out.write("".join(f"u{r},i{c},{int(v)}\n" for r, c, v in zip(rows[part], cols[part], values[part],
                                                                           strict=True)))


def _run(train: Any, *args: Any) -> list[str]:
    """The log lines of ``train(*args)``."""
    handler = _Lines()
    logging.getLogger("train").addHandler(handler)
    try:
        train(*args)
    finally:
        logging.getLogger("train").removeHandler(handler)
    return handler.lines


def _one_host(matrix: Any, params: dict[str, Any]) -> tuple[list[float], list[float], list[float], float]:
    """Of ``WALS.fit`` on one core, the sweeps ``train_wals`` runs, for the sweeps after the first: the seconds
    from one sweep's end to the next (its two half-sweeps and its training loss and Gramians, the work a
    distributed sweep does too), the seconds of its half-sweeps alone (what its log line counts), the CPU
    seconds (this process), and the last training loss."""
    seconds, solving, cpu, losses = [], [], [], []
    last = [time.process_time(), time.perf_counter()]

    def record(sweep: int, train: dict, test: Any, took: float) -> None:
        seconds.append(time.perf_counter() - last[1])
        solving.append(took)
        cpu.append(time.process_time() - last[0])
        last[:] = [time.process_time(), time.perf_counter()]
        losses.append(train["loss"])

    WALS(**params).fit(matrix, on_epoch=record)
    return seconds[1:], solving[1:], cpu[1:], losses[-1]


def _sweep_seconds(lines: list[str], nnz: int) -> list[float]:
    return [nnz / float(m.group(1)) for line in lines if (m := THROUGHPUT.search(line))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--sweeps", type=int, default=3)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--solver", default="cholesky")
    parser.add_argument("--nnz", type=int, default=5_000_000)
    parser.add_argument("--out", type=Path, default=Path("bench/results/wals_distributed.json"))
    args = parser.parse_args()
    logging.getLogger("train").setLevel(logging.INFO)
    os.sched_setaffinity(0, {0})
    R = implicit_counts(0, nnz=args.nnz).tocoo()
    _, hp = parse_for_algorithm({"algorithm": "wals", "embedding_dimension": str(args.factors), "alpha": "40",
                                 "unobserved_weight": "1", "regularization_coeff": "10", "solver": args.solver,
                                 "max_sweeps": str(args.sweeps), "num_threads": "1"})
    results: dict[str, Any] = {"hosts": args.hosts, "factors": args.factors, "solver": args.solver,
                               "nnz": int(R.nnz), "rounds": []}
    with tempfile.TemporaryDirectory(prefix="bench-wals-dist-") as tmp:
        root = Path(tmp)
        one = SageMakerPaths(root / "one")
        _write_csv(one.channel_dir("train") / "all.csv", R.row, R.col, R.data)
        bases = [root / f"host{r}" for r in range(args.hosts)]
        for r, base in enumerate(bases):
            _write_csv(SageMakerPaths(base).channel_dir("train") / f"part-{r}.csv", R.row[r::args.hosts],
                       R.col[r::args.hosts], R.data[r::args.hosts])
        for paths in (one, *(SageMakerPaths(b) for b in bases)):
            paths.model_dir.mkdir(parents=True, exist_ok=True)
        channels = {"train": ChannelConfig("train", "text/csv", distribution="ShardedByS3Key")}
        data = wals_data.build_matrices(wals_data.read_triplets(one, channels["train"], hp), None, hp)
        matrix = data.train
        params = {k: v for k, v in hp.items() if k not in (*JOB_SETTINGS, "num_rows", "num_cols")}
        single, single_solving, multi, traffic, single_cpu, host_cpu = [], [], [], [], [], []
        with loopback_hosts(bases, cpus=[r % (os.cpu_count() or 1) for r in range(args.hosts)]) as cluster:
            for round_ in range(args.rounds):
                one_seconds, one_solving, one_cpu, one_loss = _one_host(matrix, params)
                lines = _run(train_wals_distributed, cluster, SageMakerPaths(bases[0]), hp, channels,
                                Checkpoints(None))
                dist_seconds = _sweep_seconds(lines, R.nnz)[1:]
                dist_loss = [float(v) for _, v in LOSS.findall("\n".join(lines))][-1]
                sent = [tuple(map(float, m.groups())) for line in lines if (m := TRAFFIC.search(line))]
                cpu = [[float(x.split("/")[1]) for x in m.group(1).split(", ")]
                       for line in lines if (m := SOLVING.search(line))][1:]
                single.append(statistics.fmean(one_seconds))
                single_solving.append(statistics.fmean(one_solving))
                single_cpu += one_cpu
                host_cpu += [max(c) for c in cpu]
                multi.append(statistics.fmean(dist_seconds))  # (a sweep read late makes the next look short)
                traffic += sent
                row = {"round": round_, "one_host_seconds": one_seconds, "one_host_solving_seconds": one_solving,
                       "distributed_seconds": dist_seconds,
                       "one_host_cpu_seconds": one_cpu, "busiest_host_cpu_seconds": [max(c) for c in cpu],
                       "one_host_loss": one_loss, "distributed_loss": dist_loss,
                       "mib_between_sent_gathered_per_sweep": sent, "loadavg": os.getloadavg()[0]}
                results["rounds"].append(row)
                print(json.dumps(row), flush=True)
    results["median_one_host"] = statistics.median(single)
    results["median_distributed"] = statistics.median(multi)
    results["speedup"] = results["median_one_host"] / results["median_distributed"]
    results["median_one_host_solving"] = statistics.median(single_solving)
    results["speedup_vs_solving_only"] = results["median_one_host_solving"] / results["median_distributed"]
    results["median_one_host_cpu"] = statistics.median(single_cpu)
    results["median_busiest_host_cpu"] = statistics.median(host_cpu)
    results["cpu_ratio"] = results["median_one_host_cpu"] / results["median_busiest_host_cpu"]
    for i, name in enumerate(("between_hosts", "sent_by_driver", "gathered_by_driver")):
        results[f"mib_{name}_per_sweep"] = statistics.median(t[i] for t in traffic)
    print(json.dumps({k: v for k, v in results.items() if k != "rounds"}), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
