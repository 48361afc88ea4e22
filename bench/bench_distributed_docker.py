"""FM or WALS on several hosts in real containers: one container on one core against two containers on a Docker
network of their own (``algo-1``, ``algo-2``, each pinned to one core with ``--cpuset-cpus``), same data, in one
invocation, interleaved; the per-epoch (WALS: per-sweep) time (median of the epochs after the first), the
speed-up, the test AUC (WALS: the last training loss) and the bytes sent per synchronisation (from the driver's
log); optionally three hosts (on the two cores: their bytes per synchronisation and AUC, not a speed figure).

    .venv/bin/python -m bench.bench_distributed_docker                       # CTR set, 1 vs 2 hosts, 2 repeats
    .venv/bin/python -m bench.bench_distributed_docker --rows 300000 --epochs 4 --hosts 1 2 3
    IMAGE=fm-wals:hosts .venv/bin/python -m bench.bench_distributed_docker --distributions ShardedByS3Key
    .venv/bin/python -m bench.bench_distributed_docker --algorithm wals --epochs 4 --distributions ShardedByS3Key

FM: the CTR bench set as RecordIO (k=8). WALS: the implicit bench set (100,000 x 20,000, 5M counts) as CSV
triplets with string ids, k=64, ``alpha=40, unobserved_weight=1, regularization_coeff=10``, cholesky. The image
(``$IMAGE``, default fm-wals:latest) must have the multi-host engine. Epoch seconds are the train rows (WALS:
entries) over the driver's per-epoch ``#throughput_metric`` (the job's whole train channel, all hosts together).
WALS sweeps are timed from one sweep's line to the next (Docker's timestamps of the driver's output), on one host
and on several alike: a sweep's half-sweeps and its training loss (one host's throughput line counts the
half-sweeps alone; a distributed sweep's is this time), their mean after the first (a sweep whose line comes late
makes the next look short).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import statistics
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from bench import fm_data
from tests.container.hosts import (
    FULLY_REPLICATED,
    SHARDED,
    Channel,
    DockerHosts,
    epoch_seconds,
    final_test_auc,
    write_rows,
)

REPO = Path(__file__).resolve().parent.parent
SPEED_GOAL = 1.7
_SYNC = re.compile(r"Epoch \d+: (\d+) synchroni[sz]ation\(s\) of the \d+ hosts, (\S+) MB sent")
_LOSS = re.compile(r"#quality_metric: host=\S+, epoch=\d+, train loss <loss>=(\S+)")


def _write_set(root: Path, rows: int | None, files: int) -> tuple[dict[str, tuple[Path, ...]], int, int]:
    """The CTR set as RecordIO: train in ``files`` parts (contiguous rows), test in one; (files, train rows,
    feature_dim)."""
    data = fm_data.load("ctr", rows=rows)

    def matrix(csr: Any) -> sp.csr_matrix:
        return sp.csr_matrix((csr.data, csr.indices, csr.indptr), shape=(csr.n_rows, csr.n_cols))

    train, test = matrix(data.train), matrix(data.test)
    parts = np.array_split(np.arange(data.train.n_rows), files)
    train_files = tuple(write_rows(root / "train" / f"part-{i}.pbr", train[p], data.train.labels[p])
                        for i, p in enumerate(parts))
    test_file = write_rows(root / "test" / "part-0.pbr", test, data.test.labels)
    return {"train": train_files, "test": (test_file,)}, data.train.n_rows, data.feature_dim


def _write_wals_set(root: Path, nnz: int, files: int) -> tuple[dict[str, tuple[Path, ...]], int]:
    """The implicit bench set as CSV triplets ``u<row>,i<col>,<count>`` in ``files`` parts of contiguous
    entries; (files, entries)."""
    from bench.wals_data import implicit_counts

    counts = implicit_counts(0, nnz=nnz).tocoo()
    paths = []
    for i, part in enumerate(np.array_split(np.arange(counts.nnz), files)):
        path = root / "train" / f"part-{i}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as out:
            out.write("row,col,value\n")
            out.write("".join(f"u{r},i{c},{int(v)}\n" for r, c, v in
                              zip(counts.row[part], counts.col[part], counts.data[part], strict=True)))
        paths.append(path)
    return {"train": tuple(paths)}, int(counts.nnz)


def _sweep_seconds(stamped: str) -> list[float]:
    """Seconds between consecutive ``#throughput_metric`` lines of a Docker log with ``--timestamps``."""
    times = [datetime.fromisoformat(line.split(" ", 1)[0][:26]).timestamp()
             for line in stamped.splitlines() if "#throughput_metric" in line]
    return [b - a for a, b in itertools.pairwise(times)]


def _run(image: str, root: Path, hosts: int, distribution: str, files: dict[str, tuple[Path, ...]],
         hp: dict[str, str], rows: int, timeout: float) -> dict[str, Any]:
    job = DockerHosts(image, root, hosts, prefix="bench-hosts")
    try:
        if "test" in files:
            job.configure(hp, {"train": Channel(files["train"], distribution), "test": Channel(files["test"])})
        else:  # WALS: CSV triplets, no test channel
            job.configure(hp, {"train": Channel(files["train"], distribution, "text/csv")})
        job.start_all(cpus=[str(rank % 2) for rank in range(hosts)])
        codes = job.wait(timeout)
        output = job.logs("algo-1")
        stamped = job.logs("algo-1", timestamps=True)
        if any(code != 0 for code in codes.values()):
            raise RuntimeError(f"run failed {codes}: {job.failure('algo-1')}\n{output[-3000:]}")
    finally:
        job.remove()
    epochs = epoch_seconds(output, rows) if "test" in files else _sweep_seconds(stamped)
    syncs = [(int(n), float(mb)) for n, mb in _SYNC.findall(output)]
    losses = _LOSS.findall(output)
    return {"hosts": hosts, "distribution": distribution, "epoch_seconds": epochs,
            "epoch_s": statistics.median(epochs[1:] or epochs) if "test" in files else statistics.fmean(epochs),
            "test_auc": final_test_auc(output) if "test" in files else math.nan,
            "train_loss": float(losses[-1]) if losses else math.nan,
            "syncs_per_epoch": [n for n, _ in syncs], "mb_per_sync": [mb for _, mb in syncs],
            "loadavg": Path("/proc/loadavg").read_text().split()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--algorithm", choices=("fm", "wals"), default="fm")
    parser.add_argument("--rows", type=int, default=None, help="train rows of the CTR set (default: all 900,000)")
    parser.add_argument("--nnz", type=int, default=5_000_000, help="WALS: entries of the implicit set")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--mini-batch-size", type=int, default=1000)
    parser.add_argument("--sync-every", type=int, default=None, help="the sync_every hyperparameter (default: "
                                                                     "the image's)")
    parser.add_argument("--hosts", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--distributions", nargs="+", default=[SHARDED, FULLY_REPLICATED],
                        choices=(SHARDED, FULLY_REPLICATED))
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args()
    image = os.environ.get("IMAGE") or "fm-wals:latest"
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=REPO / "bench") as tmp:
        # lcm(hosts) files: every host count gets an equal number of files under ShardedByS3Key
        if args.algorithm == "wals":
            files, rows = _write_wals_set(Path(tmp) / "data", args.nnz, math.lcm(*args.hosts))
            hp = {"algorithm": "wals", "embedding_dimension": "64", "alpha": "40", "unobserved_weight": "1",
                  "regularization_coeff": "10", "solver": "cholesky", "max_sweeps": str(args.epochs),
                  "num_threads": "1"}
        else:
            files, rows, feature_dim = _write_set(Path(tmp) / "data", args.rows, math.lcm(*args.hosts))
            hp = {"feature_dim": str(feature_dim), "num_factors": str(args.k), "predictor_type": "binary_classifier",
                  "epochs": str(args.epochs), "mini_batch_size": str(args.mini_batch_size), "num_threads": "1"}
            if args.sync_every is not None:
                hp["sync_every"] = str(args.sync_every)
        plan = [(h, d) for h in args.hosts for d in (args.distributions if h > 1 else [FULLY_REPLICATED])]
        for repeat in range(args.repeat):
            for hosts, distribution in plan:  # interleaved: each repeat runs every variant once
                run = _run(image, Path(tmp) / "opt_ml", hosts, distribution, files, hp, rows, args.timeout)
                run["repeat"] = repeat
                results.append(run)
                print(f"{hosts} host(s) {distribution:15} repeat {repeat}: epoch {run['epoch_s']:.2f} s, test AUC "
                      f"{run['test_auc']:.4f}, train loss {run['train_loss']:.6g}, MB/sync {run['mb_per_sync'][:1]}, "
                      f"syncs/epoch "
                      f"{run['syncs_per_epoch'][:1]}, load {run['loadavg']}", flush=True)
    summary = _summary(results)
    for line in summary["lines"]:
        print(line)
    out = REPO / "bench" / "results" / f"distributed_docker_{time.strftime('%Y%m%d_%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out = out.with_name(out.name.replace("distributed_docker", f"distributed_docker_{args.algorithm}"))
    out.write_text(json.dumps({"args": vars(args), "image": image, "train_rows": rows, "runs": results,
                               "summary": summary}, indent=1))
    print(f"results: {out}")


def _summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians per variant and each multi-host variant's speed-up and AUC difference against one host."""
    variants: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for run in results:
        variants.setdefault((run["hosts"], run["distribution"]), []).append(run)
    base = variants.get((1, FULLY_REPLICATED))
    lines, table = [], []
    for (hosts, distribution), runs in sorted(variants.items()):
        epoch = statistics.median(r["epoch_s"] for r in runs)
        auc = statistics.median(r["test_auc"] for r in runs)
        mb = [m for r in runs for m in r["mb_per_sync"]]
        row = {"hosts": hosts, "distribution": distribution, "epoch_s": epoch, "test_auc": auc,
               "mb_per_sync": statistics.median(mb) if mb else None}
        if base is not None and hosts > 1:
            row["speedup"] = statistics.median(r["epoch_s"] for r in base) / epoch
            row["auc_minus_one_host"] = auc - statistics.median(r["test_auc"] for r in base)
        table.append(row)
        loss = statistics.median(r["train_loss"] for r in runs)
        text = f"{hosts} host(s) {distribution:15}: epoch {epoch:.3f} s (median), test AUC {auc:.4f}, loss {loss:.9g}"
        if "speedup" in row:
            text += (f", {row['speedup']:.2f}x one host (goal >= {SPEED_GOAL} at 2 hosts), AUC "
                     f"{row['auc_minus_one_host']:+.4f}")
        if row["mb_per_sync"] is not None:
            text += f", {row['mb_per_sync']:.2f} MB per synchronisation"
        lines.append(text)
    return {"table": table, "lines": lines}


if __name__ == "__main__":
    main()
