"""`train` as a local process with /opt/ml/checkpoints: killed (SIGKILL) or stopped (SIGTERM) mid-training and
started again with the same checkpoint directory, it ends with the model of an uninterrupted run (in memory, and
streamed in File mode and in Pipe mode, mid-epoch); checkpoints it cannot resume end with exit 1 and a reason
naming the file."""

from __future__ import annotations

import errno
import fcntl
import io
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from algorithm import artifact
from algorithm.checkpoint import META_FILE
from container.formats.recordio import write_spmatrix_to_sparse_tensor

ROOT = Path(__file__).resolve().parents[2]
# Big enough that an epoch takes a noticeable time (two kernel calls of 65,536 rows), small enough for CI.
FM_HP = {"feature_dim": "1000", "num_factors": "32", "predictor_type": "binary_classifier", "epochs": "6",
         "mini_batch_size": "100", "num_threads": "1", "seed": "3", "checkpoint_interval_minutes": "0"}
WALS_HP = {"algorithm": "wals", "embedding_dimension": "48", "max_sweeps": "12", "regularization_coeff": "0.5",
           "num_threads": "1"}
STOP_SECONDS = 10  # SageMaker's SIGTERM-to-SIGKILL allowance the job must stay within
# Streamed: blocks of 1 MiB (stream_buffer_mb=4), about 29 per epoch of the clicks; two threads, deterministic.
STREAM_HP = {**FM_HP, "epochs": "3", "num_threads": "2", "deterministic": "true", "data_loading": "stream",
             "stream_buffer_mb": "4"}


def _clicks(rows: int = 120_000) -> bytes:
    """RecordIO of the first ``rows`` of 120,000 one-hot click-like rows (20 fields of 50 values)."""
    rng = np.random.default_rng(0)
    n, fields, values = 120_000, 20, 50
    cols = (rng.integers(0, values, (n, fields)) + np.arange(fields) * values).ravel()
    x = sp.csr_matrix((np.ones(n * fields, np.float32), cols, np.arange(0, n * fields + 1, fields)),
                      shape=(n, fields * values))
    y = (rng.random(n) < 1 / (1 + np.exp(-(x @ rng.normal(0, 0.5, fields * values) - 1.5)))).astype(np.float32)
    buf = io.BytesIO()
    write_spmatrix_to_sparse_tensor(buf, x[:rows], y[:rows])
    return buf.getvalue()


@pytest.fixture(scope="module")
def clicks() -> bytes:
    return _clicks()


@pytest.fixture(scope="module")
def ratings() -> bytes:
    """CSV triplets of a 3,000 x 2,000 ratings matrix with about 150,000 entries."""
    rng = np.random.default_rng(0)
    n = 150_000
    rows, cols, values = rng.integers(0, 3000, n), rng.integers(0, 2000, n), rng.integers(1, 6, n)
    return "".join(f"{r},{c},{v}\n" for r, c, v in zip(rows, cols, values, strict=True)).encode()


def _job(base: Path, hp: dict[str, str], train: bytes, content_type: str, checkpoints: bool = True,
         mode: str = "File") -> Path:
    (base / "input/config").mkdir(parents=True)
    (base / "input/config/hyperparameters.json").write_text(json.dumps(hp))
    (base / "input/config/inputdataconfig.json").write_text(json.dumps(
        {"train": {"ContentType": content_type, "TrainingInputMode": mode}}))
    if mode == "File":
        (base / "input/data/train").mkdir(parents=True)
        (base / "input/data/train/part-0").write_bytes(train)
    else:
        (base / "input/data").mkdir(parents=True)
    if checkpoints:
        (base / "checkpoints").mkdir()
    return base


def _start(base: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, str(ROOT / "train")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={"SAGEMAKER_BASE_DIR": str(base), "PATH": "/usr/bin:/bin"})


def _run(base: Path) -> tuple[int, str, str | None]:
    proc = _start(base)
    out, _ = proc.communicate(timeout=600)
    failure = base / "output/failure"
    return proc.returncode, out, failure.read_text() if failure.exists() else None


def _wait_for_checkpoint(proc: subprocess.Popen[str], base: Path, key: str, at_least: int) -> dict:
    """Poll checkpoint.json until its progress[key] reaches ``at_least``; the progress then."""
    return _wait_for_progress(proc, base, lambda progress: progress[key] >= at_least,
                              f"no checkpoint with {key} >= {at_least}")


def _wait_for_position(proc: subprocess.Popen[str], base: Path, epoch: int, blocks: int) -> None:
    """Poll checkpoint.json until it is at ``blocks`` or more blocks into ``epoch`` (or later)."""
    _wait_for_progress(proc, base, lambda progress: (progress["epoch"], progress["position"]["blocks"]) >=
                       (epoch, blocks), f"no checkpoint at epoch {epoch}, block {blocks}")


def _wait_for_progress(proc: subprocess.Popen[str], base: Path, reached: Callable[[dict], bool], what: str) -> dict:
    """Poll checkpoint.json until ``reached(its progress)``; the progress then."""
    path = base / "checkpoints" / META_FILE
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the job ended before the checkpoint the test waits for"
        try:
            progress = json.loads(path.read_text())["progress"]
        except (FileNotFoundError, json.JSONDecodeError):  # not there yet (the rename makes it whole)
            progress = None
        if progress is not None and reached(progress):
            return progress
        time.sleep(0.005)
    raise AssertionError(what)


class _Pipes:
    """A writer thread that makes the FIFO ``train_<p>`` of each pass p in turn and writes ``body`` into it, as the
    platform does, until ``close()`` (or the reader goes away)."""

    def __init__(self, base: Path, body: bytes) -> None:
        self.base, self.body, self.closed = base, body, threading.Event()
        self.thread = threading.Thread(target=self._feed, daemon=True)
        self.thread.start()

    def _feed(self) -> None:
        for p in range(100):
            fifo = self.base / "input/data" / f"train_{p}"
            os.mkfifo(fifo)
            fd = self._open(fifo)
            if fd is None:
                return
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
            try:
                with os.fdopen(fd, "wb") as out:
                    out.write(self.body)
            except BrokenPipeError:  # the job stopped reading
                return

    def _open(self, fifo: Path) -> int | None:
        """The FIFO opened for writing once a reader has it open; None once closed."""
        while not self.closed.is_set():
            try:
                return os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as err:
                if err.errno != errno.ENXIO:  # (ENXIO: no reader yet)
                    raise
            time.sleep(0.005)
        return None

    def close(self) -> None:
        self.closed.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


def _streamed_job(base: Path, clicks: bytes, mode: str, checkpoints: bool = True, **hp: str) -> Path:
    return _job(base, {**STREAM_HP, **hp}, clicks, "application/x-recordio-protobuf", checkpoints, mode)


def _run_streamed(base: Path, clicks: bytes, mode: str) -> tuple[int, str, str | None]:
    pipes = _Pipes(base, clicks) if mode == "Pipe" else None
    try:
        return _run(base)
    finally:
        if pipes is not None:
            pipes.close()


def _arrays(base: Path) -> dict[str, np.ndarray]:
    return artifact.read(base / "model")[1]


def _same(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.fixture(scope="module")
def fm_uninterrupted(tmp_path_factory: pytest.TempPathFactory, clicks: bytes) -> dict[str, np.ndarray]:
    base = _job(tmp_path_factory.mktemp("whole"), FM_HP, clicks, "application/x-recordio-protobuf",
                checkpoints=False)
    code, out, _ = _run(base)
    assert code == 0, out
    assert "Checkpoints are off" in out
    return _arrays(base)


def test_fm_killed_after_epoch_3_of_6_resumes_to_the_uninterrupted_model(
        tmp_path: Path, clicks: bytes, fm_uninterrupted: dict[str, np.ndarray]) -> None:
    base = _job(tmp_path, FM_HP, clicks, "application/x-recordio-protobuf")
    proc = _start(base)
    _wait_for_checkpoint(proc, base, "epoch", 3)
    proc.kill()
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (base / "model").exists() or not any((base / "model").iterdir())
    code, out, failure = _run(base)
    assert code == 0 and failure is None, out
    assert "Resuming from checkpoint" in out and "Checkpoints on in" in out
    _same(_arrays(base), fm_uninterrupted)


def test_fm_sigterm_mid_epoch_exits_in_time_with_a_checkpoint_and_the_restart_completes(
        tmp_path: Path, clicks: bytes, fm_uninterrupted: dict[str, np.ndarray]) -> None:
    base = _job(tmp_path, FM_HP, clicks, "application/x-recordio-protobuf")
    proc = _start(base)
    _wait_for_checkpoint(proc, base, "epoch", 2)
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    out, _ = proc.communicate(timeout=60)
    assert time.monotonic() - sent < STOP_SECONDS
    assert proc.returncode == 128 + signal.SIGTERM, out
    failure = (base / "output/failure").read_text()
    assert failure.startswith("Training stopped by SIGTERM in epoch ") or "after epoch" in failure, failure
    assert f"checkpoint {base / 'checkpoints' / META_FILE} written" in failure
    assert "Received SIGTERM" in out
    assert not (base / "model").exists() or not any((base / "model").iterdir())
    (base / "output/failure").unlink()
    code, out, failure = _run(base)
    assert code == 0 and failure is None, out
    assert "Resuming from checkpoint" in out
    _same(_arrays(base), fm_uninterrupted)


@pytest.fixture(scope="module")
def streamed_uninterrupted(tmp_path_factory: pytest.TempPathFactory, clicks: bytes) -> dict[str, dict]:
    """The models of uninterrupted streamed jobs, by mode."""
    models = {}
    for mode in ("File", "Pipe"):
        base = _streamed_job(tmp_path_factory.mktemp(f"streamed-{mode}"), clicks, mode, checkpoints=False)
        code, out, _ = _run_streamed(base, clicks, mode)
        assert code == 0, out
        assert "Streaming FM training" in out
        models[mode] = _arrays(base)
    return models


@pytest.mark.parametrize("mode", ["File", "Pipe"])
@pytest.mark.parametrize("stop", ["sigterm", "sigkill"])
def test_streamed_fm_stopped_mid_epoch_resumes_to_the_uninterrupted_model(
        tmp_path: Path, clicks: bytes, streamed_uninterrupted: dict[str, dict], mode: str, stop: str) -> None:
    # SIGTERM: checkpoints at epoch ends and on the signal only; SIGKILL: after every block (a tiny interval)
    interval = "0" if stop == "sigterm" else "0.00001"
    base = _streamed_job(tmp_path / "stopped", clicks, mode, checkpoint_interval_minutes=interval)
    pipes = _Pipes(base, clicks) if mode == "Pipe" else None
    proc = _start(base)
    _wait_for_position(proc, base, 1, 0 if stop == "sigterm" else 4)
    time.sleep(0.05 if stop == "sigterm" else 0.0)  # a block or more into epoch 1, well before its end
    proc.send_signal(signal.SIGTERM if stop == "sigterm" else signal.SIGKILL)
    sent = time.monotonic()
    out, _ = proc.communicate(timeout=60)
    if pipes is not None:
        pipes.close()
    assert not (base / "model").exists() or not any((base / "model").iterdir())
    progress = json.loads((base / "checkpoints" / META_FILE).read_text())["progress"]
    epoch, blocks = progress["epoch"], progress["position"]["blocks"]
    assert blocks > 0, progress  # within an epoch
    if stop == "sigterm":
        assert time.monotonic() - sent < STOP_SECONDS
        assert proc.returncode == 128 + signal.SIGTERM, out
        failure = (base / "output/failure").read_text()
        assert failure.startswith(f"Training stopped by SIGTERM in epoch {epoch} after block {blocks} ("), failure
        assert f"checkpoint {base / 'checkpoints' / META_FILE} written" in failure
    else:
        assert proc.returncode == -signal.SIGKILL
    # started again on another host: new input, the checkpoint directory as the platform copies it in
    restarted = _streamed_job(tmp_path / "restarted", clicks, mode)
    shutil.rmtree(restarted / "checkpoints")
    shutil.copytree(base / "checkpoints", restarted / "checkpoints")
    code, out, failure = _run_streamed(restarted, clicks, mode)
    assert code == 0 and failure is None, out
    assert f"checkpoint {restarted / 'checkpoints' / META_FILE}: epoch {epoch}, block {blocks} (" in out
    assert f"Skipped the first {blocks} block(s)" in out
    if mode == "Pipe":
        assert f"{restarted / 'input/data/train_0'}" in out  # the resumed epoch reads the job's first FIFO
    _same(_arrays(restarted), streamed_uninterrupted[mode])


def test_a_streamed_checkpoint_beyond_the_data_fails_naming_it(tmp_path: Path, clicks: bytes) -> None:
    base = _streamed_job(tmp_path, clicks, "File", checkpoint_interval_minutes="0.00001")
    proc = _start(base)
    _wait_for_position(proc, base, 0, 20)
    proc.kill()
    proc.communicate(timeout=60)
    (base / "input/data/train/part-0").write_bytes(_clicks(60_000))  # half the rows: fewer blocks
    code, out, failure = _run(base)
    assert code == 1, out
    assert failure is not None and len(failure.strip().splitlines()) == 1
    assert f"Checkpoint {base / 'checkpoints' / META_FILE} is at block " in failure
    assert "the data differs from the checkpoint's" in failure and "empty the checkpoint directory" in failure
    assert not (base / "model/model.json").exists()


def test_wals_sigterm_then_restart_ends_with_the_uninterrupted_factors(tmp_path: Path, ratings: bytes) -> None:
    whole = _job(tmp_path / "whole", WALS_HP, ratings, "text/csv", checkpoints=False)
    code, out, _ = _run(whole)
    assert code == 0, out
    base = _job(tmp_path / "stopped", WALS_HP, ratings, "text/csv")
    proc = _start(base)
    _wait_for_checkpoint(proc, base, "sweep", 2)
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    out, _ = proc.communicate(timeout=60)
    assert time.monotonic() - sent < STOP_SECONDS
    assert proc.returncode == 128 + signal.SIGTERM, out
    assert "Training stopped by SIGTERM" in (base / "output/failure").read_text()
    (base / "output/failure").unlink()
    code, out, failure = _run(base)
    assert code == 0 and failure is None, out
    assert "Resuming from checkpoint" in out
    _same(_arrays(base), _arrays(whole))


@pytest.mark.parametrize("damage", ["corrupt", "other_algorithm", "other_settings"])
def test_a_checkpoint_the_job_cannot_resume_fails_with_the_file_named(tmp_path: Path, damage: str) -> None:
    rng = np.random.default_rng(0)
    x = sp.random(300, 10, density=0.3, format="csr", random_state=0, dtype=np.float32)
    buf = io.BytesIO()
    write_spmatrix_to_sparse_tensor(buf, x, (rng.random(300) < 0.5).astype(np.float32))
    hp = {**FM_HP, "feature_dim": "10", "num_factors": "2", "epochs": "2"}
    first = _job(tmp_path / "first", hp, buf.getvalue(), "application/x-recordio-protobuf")
    assert _run(first)[0] == 0
    checkpoint = first / "checkpoints" / META_FILE
    if damage == "corrupt":
        npz = checkpoint.parent / json.loads(checkpoint.read_text())["file"]
        npz.write_bytes(npz.read_bytes()[:-50])
        expected = "torn or corrupt"
    elif damage == "other_algorithm":
        meta = json.loads(checkpoint.read_text())
        checkpoint.write_text(json.dumps({**meta, "algorithm": "wals"}))
        expected = "written by algorithm=wals, and this job trains algorithm=fm"
    else:
        (first / "input/config/hyperparameters.json").write_text(json.dumps({**hp, "num_factors": "3"}))
        expected = "num_factors: checkpoint 2, this job 3"
    os.remove(first / "model/model.json")
    code, out, failure = _run(first)
    assert code == 1, out
    assert failure is not None and str(checkpoint.parent) in failure and expected in failure
    assert "empty the checkpoint directory" in failure and len(failure.strip().splitlines()) == 1
    assert not (first / "model/model.json").exists()
