"""SIGTERM on a real ``train`` process training FM on the CTR bench set: the seconds from the signal to the exit
(with its checkpoint) against SageMaker's allowance before SIGKILL (10 s), and the restarted job completing.

    .venv/bin/python -m bench.bench_fm_sigterm                       # 900,000 rows, k=8, 2 threads, in memory
    .venv/bin/python -m bench.bench_fm_sigterm --mode file           # streamed from the File-mode block cache
    .venv/bin/python -m bench.bench_fm_sigterm --mode pipe           # streamed from a FIFO per epoch
    .venv/bin/python -m bench.bench_fm_sigterm --rows 200000 --deterministic --data-dir /path/to/bench/data

The job reads the training rows as RecordIO-protobuf with /opt/ml/checkpoints present: in File mode decoded into
memory (``--mode memory``) or streamed through the on-disk block cache (``file``), or streamed in Pipe mode from a
FIFO per epoch that a writer thread feeds (``pipe``). The signal is sent ``--into`` seconds after the first
epoch's checkpoint appears (mid-epoch). Prints the stop seconds and their ratio to the 10 s allowance (goal
<= 1), the checkpoint's position, size and the seconds its save took (the job's log), and the restarted job
(new input, the checkpoint directory copied, as on a new host): its exit status and time, its resume line and,
when streamed, the seconds it took to skip the blocks done.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from algorithm.checkpoint import META_FILE
from bench import fm_data
from container.formats.recordio import write_spmatrix_to_sparse_tensor

REPO = Path(__file__).resolve().parent.parent
ALLOWANCE_SECONDS = 10.0


class _Pipes:
    """Feeds ``source`` into the FIFO ``train_<p>`` of each pass p under ``channels`` until ``close()``."""

    def __init__(self, channels: Path, source: Path) -> None:
        self.channels, self.source, self.closed = channels, source, threading.Event()
        self.thread = threading.Thread(target=self._feed, daemon=True)
        self.thread.start()

    def _feed(self) -> None:
        for p in range(1000):
            fifo = self.channels / f"train_{p}"
            os.mkfifo(fifo)
            fd = None
            while fd is None and not self.closed.is_set():
                try:
                    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                except OSError as err:
                    if err.errno != errno.ENXIO:  # (ENXIO: no reader yet)
                        raise
                    time.sleep(0.005)
            if fd is None:
                return
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
            try:
                with os.fdopen(fd, "wb") as out, open(self.source, "rb") as data:
                    shutil.copyfileobj(data, out, 1 << 20)
            except BrokenPipeError:  # the job stopped reading
                return

    def close(self) -> None:
        self.closed.set()
        self.thread.join(timeout=30)


def _job(base: Path, recordio: Path, feature_dim: int, args: argparse.Namespace) -> _Pipes | None:
    """The job's /opt/ml under ``base``; the FIFO writer of a Pipe-mode job."""
    (base / "input/config").mkdir(parents=True)
    hp = {"feature_dim": feature_dim, "num_factors": args.k, "predictor_type": "binary_classifier",
          "epochs": 3, "num_threads": args.threads, "deterministic": args.deterministic,
          "data_loading": "memory" if args.mode == "memory" else "stream"}
    (base / "input/config/hyperparameters.json").write_text(json.dumps({k: str(v) for k, v in hp.items()}))
    (base / "input/config/inputdataconfig.json").write_text(json.dumps(
        {"train": {"ContentType": "application/x-recordio-protobuf",
                   "TrainingInputMode": "Pipe" if args.mode == "pipe" else "File"}}))
    (base / "checkpoints").mkdir()
    if args.mode == "pipe":
        (base / "input/data").mkdir(parents=True)
        return _Pipes(base / "input/data", recordio)
    (base / "input/data/train").mkdir(parents=True)
    os.link(recordio, base / "input/data/train/part-0.pbr")
    return None


def _train(base: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(REPO / "train")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={"SAGEMAKER_BASE_DIR": str(base),
                                                                      "PATH": "/usr/bin:/bin"})


def _position(progress: dict) -> str:
    position = progress["position"]
    if isinstance(position, dict):
        return f"epoch {progress['epoch']} block {position['blocks']} ({position['rows']} rows)"
    return f"epoch {progress['epoch']} row {position}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("memory", "file", "pipe"), default="memory")
    parser.add_argument("--rows", type=int, default=None, help="training rows (default: all 900,000)")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--into", type=float, default=0.3, help="seconds after epoch 0's checkpoint")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    data = fm_data.load("ctr", data_dir=args.data_dir, rows=args.rows)
    with tempfile.TemporaryDirectory() as scratch:
        recordio = Path(scratch) / "train.pbr"
        with open(recordio, "wb") as out:
            write_spmatrix_to_sparse_tensor(out, data.train.to_scipy(), data.train.labels)
        base = Path(scratch) / "stopped"
        pipes = _job(base, recordio, data.feature_dim, args)
        checkpoint = base / "checkpoints" / META_FILE
        proc = _train(base)
        while not checkpoint.exists():
            if proc.poll() is not None:
                sys.exit(f"train ended (exit {proc.returncode}) before its first checkpoint:\n{proc.stdout.read()}"
                         if proc.stdout else "train ended early")
            time.sleep(0.01)
        time.sleep(args.into)
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        out, _ = proc.communicate()
        stop = time.monotonic() - sent
        if pipes is not None:
            pipes.close()
        progress = json.loads(checkpoint.read_text())["progress"]
        size = sum(path.stat().st_size for path in checkpoint.parent.iterdir())
        saves = re.findall(r"Checkpoint written: \S+ \(([\d.]+) MiB of arrays, ([\d.]+) s\)", out)
        failure = (base / "output/failure").read_text().strip() if (base / "output/failure").exists() else "-"
        ratio = stop / ALLOWANCE_SECONDS
        print(f"mode={args.mode} rows={data.train.n_rows} k={args.k} threads={args.threads} "
              f"deterministic={args.deterministic}: SIGTERM -> exit {proc.returncode} in {stop:.2f} s, ratio to the "
              f"{ALLOWANCE_SECONDS:g} s allowance {ratio:.3f} "
              f"{'PASS' if ratio <= 1 and proc.returncode == 143 else 'MISS'}; checkpoint at {_position(progress)} "
              f"({size / 2**20:.1f} MiB on disk)")
        print("saves (MiB of arrays, s): " + ", ".join(f"{mib} MiB {seconds} s" for mib, seconds in saves)
              + " (the last: on SIGTERM)")
        print(f"output/failure: {failure}")
        restarted = Path(scratch) / "restarted"
        pipes = _job(restarted, recordio, data.feature_dim, args)
        shutil.rmtree(restarted / "checkpoints")
        shutil.copytree(base / "checkpoints", restarted / "checkpoints")
        started = time.monotonic()
        proc = _train(restarted)
        out, _ = proc.communicate()
        if pipes is not None:
            pipes.close()
        lines = [line.strip() for line in out.splitlines() if "Resuming from checkpoint" in line or "Skipped" in line]
        print(f"restarted job: exit {proc.returncode} in {time.monotonic() - started:.1f} s")
        for line in lines or ["no resume line"]:
            print(f"  {line}")


if __name__ == "__main__":
    main()
