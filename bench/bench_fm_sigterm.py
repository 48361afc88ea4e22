"""SIGTERM on a real ``train`` process training FM on the CTR bench set: the seconds from the signal to the exit
(with its checkpoint) against SageMaker's allowance before SIGKILL (10 s), and the restarted job completing.

    .venv/bin/python -m bench.bench_fm_sigterm                       # 900,000 rows, k=8, 2 threads
    .venv/bin/python -m bench.bench_fm_sigterm --rows 200000 --deterministic --data-dir /path/to/bench/data

The job reads the training rows as RecordIO-protobuf in File mode with /opt/ml/checkpoints present; the signal
is sent ``--into`` seconds after the first epoch's checkpoint appears (mid-epoch). Prints the stop seconds and
their ratio to the 10 s allowance (goal <= 1), the checkpoint's position and size, and the restarted job's exit
status and time.
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from algorithm.checkpoint import META_FILE
from bench import fm_data
from container.formats.recordio import write_spmatrix_to_sparse_tensor

REPO = Path(__file__).resolve().parent.parent
ALLOWANCE_SECONDS = 10.0


def _job(base: Path, data: fm_data.BenchData, args: argparse.Namespace) -> None:
    (base / "input/config").mkdir(parents=True)
    hp = {"feature_dim": data.feature_dim, "num_factors": args.k, "predictor_type": "binary_classifier",
          "epochs": 3, "num_threads": args.threads, "deterministic": args.deterministic}
    (base / "input/config/hyperparameters.json").write_text(json.dumps({k: str(v) for k, v in hp.items()}))
    (base / "input/config/inputdataconfig.json").write_text(json.dumps(
        {"train": {"ContentType": "application/x-recordio-protobuf", "TrainingInputMode": "File"}}))
    (base / "input/data/train").mkdir(parents=True)
    with open(base / "input/data/train/part-0.pbr", "wb") as out:
        write_spmatrix_to_sparse_tensor(out, data.train.to_scipy(), data.train.labels)
    (base / "checkpoints").mkdir()


def _train(base: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(REPO / "train")], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={"SAGEMAKER_BASE_DIR": str(base),
                                                                      "PATH": "/usr/bin:/bin"})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=None, help="training rows (default: all 900,000)")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--deterministic", action="store_true")
    parser.add_argument("--into", type=float, default=0.3, help="seconds after epoch 0's checkpoint")
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    data = fm_data.load("ctr", data_dir=args.data_dir, rows=args.rows)
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        _job(base, data, args)
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
        progress = json.loads(checkpoint.read_text())["progress"]
        size = sum(path.stat().st_size for path in checkpoint.parent.iterdir())
        failure = (base / "output/failure").read_text().strip() if (base / "output/failure").exists() else "-"
        ratio = stop / ALLOWANCE_SECONDS
        print(f"rows={data.train.n_rows} k={args.k} threads={args.threads} deterministic={args.deterministic}: "
              f"SIGTERM -> exit {proc.returncode} in {stop:.2f} s, ratio to the {ALLOWANCE_SECONDS:g} s allowance "
              f"{ratio:.3f} {'PASS' if ratio <= 1 and proc.returncode == 143 else 'MISS'}; checkpoint at epoch "
              f"{progress['epoch']} row {progress['position']} ({size / 2**20:.1f} MiB)")
        print(f"output/failure: {failure}")
        (base / "output/failure").unlink(missing_ok=True)
        started = time.monotonic()
        restarted = _train(base)
        out, _ = restarted.communicate()
        resumed = next((line for line in out.splitlines() if "Resuming from checkpoint" in line), "no resume line")
        print(f"restarted job: exit {restarted.returncode} in {time.monotonic() - started:.1f} s; {resumed.strip()}")


if __name__ == "__main__":
    main()
