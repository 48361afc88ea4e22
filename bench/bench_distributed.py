"""FM on two hosts against one: real ``train`` processes on loopback addresses, each host pinned to one core.

    .venv/bin/python -m bench.bench_distributed                         # CTR bench set, 3 epochs, 2 repeats
    .venv/bin/python -m bench.bench_distributed --rows 200000 --sync-every 5 20 --repeats 1

One host: ``train`` on 127.0.0.1 under ``taskset -c 0``. Two hosts: 127.0.0.1 (``taskset -c 0``, drives) and
127.0.0.2 (``taskset -c 1``), the train channel FullyReplicated (each host keeps every other row), the test
channel scored on the first. The ceiling of two hosts on this machine: two one-host jobs at once, one per core,
each on every other row (nothing exchanged; the slower one's epoch): the cores share the memory system, and the
kernels' random reads of the table slow each other down. Runs are interleaved (one host, the ceiling, then each
sync_every on two, repeated). Per run: the median epoch time from the #throughput_metric lines (two hosts:
training plus the synchronisations), the final test AUC and the bytes sent per synchronisation; then the medians
and the ratio one host / the run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
THROUGHPUT = re.compile(r"train throughput=([0-9.]+) records/second")
TEST_AUC = re.compile(r"#quality_metric: host=\S+, test auc <score>=([0-9.]+)")
SENT = re.compile(r"([0-9.]+) MB sent per synchronisation")


def _write_channel(directory: Path, rows: Any) -> None:
    from container.formats.recordio import write_spmatrix_to_sparse_tensor

    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "part.rec", "wb") as out:
        write_spmatrix_to_sparse_tensor(out, rows.to_scipy(), rows.labels)


def _job(base: Path, host: str, hosts: list[str], hp: dict[str, str], data: Any, test: bool) -> None:
    (base / "input/config").mkdir(parents=True, exist_ok=True)
    (base / "input/config/hyperparameters.json").write_text(json.dumps(hp))
    (base / "input/config/resourceconfig.json").write_text(json.dumps(
        {"current_host": host, "hosts": hosts, "network_interface_name": "lo"}))
    channels = {"train": {"S3DistributionType": "FullyReplicated"}}
    train_dir = base / "input/data/train"
    if not train_dir.exists():
        _write_channel(train_dir, data.train)
    if test:
        channels["test"] = {"S3DistributionType": "FullyReplicated"}
        _write_channel(base / "input/data/test", data.test)
    (base / "input/config/inputdataconfig.json").write_text(json.dumps(channels))


CEILING = "two one-host jobs at once"


def _half(data: Any, rank: int) -> Any:
    """Every other row of the set from ``rank`` (a FullyReplicated host's share), the test set kept."""
    from algorithm.csr import CSR

    train = CSR.from_matrix(data.train.to_scipy()[rank::2], labels=data.train.labels[rank::2])
    return dataclasses.replace(data, train=train)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _run(bases: list[Path], cores: list[int], timeout: float) -> list[str]:
    port = _free_port()
    env = dict(os.environ, FMWALS_SCHEDULER_PORT=str(port), FMWALS_WORKER_PORT=str(port + 2),
               FMWALS_HOST_WAIT_SECONDS="60", PYTHONPATH=str(REPO))
    procs = []
    for base, core in zip(bases, cores, strict=True):
        out = open(base / "train.log", "w")  # noqa: SIM115 - closed below
        procs.append((subprocess.Popen(["taskset", "-c", str(core), sys.executable, str(REPO / "train")],
                                       env=dict(env, SAGEMAKER_BASE_DIR=str(base)), stdout=out,
                                       stderr=subprocess.STDOUT), out))
    for proc, out in procs:
        proc.wait(timeout=timeout)
        out.close()
    logs = [(base / "train.log").read_text() for base in bases]
    for (proc, _), base, text in zip(procs, bases, logs, strict=True):
        if proc.returncode != 0:
            raise SystemExit(f"train under {base} exited {proc.returncode}:\n{text[-3000:]}")
    return logs


def _measure(log: str, train_rows: int) -> dict[str, float]:
    seconds = [train_rows / float(rate) for rate in THROUGHPUT.findall(log)]
    sent = [float(mb) for mb in SENT.findall(log)]
    aucs = TEST_AUC.findall(log)
    return {"epoch_s": statistics.median(seconds), "auc": float(aucs[-1]) if aucs else math.nan,
            "mb_per_sync": statistics.median(sent) if sent else 0.0}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=None, help="training rows of the CTR set (default: all)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--sync-every", type=int, nargs="+", default=[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800)
    args = parser.parse_args(argv)

    from bench import fm_data

    data = fm_data.load("ctr", rows=args.rows)
    hosts = ["127.0.0.1", "127.0.0.2"]
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-distributed-") as tmp:
        root = Path(tmp)
        for repeat in range(args.repeats):
            for variant in ["one host", CEILING, *[f"two hosts, sync_every={s}" for s in args.sync_every]]:
                hp = {"feature_dim": str(data.feature_dim), "num_factors": str(args.k), "predictor_type": data.task,
                      "epochs": str(args.epochs), "num_threads": "1", "data_loading": "memory"}
                if variant == "one host":
                    base = root / "one"
                    _job(base, hosts[0], hosts[:1], hp, data, test=True)
                    logs = _run([base], [0], args.timeout)
                elif variant == CEILING:
                    bases = [root / "apart" / host for host in hosts]
                    for rank, (base, host) in enumerate(zip(bases, hosts, strict=True)):
                        _job(base, host, [host], hp, _half(data, rank), test=rank == 0)
                    logs = _run(bases, [0, 1], args.timeout)
                    measured = max((_measure(log, data.train.n_rows // 2) for log in logs),
                                   key=lambda m: m["epoch_s"])
                else:
                    hp["sync_every"] = variant.rsplit("=", 1)[1]
                    bases = [root / "two" / host for host in hosts]
                    for base, host in zip(bases, hosts, strict=True):
                        _job(base, host, hosts, hp, data, test=host == hosts[0])
                    logs = _run(bases, [0, 1], args.timeout)
                if variant != CEILING:
                    measured = _measure(logs[0], data.train.n_rows)
                for line in re.findall(r"Epoch \d+: .*", logs[0]):
                    print("   ", line, flush=True)
                results.setdefault(variant, []).append(measured)
                print(f"repeat {repeat} {variant}: {measured}  load {os.getloadavg()[0]:.2f}",
                      flush=True)
    one = statistics.median(r["epoch_s"] for r in results["one host"])
    print(f"\nCTR set: {data.train.n_rows} train rows, k={args.k}, {args.epochs} epochs, medians of {args.repeats}")
    for variant, runs in results.items():
        epoch = statistics.median(r["epoch_s"] for r in runs)
        print(f"{variant:28s} epoch {epoch:7.3f} s  speed-up {one / epoch:5.2f}x  test AUC "
              f"{statistics.median(r['auc'] for r in runs):.4f}  MB per sync "
              f"{statistics.median(r['mb_per_sync'] for r in runs):8.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
