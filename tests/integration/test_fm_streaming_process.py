"""`train` streaming FM epochs as a local process: File mode through the on-disk cache, Pipe mode through a FIFO
per epoch, against the same job decoded into memory; the choice logged; bad streams."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from algorithm import artifact
from algorithm.csr import CSR
from algorithm.row_blocks import row_range
from container import metrics_log
from container.formats.recordio import write_spmatrix_to_sparse_tensor

ROOT = Path(__file__).resolve().parents[2]
FIELDS, VALUES = 8, 40
HP = {"feature_dim": str(FIELDS * VALUES), "num_factors": "4", "predictor_type": "binary_classifier",
      "epochs": "3", "mini_batch_size": "100", "num_threads": "1", "stream_buffer_mb": "4",
      "progress_interval_seconds": "0.001"}


def _clicks(rows: int, seed: int = 0) -> CSR:
    """One-hot click-like rows with labels from a hidden linear model, about 1 in 4 positive."""
    rng = np.random.default_rng(seed)
    cols = (rng.integers(0, VALUES, (rows, FIELDS)) + np.arange(FIELDS) * VALUES).ravel()
    x = sp.csr_matrix((np.ones(rows * FIELDS, np.float32), cols, np.arange(0, rows * FIELDS + 1, FIELDS)),
                      shape=(rows, FIELDS * VALUES))
    y = (rng.random(rows) < 1 / (1 + np.exp(-(x @ rng.normal(0, 1.0, FIELDS * VALUES) - 1.5)))).astype(np.float32)
    return CSR.from_matrix(x, labels=y)


def _recordio(rows: CSR) -> bytes:
    buf = io.BytesIO()
    write_spmatrix_to_sparse_tensor(buf, rows.to_scipy(), rows.labels)
    return buf.getvalue()


ROWS = _clicks(65_000)
TRAIN = [_recordio(row_range(ROWS, r0, r0 + 20_000)) for r0 in range(0, 60_000, 20_000)]  # several blocks each
TEST = _recordio(row_range(ROWS, 60_000, 65_000))


def _job(base: Path, mode: str, **hp: str) -> Path:
    config = base / "input/config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({**HP, **hp}))
    channels = {name: {"TrainingInputMode": mode, "ContentType": "application/x-recordio-protobuf"}
                for name in ("train", "test")}
    (config / "inputdataconfig.json").write_text(json.dumps(channels))
    data = base / "input/data"
    data.mkdir(parents=True)
    if mode == "File":
        for name, bodies in (("train", TRAIN), ("test", [TEST])):
            (data / name).mkdir()
            for i, body in enumerate(bodies):
                (data / name / f"part-{i}.pbr").write_bytes(body)
    return base


def _feed_pipes(base: Path, channel: str, bodies: list[bytes], passes: int) -> threading.Thread:
    """A writer that makes FIFO ``<channel>_<p>`` for each pass p in turn and writes the bodies into it, as
    the platform does."""

    def feed() -> None:
        for p in range(passes):
            fifo = base / "input/data" / f"{channel}_{p}"
            os.mkfifo(fifo)
            with open(fifo, "wb") as out:
                for body in bodies:
                    out.write(body)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    return thread


def _train(base: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(ROOT / "train")], env={"SAGEMAKER_BASE_DIR": str(base),
                          "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=300)


def _test_metrics(proc: subprocess.CompletedProcess[str]) -> dict[str, float]:
    parsed = metrics_log.parse_log(proc.stdout)
    return {name: parsed[f"test:{name}"][0] for name in ("auc", "binary_classification_cross_entropy")}


@pytest.fixture(scope="module")
def in_memory(tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    base = _job(tmp_path_factory.mktemp("memory"), "File", data_loading="memory", shuffle="blocks")
    proc = _train(base)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "data_loading=memory: decoding into memory the 'train' channel" in proc.stdout
    return _test_metrics(proc)


def test_file_mode_streams_through_the_cache_to_the_in_memory_metrics(tmp_path: Path, in_memory) -> None:
    base = _job(tmp_path, "File", data_loading="stream")
    proc = _train(base)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "data_loading=stream: streaming the 'train' channel" in proc.stdout
    assert "Channel 'train': 60000 rows" in proc.stdout  # cached by the first pass
    streamed = _test_metrics(proc)
    for name, value in in_memory.items():
        assert streamed[name] == pytest.approx(value, abs=0.01), name
    parsed = metrics_log.parse_log(proc.stdout)
    assert len(parsed["train:auc:epoch"]) == len(parsed["test:auc:epoch"]) == 3
    progress = [line for line in proc.stdout.splitlines() if "#progress_metric" in line]
    assert len(progress) > 3  # within epochs, not only at their ends
    assert "#throughput_metric: host=algo-1, train throughput=" in proc.stdout
    assert not (base / "input/scratch/fm-blocks").exists()  # the cache is removed at the end
    assert artifact.load(base / "model").n_epochs_ == 3


def test_pipe_mode_reads_a_fifo_per_epoch(tmp_path: Path, in_memory) -> None:
    base = _job(tmp_path, "Pipe")
    writers = [_feed_pipes(base, "train", TRAIN, 3), _feed_pipes(base, "test", [TEST], 4)]
    proc = _train(base)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "data_loading=auto: streaming the 'train' channel (Pipe mode: its size is unknown)" in proc.stdout
    for writer in writers:
        writer.join(timeout=10)
        assert not writer.is_alive()
    streamed = _test_metrics(proc)
    for name, value in in_memory.items():
        assert streamed[name] == pytest.approx(value, abs=0.01), name


def test_a_truncated_fifo_is_the_users_error_naming_it(tmp_path: Path) -> None:
    base = _job(tmp_path, "Pipe", epochs="1")
    _feed_pipes(base, "train", [TRAIN[0][:-7]], 1)
    proc = _train(base)
    assert proc.returncode == 1
    failure = (base / "output/failure").read_text()
    assert "train_0" in failure and "record" in failure.lower(), failure
    assert not (base / "model/model.json").exists()
