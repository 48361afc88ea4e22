"""Training beyond memory: a container limited to 256 MB trains FM on data whose decoded size is over 3 times
that, streaming it in File mode (through the on-disk cache) and in Pipe mode (a FIFO per epoch fed by a writer
process), and ends with the test metrics of the same job decoded into memory in a container without a limit; stopped
(docker stop) in the middle of an epoch, such a job leaves a checkpoint that a new container resumes there."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from container import metrics_log
from container.formats.recordio import write_spmatrix_to_sparse_tensor
from tests.container.helpers import docker

pytestmark = pytest.mark.docker

LIMIT = "256m"
LIMIT_BYTES = 256 * 2**20
FIELDS, VALUES = 20, 2_000
ROWS_PER_FILE, FILES, TEST_ROWS = 200_000, 17, 50_000
DECODED_BYTES_PER_ROW = FIELDS * 12 + 8 + 4  # float32 value + int64 index per nonzero, indptr, label
HP = {"feature_dim": str(FIELDS * VALUES), "num_factors": "4", "predictor_type": "binary_classifier",
      "epochs": "2", "mini_batch_size": "1000", "num_threads": "1", "stream_buffer_mb": "32",
      "progress_interval_seconds": "5"}
# The shuffle measurement (docs/benchmarks.md) puts block against full shuffle within 0.003 AUC on the CTR set;
# here the in-memory reference uses the block order too, with other block boundaries.
TOLERANCE = 0.005


def _rows(n: int, rng: np.random.Generator, weights: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    cols = (rng.integers(0, VALUES, (n, FIELDS)) + np.arange(FIELDS) * VALUES).ravel()
    x = sp.csr_matrix((np.ones(n * FIELDS, np.float32), cols, np.arange(0, n * FIELDS + 1, FIELDS)),
                      shape=(n, FIELDS * VALUES))
    y = (rng.random(n) < 1 / (1 + np.exp(-(x @ weights - 1.0)))).astype(np.float32)
    return x, y


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train/ (17 RecordIO files, 3.4 M rows: 0.86 GB decoded, 3.2x the limit) and test/ (50,000 rows)."""
    root = tmp_path_factory.mktemp("stream-data")
    rng = np.random.default_rng(0)
    weights = rng.normal(0, 0.4, FIELDS * VALUES)
    for channel, files, rows in (("train", FILES, ROWS_PER_FILE), ("test", 1, TEST_ROWS)):
        (root / channel).mkdir()
        for i in range(files):
            x, y = _rows(rows, rng, weights)
            with open(root / channel / f"part-{i:02d}.pbr", "wb") as out:
                write_spmatrix_to_sparse_tensor(out, x, y)
    assert FILES * ROWS_PER_FILE * DECODED_BYTES_PER_ROW >= 3 * LIMIT_BYTES
    return root


def _opt_ml(tmp_path: Path, mode: str, **hp: str) -> Path:
    opt_ml = tmp_path / "opt_ml"
    config = opt_ml / "input" / "config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({**HP, **hp}))
    channels = {name: {"TrainingInputMode": mode, "ContentType": "application/x-recordio-protobuf"}
                for name in ("train", "test")}
    (config / "inputdataconfig.json").write_text(json.dumps(channels))
    (opt_ml / "input" / "data").mkdir()
    return opt_ml


def _train(image: str, opt_ml: Path, data: Path | None, *limits: str) -> subprocess.CompletedProcess[str]:
    mounts = [] if data is None else ["-v", f"{data / 'train'}:/opt/ml/input/data/train:ro",
                                      "-v", f"{data / 'test'}:/opt/ml/input/data/test:ro"]
    return docker("run", "--rm", *limits, "-v", f"{opt_ml}:/opt/ml", *mounts, image, "train", timeout=600,
                  check=False)


def _test_metrics(result: subprocess.CompletedProcess[str]) -> dict[str, float]:
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    parsed = metrics_log.parse_log(result.stdout + result.stderr)
    return {name: parsed[f"test:{name}"][0] for name in ("auc", "binary_classification_cross_entropy")}


@pytest.fixture(scope="module")
def in_memory(docker_image: str, data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, float]:
    opt_ml = _opt_ml(tmp_path_factory.mktemp("memory"), "File", data_loading="memory", shuffle="blocks")
    return _test_metrics(_train(docker_image, opt_ml, data))


def _limited(*extra: str) -> tuple[str, ...]:
    return ("--memory", LIMIT, "--memory-swap", LIMIT, *extra)


def test_file_mode_streams_data_three_times_the_memory_limit(docker_image: str, data: Path, in_memory,
                                                            tmp_path: Path) -> None:
    opt_ml = _opt_ml(tmp_path, "File")
    result = _train(docker_image, opt_ml, data, *_limited())
    log = result.stdout + result.stderr
    streamed = _test_metrics(result)
    assert "data_loading=auto: streaming the 'train' channel" in log
    assert f"Channel 'train': {FILES * ROWS_PER_FILE} rows" in log
    for name, value in in_memory.items():
        assert streamed[name] == pytest.approx(value, abs=TOLERANCE), name
    assert "#progress_metric" in log and "#throughput_metric" in log
    assert (opt_ml / "model" / "model.json").is_file()
    assert not (opt_ml / "input" / "scratch" / "fm-blocks").exists()


WRITER = """
import os, sys
from pathlib import Path
data, target, passes = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
def feed(channel, passes):
    for p in range(passes):
        fifo = target / f"{channel}_{p}"
        os.mkfifo(fifo)
        with open(fifo, "wb") as out:
            for path in sorted((data / channel).iterdir()):
                with open(path, "rb") as src:
                    while chunk := src.read(1 << 20):
                        out.write(chunk)
if os.fork() == 0:
    feed("test", passes + 1)
    os._exit(0)
feed("train", passes)
os.wait()
"""


def test_pipe_mode_streams_a_fifo_per_epoch_within_the_memory_limit(docker_image: str, data: Path, in_memory,
                                                                   tmp_path: Path) -> None:
    opt_ml = _opt_ml(tmp_path, "Pipe")
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(data), str(opt_ml / "input" / "data"),
                               HP["epochs"]], start_new_session=True)
    try:
        result = _train(docker_image, opt_ml, None, *_limited())
        writer.wait(timeout=60)
    finally:
        if writer.poll() is None:  # the job ended without reading every FIFO: stop the writer and its child
            os.killpg(writer.pid, signal.SIGKILL)
            writer.wait()
    log = result.stdout + result.stderr
    streamed = _test_metrics(result)
    assert "(Pipe mode: its size is unknown)" in log
    for name, value in in_memory.items():
        assert streamed[name] == pytest.approx(value, abs=TOLERANCE), name
    assert writer.returncode == 0


def test_a_cache_volume_without_space_is_the_users_error(docker_image: str, data: Path, tmp_path: Path) -> None:
    opt_ml = _opt_ml(tmp_path, "File", data_loading="stream")
    result = _train(docker_image, opt_ml, data, "--tmpfs", "/opt/ml/input/scratch:size=8m")
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    failure = (opt_ml / "output" / "failure").read_text()
    assert failure.startswith("No space left on the training volume for the on-disk cache"), failure
    assert "/opt/ml/input/scratch/fm-blocks/train" in failure and "VolumeSizeInGB" in failure
    assert not (opt_ml / "model" / "model.json").exists()


def _position(checkpoint: Path) -> tuple[int, int] | None:
    """(epoch, blocks done in it) of the checkpoint, None before there is one."""
    try:
        progress = json.loads(checkpoint.read_text())["progress"]
    except (FileNotFoundError, json.JSONDecodeError):
        return None
    return progress["epoch"], progress["position"]["blocks"]


def test_a_streamed_job_stopped_mid_epoch_resumes_there_in_a_new_container(docker_image: str, data: Path,
                                                                          in_memory, tmp_path: Path) -> None:
    opt_ml = _opt_ml(tmp_path, "File", checkpoint_interval_minutes="0.005")  # a checkpoint every block or so
    (opt_ml / "checkpoints").mkdir()
    checkpoint = opt_ml / "checkpoints" / "checkpoint.json"
    name = f"fm-stream-stop-{os.getpid()}"
    docker("run", "-d", "--name", name, *_limited(), "-v", f"{opt_ml}:/opt/ml",
           "-v", f"{data / 'train'}:/opt/ml/input/data/train:ro", "-v", f"{data / 'test'}:/opt/ml/input/data/test:ro",
           docker_image, "train")
    try:
        deadline = time.monotonic() + 600
        while (position := _position(checkpoint)) is None or position < (0, 3):
            assert time.monotonic() < deadline, "no checkpoint 3 blocks into the first epoch"
            time.sleep(0.2)
        docker("stop", "-t", "60", name)
        status = docker("inspect", "-f", "{{.State.ExitCode}} {{.State.OOMKilled}}", name).stdout.split()
        logs = docker("logs", name)
    finally:
        docker("rm", "-f", name, check=False)
    assert status == ["143", "false"], logs.stdout[-3000:] + logs.stderr[-3000:]
    epoch, blocks = _position(checkpoint) or (-1, -1)
    assert blocks > 0  # within the epoch
    failure = (opt_ml / "output" / "failure").read_text()
    assert failure.startswith(f"Training stopped by SIGTERM in epoch {epoch} after block {blocks} ("), failure
    assert not (opt_ml / "model" / "model.json").exists()
    (opt_ml / "output" / "failure").unlink()
    result = _train(docker_image, opt_ml, data, *_limited())
    log = result.stdout + result.stderr
    resumed = _test_metrics(result)
    assert f"Resuming from checkpoint /opt/ml/checkpoints/checkpoint.json: epoch {epoch}, block {blocks} (" in log
    assert f"Skipped the first {blocks} block(s)" in log
    for name, value in in_memory.items():
        assert resumed[name] == pytest.approx(value, abs=TOLERANCE), name
    assert (opt_ml / "model" / "model.json").is_file()
