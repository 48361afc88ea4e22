"""Several hosts train one model: real ``train`` processes on loopback addresses (127.0.0.1, .2, .3 as host names,
network_interface_name lo), each with its own SAGEMAKER_BASE_DIR, as SageMaker runs one per instance."""

import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
import scipy.sparse as sp

from algorithm import artifact
from container.formats.recordio import write_spmatrix_to_sparse_tensor

ROOT = Path(__file__).resolve().parents[2]
HOSTS = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
FIELDS, VALUES = 10, 100
HP = {"feature_dim": str(FIELDS * VALUES), "num_factors": "4", "predictor_type": "binary_classifier",
      "epochs": "4", "mini_batch_size": "100", "num_threads": "1"}
TEST_AUC = re.compile(r"#quality_metric: host=\S+, test auc <score>=([0-9.]+)")


def _clicks(rows: int, seed: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """CTR-like rows: one value per field (skewed frequencies), labels from a hidden rank-4 FM."""
    hidden = np.random.default_rng(1234)
    w, V = hidden.normal(0, 0.6, FIELDS * VALUES), hidden.normal(0, 0.5, (FIELDS * VALUES, 4))
    rng = np.random.default_rng(seed)
    cols = (np.minimum(rng.zipf(1.3, (rows, FIELDS)) - 1, VALUES - 1) + np.arange(FIELDS) * VALUES).ravel()
    x = sp.csr_matrix((np.ones(rows * FIELDS, np.float32), cols, np.arange(0, rows * FIELDS + 1, FIELDS)),
                      shape=(rows, FIELDS * VALUES))
    vx = x @ V
    logit = x @ w + 0.5 * ((vx**2).sum(1) - (x @ V**2).sum(1)) - 1.0
    return x, (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(np.float32)


def _recordio(x: sp.csr_matrix, y: np.ndarray) -> bytes:
    buf = io.BytesIO()
    write_spmatrix_to_sparse_tensor(buf, x, y)
    return buf.getvalue()


TRAIN, TEST = _clicks(40_000, 0), _clicks(8_000, 1)


def _job(base: Path, host: str, hosts: list[str], hp: dict[str, str] | None = None, train=TRAIN, test=True,
         distribution: str = "FullyReplicated") -> Path:
    (base / "input/config").mkdir(parents=True)
    (base / "input/config/hyperparameters.json").write_text(json.dumps(HP if hp is None else hp))
    (base / "input/config/resourceconfig.json").write_text(json.dumps(
        {"current_host": host, "hosts": hosts, "network_interface_name": "lo"}))
    channels = {"train": {"S3DistributionType": distribution, "ContentType": "application/x-recordio-protobuf"}}
    (base / "input/data/train").mkdir(parents=True)
    (base / "input/data/train/part.rec").write_bytes(_recordio(*train))
    if test:
        channels["test"] = {"ContentType": "application/x-recordio-protobuf"}
        (base / "input/data/test").mkdir(parents=True)
        (base / "input/data/test/part.rec").write_bytes(_recordio(*TEST))
    (base / "input/config/inputdataconfig.json").write_text(json.dumps(channels))
    return base


def _ports() -> dict[str, str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return {"FMWALS_SCHEDULER_PORT": str(port), "FMWALS_WORKER_PORT": str(port + 2)}


def _start(base: Path, env: dict[str, str]) -> subprocess.Popen:
    log = open(base / "train.log", "w")  # noqa: SIM115 - the process holds it
    return subprocess.Popen([sys.executable, str(ROOT / "train")], stdout=log, stderr=subprocess.STDOUT,
                            env={"SAGEMAKER_BASE_DIR": str(base), "PATH": "/usr/bin:/bin", **env})


def _env(wait: float = 60) -> dict[str, str]:
    return {**_ports(), "FMWALS_HOST_WAIT_SECONDS": str(wait)}


def _finish(proc: subprocess.Popen, base: Path, timeout: float = 240) -> tuple[int, str, str | None]:
    code = proc.wait(timeout=timeout)
    failure = base / "output/failure"
    return code, (base / "train.log").read_text(), failure.read_text() if failure.exists() else None


def _run_hosts(bases: list[Path], env: dict[str, str]) -> list[tuple[int, str, str | None]]:
    procs = [_start(base, env) for base in bases]
    return [_finish(proc, base) for proc, base in zip(procs, bases, strict=True)]


def _wait_for(path: Path, pattern: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and re.search(pattern, path.read_text()):
            return
        time.sleep(0.2)
    raise AssertionError(f"{pattern!r} not in {path} after {timeout} s:\n{path.read_text()[-2000:]}")


def _one_host_auc(tmp_path: Path) -> float:
    base = _job(tmp_path / "one", HOSTS[0], HOSTS[:1])
    code, log, failure = _run_hosts([base], _env())[0]
    assert code == 0, failure
    return float(TEST_AUC.findall(log)[-1])


def test_two_hosts_train_one_model_as_good_as_one_host(tmp_path):
    bases = [_job(tmp_path / host, host, HOSTS[:2]) for host in HOSTS[:2]]
    (driver_code, driver_log, driver_failure), (worker_code, worker_log, worker_failure) = \
        _run_hosts(bases, _env())
    assert (driver_code, worker_code) == (0, 0), (driver_failure, worker_failure)
    assert "Every host joined: 127.0.0.1=tcp://127.0.0.1:" in driver_log
    assert "train: 40000 rows on 2 hosts (127.0.0.1: 20000 rows, FullyReplicated, 127.0.0.2: 20000 rows" in driver_log
    assert re.search(r"Epoch 3: \d+ synchronisation\(s\) of the 2 hosts, [0-9.]+ MB sent", driver_log)
    assert "The job on 127.0.0.1 is done; host 127.0.0.2 ends" in worker_log
    assert "#quality_metric" not in worker_log
    assert not (bases[1] / "model").exists() or not any((bases[1] / "model").iterdir())
    model = artifact.load(bases[0] / "model")
    assert model.w_.shape == (FIELDS * VALUES,) and model.n_epochs_ == 4
    assert sorted(p.name for p in (bases[0] / "model").iterdir()) == ["model.json", "model.npz",
                                                                      "optimizer_state.npz"]
    two = float(TEST_AUC.findall(driver_log)[-1])
    one = _one_host_auc(tmp_path)
    assert two >= one - 0.003, (one, two)  # (the hosts' summed steps may also train it further in 4 epochs)


def test_three_hosts_on_sharded_data(tmp_path):
    x, y = TRAIN
    shards = [(x[r::3], y[r::3]) for r in range(3)]
    hp = dict(HP, sync_every="3")  # three hosts' steps pile up on the frequent features: combine more often
    bases = [_job(tmp_path / host, host, HOSTS, hp=hp, train=shard, test=host == HOSTS[0],
                  distribution="ShardedByS3Key") for host, shard in zip(HOSTS, shards, strict=True)]
    results = _run_hosts(bases, _env())
    assert [code for code, _, _ in results] == [0, 0, 0], [failure for _, _, failure in results]
    assert "train: 40000 rows on 3 hosts (127.0.0.1: 13334 rows, ShardedByS3Key" in results[0][1]
    three, one = float(TEST_AUC.findall(results[0][1])[-1]), _one_host_auc(tmp_path)
    assert three >= one - 0.003, (one, three)  # (the hosts' summed steps may also train it further in 4 epochs)


def test_a_host_that_never_comes_up(tmp_path):
    base = _job(tmp_path / "driver", HOSTS[0], HOSTS[:2])
    started = time.monotonic()
    code, _, failure = _finish(_start(base, _env(wait=4)), base, timeout=60)
    assert code == 1 and time.monotonic() - started < 60
    assert failure.startswith("Host(s) 127.0.0.2 did not join the cluster within 4 s (FMWALS_HOST_WAIT_SECONDS)")


def test_a_worker_whose_first_host_never_comes_up(tmp_path):
    base = _job(tmp_path / "worker", HOSTS[1], HOSTS[:2])
    code, _, failure = _finish(_start(base, _env(wait=4)), base, timeout=60)
    assert code == 1
    assert failure.startswith("Host 127.0.0.2 could not join the scheduler of the first host 127.0.0.1 at "
                              "tcp://127.0.0.1:")


def _long_job(tmp_path: Path) -> tuple[list[Path], list[subprocess.Popen]]:
    hp = dict(HP, epochs="100000")
    bases = [_job(tmp_path / host, host, HOSTS[:2], hp=hp) for host in HOSTS[:2]]
    env = _env()
    procs = [_start(base, env) for base in bases]
    _wait_for(bases[0] / "train.log", r"epoch=1, train auc")
    return bases, procs


def test_a_worker_killed_mid_job_ends_the_job_naming_it(tmp_path):
    bases, (driver, worker) = _long_job(tmp_path)
    for proc, host in ((driver, HOSTS[0]), (worker, HOSTS[1])):
        listening = {c.laddr.ip for c in psutil.Process(proc.pid).net_connections("inet") if c.status == "LISTEN"}
        assert listening == {host}, listening  # nothing outside the cluster address
    os.kill(worker.pid, signal.SIGKILL)
    killed = time.monotonic()
    code, _, failure = _finish(driver, bases[0], timeout=120)
    worker.wait(timeout=10)
    assert code == 1 and time.monotonic() - killed < 90
    assert failure.startswith("Host(s) 127.0.0.2 left the cluster during training")


def test_a_driver_killed_mid_job_ends_the_workers(tmp_path):
    bases, (driver, worker) = _long_job(tmp_path)
    os.kill(driver.pid, signal.SIGKILL)
    killed = time.monotonic()
    code, _, failure = _finish(worker, bases[1], timeout=120)
    driver.wait(timeout=10)
    assert code == 1 and time.monotonic() - killed < 90
    assert failure.startswith("Host 127.0.0.2 lost the scheduler on the first host 127.0.0.1")


def test_a_streamed_job_trains_on_the_first_host_alone(tmp_path):
    hp = dict(HP, data_loading="stream", epochs="2")
    bases = [_job(tmp_path / host, host, HOSTS[:2], hp=hp) for host in HOSTS[:2]]
    (driver_code, driver_log, failure), (worker_code, worker_log, _) = _run_hosts(bases, _env())
    assert (driver_code, worker_code) == (0, 0), failure
    assert "This job trains on the first host 127.0.0.1 alone, the other hosts (127.0.0.2) end without training: " \
           "the 'train' channel is streamed" in driver_log
    assert "The job on 127.0.0.1 is done; host 127.0.0.2 ends" in worker_log
    assert artifact.load(bases[0] / "model").n_epochs_ == 2


def test_pipe_mode_read_into_memory_trains_on_every_host(tmp_path):
    """Pipe mode with data_loading=memory: each host reads its own FIFO (its shard) into memory and every host
    trains."""
    x, y = TRAIN
    hp = dict(HP, data_loading="memory", epochs="2")
    bases = [_job(tmp_path / host, host, HOSTS[:2], hp=hp, distribution="ShardedByS3Key") for host in HOSTS[:2]]
    for rank, base in enumerate(bases):
        shutil.rmtree(base / "input/data/train")
        config = base / "input/config/inputdataconfig.json"
        config.write_text(json.dumps({**json.loads(config.read_text()), "train": {
            "TrainingInputMode": "Pipe", "S3DistributionType": "ShardedByS3Key",
            "ContentType": "application/x-recordio-protobuf"}}))
        fifo = base / "input/data/train_0"
        os.mkfifo(fifo)
        body = _recordio(x[rank::2], y[rank::2])
        threading.Thread(target=fifo.write_bytes, args=(body,), daemon=True).start()  # as the platform feeds it
    (driver_code, driver_log, failure), (worker_code, _, _) = _run_hosts(bases, _env())
    assert (driver_code, worker_code) == (0, 0), failure
    assert "train: 40000 rows on 2 hosts (127.0.0.1: 20000 rows, ShardedByS3Key" in driver_log
    assert "alone" not in driver_log and artifact.load(bases[0] / "model").n_epochs_ == 2


def test_duplicate_hosts_fail_on_every_host(tmp_path):
    base = _job(tmp_path / "a", HOSTS[0], [HOSTS[0], HOSTS[1], HOSTS[0]])
    code, _, failure = _finish(_start(base, _env()), base, timeout=60)
    assert code == 1 and failure.startswith("hosts in ") and "names 127.0.0.1 more than once" in failure


def _wals_job(base: Path, host: str, hosts: list[str], body: bytes) -> Path:
    hp = {"algorithm": "wals", "embedding_dimension": "4", "max_sweeps": "3", "regularization_coeff": "0.1"}
    (base / "input/config").mkdir(parents=True)
    (base / "input/config/hyperparameters.json").write_text(json.dumps(hp))
    (base / "input/config/resourceconfig.json").write_text(json.dumps(
        {"current_host": host, "hosts": hosts, "network_interface_name": "lo"}))
    (base / "input/config/inputdataconfig.json").write_text(json.dumps({"train": {"ContentType": "text/csv"}}))
    (base / "input/data/train").mkdir(parents=True)
    (base / "input/data/train/a.csv").write_bytes(body)
    return base


def test_wals_on_two_hosts_trains_the_one_host_model(tmp_path):
    rng = np.random.default_rng(0)
    body = "".join(f"u{r},i{c},{v:.3f}\n" for r, c, v in zip(rng.integers(0, 30, 300), rng.integers(0, 20, 300),
                                                               rng.random(300), strict=True)).encode()
    bases = [_wals_job(tmp_path / host, host, HOSTS[:2], body) for host in HOSTS[:2]]
    alone = _wals_job(tmp_path / "alone", HOSTS[0], HOSTS[:1], body)
    (driver_code, driver_log, failure), (worker_code, worker_log, _) = _run_hosts(bases, _env())
    assert (driver_code, worker_code) == (0, 0), failure
    assert _run_hosts([alone], _env())[0][0] == 0
    assert "Sweep 0:" in driver_log and "on 2 hosts" in driver_log
    assert not (bases[1] / "model/model.npz").exists()
    assert "The job on 127.0.0.1 is done; host 127.0.0.2 ends" in worker_log
    together, one = artifact.load(bases[0] / "model"), artifact.load(alone / "model")
    assert list(together.row_ids.ids) == list(one.row_ids.ids)
    assert list(together.col_ids.ids) == list(one.col_ids.ids)
    scores = [m.wals.row_factors_ @ m.wals.col_factors_.T for m in (together, one)]
    np.testing.assert_allclose(scores[0], scores[1], rtol=1e-3, atol=1e-4)


# Checkpoints: the first host writes one at every epoch end. Early stopping ends the job before the last of the 60
# epochs, keeping an epoch two before its stop (its copy is in the last checkpoint); the epochs after the stop the
# test sends (after epoch 1) take seconds.
CHECKPOINT_HP = dict(HP, epochs="60", seed="7", early_stopping_patience="2", sync_every="20")


def _checkpointed(base: Path) -> Path:
    (base / "checkpoints").mkdir()
    return base


def _progress(base: Path) -> dict | None:
    try:
        return json.loads((base / "checkpoints/checkpoint.json").read_text())["progress"]
    except (FileNotFoundError, json.JSONDecodeError):  # not there yet (the rename makes it whole)
        return None


def _model_arrays(base: Path) -> dict[str, np.ndarray]:
    return artifact.read(base / "model")[1]


def _assert_same_model(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-7, err_msg=name)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """The model of the two hosts' job with CHECKPOINT_HP and checkpoints (each epoch end then combines the hosts'
    optimizer state, which the checkpoint holds), not stopped."""
    root = tmp_path_factory.mktemp("whole")
    whole = [_checkpointed(_job(root / host, host, HOSTS[:2], hp=CHECKPOINT_HP)) for host in HOSTS[:2]]
    results = _run_hosts(whole, _env())
    assert [code for code, _, _ in results] == [0, 0], [failure for _, _, failure in results]
    return _model_arrays(whole[0])


@pytest.mark.parametrize("signalled", ["first", "every"])
def test_two_hosts_stopped_by_sigterm_resume_to_the_uninterrupted_model(tmp_path, uninterrupted, signalled):
    bases = [_checkpointed(_job(tmp_path / host, host, HOSTS[:2], hp=CHECKPOINT_HP)) for host in HOSTS[:2]]
    env = _env()
    driver, worker = (_start(base, env) for base in bases)
    deadline = time.monotonic() + 120
    while (progress := _progress(bases[0])) is None or progress["epoch"] < 2:  # written after epoch 1
        assert driver.poll() is None and time.monotonic() < deadline, (bases[0] / "train.log").read_text()
        time.sleep(0.02)
    for proc in (driver, worker) if signalled == "every" else (driver,):  # SageMaker stops every host
        proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    code, log, failure = _finish(driver, bases[0], timeout=60)
    worker_code, _, worker_failure = _finish(worker, bases[1], timeout=60)
    assert time.monotonic() - sent < 10  # SageMaker's SIGTERM-to-SIGKILL allowance
    assert code == 128 + signal.SIGTERM, log
    stopped = _progress(bases[0])  # the checkpoint between the two rounds where it stopped, or of the last epoch end
    assert stopped["hosts"] == 2 and stopped["best_steps"] is not None
    if stopped["position"]:
        assert failure.startswith(f"Training stopped by SIGTERM in epoch {stopped['epoch']} after "
                                  f"{stopped['round']} of its 10 rounds; "), failure
    else:
        assert failure.startswith((f"Training stopped by SIGTERM after epoch {stopped['epoch'] - 1}; ",
                                   f"Training stopped by SIGTERM in epoch {stopped['epoch']}, before its end")), \
            failure
    assert f"checkpoint {bases[0] / 'checkpoints/checkpoint.json'} written" in failure
    if signalled == "every":  # the worker serves on until the first host ends the job, then ends as stopped
        assert worker_code == 128 + signal.SIGTERM and worker_failure.startswith(
            "Training stopped by SIGTERM on host 127.0.0.2 (The job failed on the first host 127.0.0.1: "), \
            worker_failure
        assert "the first host 127.0.0.1 writes the job's checkpoints" in worker_failure
    else:
        assert worker_code == 1 and worker_failure.startswith("The job failed on the first host 127.0.0.1")
    assert not (bases[0] / "model").exists() or not any((bases[0] / "model").iterdir())
    assert not any((bases[1] / "checkpoints").iterdir())  # only the first host writes checkpoints

    for base in bases:  # restarted on both hosts, the checkpoint directory as the platform restores it
        (base / "output/failure").unlink()
    results = _run_hosts(bases, _env())
    assert [code for code, _, _ in results] == [0, 0], [failure for _, _, failure in results]
    where = f" after round {stopped['round']}" if stopped["position"] else ""
    assert f"Resuming from checkpoint {bases[0] / 'checkpoints/checkpoint.json'}: epoch {stopped['epoch']}{where} (" \
           in results[0][1]
    assert f"Epoch {stopped['epoch'] - 1}: " not in results[0][1]  # the epochs before it are not trained again
    _assert_same_model(_model_arrays(bases[0]), uninterrupted)
    if signalled == "first":
        return

    # the last checkpoint (the stop epoch's start) holds early stopping's best epoch, which a job resuming it keeps:
    # on two hosts, and on one (the same format and identity: a one-host job resumes the hosts' checkpoint)
    last = _progress(bases[0])
    assert last["best"]["epoch"] < last["epoch"] - 1 and "Early stopping ended training" in results[0][1]
    again = [_job(tmp_path / "again" / host, host, HOSTS[:2], hp=CHECKPOINT_HP) for host in HOSTS[:2]]
    alone = _job(tmp_path / "alone", HOSTS[0], HOSTS[:1], hp=CHECKPOINT_HP)
    for base in (again[0], alone):
        shutil.copytree(bases[0] / "checkpoints", base / "checkpoints")
    (again[1] / "checkpoints").mkdir()
    for job, logs in ((again, _run_hosts(again, _env())), ([alone], _run_hosts([alone], _env()))):
        assert [code for code, _, _ in logs] == [0] * len(job), [failure for _, _, failure in logs]
        assert f"Resuming from checkpoint {job[0] / 'checkpoints/checkpoint.json'}: epoch {last['epoch']}" \
               in logs[0][1]
        assert f"the model holds epoch {last['best']['epoch']}" in logs[0][1]
        _assert_same_model(_model_arrays(job[0]), uninterrupted)


def test_checkpoints_between_rounds_leave_the_model_as_it_was_and_resume_on_the_same_hosts(tmp_path, uninterrupted):
    """A checkpoint due at every round (each host's own table and place) changes nothing in the model; the last
    one, within the epoch early stopping ended, resumes on two hosts to the same model, and is refused naming why
    on one host and on three."""
    hp = dict(CHECKPOINT_HP, checkpoint_interval_minutes="0.000001")
    bases = [_checkpointed(_job(tmp_path / host, host, HOSTS[:2], hp=hp)) for host in HOSTS[:2]]
    results = _run_hosts(bases, _env())
    assert [code for code, _, _ in results] == [0, 0], [failure for _, _, failure in results]
    _assert_same_model(_model_arrays(bases[0]), uninterrupted)
    last = _progress(bases[0])
    assert last["position"] > 0 and last["round"] == 9 and len(last["host_positions"]) == 2, last

    again = [_job(tmp_path / "again" / host, host, HOSTS[:2], hp=hp) for host in HOSTS[:2]]
    shutil.copytree(bases[0] / "checkpoints", again[0] / "checkpoints")
    (again[1] / "checkpoints").mkdir()
    results = _run_hosts(again, _env())
    assert [code for code, _, _ in results] == [0, 0], [failure for _, _, failure in results]
    assert f"epoch {last['epoch']} after round 9 (" in results[0][1]
    assert f"Epoch {last['epoch'] - 1}: " not in results[0][1]
    _assert_same_model(_model_arrays(again[0]), uninterrupted)

    alone = _job(tmp_path / "alone", HOSTS[0], HOSTS[:1], hp=hp)
    three = [_job(tmp_path / "three" / host, host, HOSTS, hp=hp) for host in HOSTS]
    for job in ([alone], three):
        shutil.copytree(bases[0] / "checkpoints", job[0] / "checkpoints")
        results = _run_hosts(job, _env())
        code, _, failure = results[0]
        assert code == 1 and f"is within epoch {last['epoch']} of a job on 2 host" in failure, failure
    assert "it resumes on as many hosts with the same data only" in (alone / "output/failure").read_text()
    assert "with shares of 20000, 20000 rows; this job's hosts have" in (three[0] / "output/failure").read_text()


def test_a_one_host_checkpoint_resumes_on_two_hosts_and_one_of_other_settings_fails(tmp_path):
    hp = dict(HP, epochs="2", seed="7")
    alone = _checkpointed(_job(tmp_path / "alone", HOSTS[0], HOSTS[:1], hp=hp))
    assert _run_hosts([alone], _env())[0][0] == 0  # leaves its checkpoint of epoch 0's end
    assert _progress(alone)["epoch"] == 1

    def two_hosts(name: str, settings: dict[str, str]) -> list[tuple[int, str, str | None]]:
        bases = [_job(tmp_path / name / host, host, HOSTS[:2], hp=settings) for host in HOSTS[:2]]
        shutil.copytree(alone / "checkpoints", bases[0] / "checkpoints")
        (bases[1] / "checkpoints").mkdir()
        return _run_hosts(bases, _env())

    (code, log, failure), (worker_code, _, _) = two_hosts("resumed", dict(hp, epochs="3"))
    assert (code, worker_code) == (0, 0), failure
    assert re.search(r"Resuming from checkpoint \S+: epoch 1 \(\d+ optimizer steps taken\), written by a job on "
                     r"1 host\(s\)", log)
    assert "Epoch 0: " not in log and "Epoch 2: " in log
    assert artifact.load(tmp_path / "resumed" / HOSTS[0] / "model").n_epochs_ == 3

    (code, log, failure), (worker_code, _, worker_failure) = two_hosts("other", dict(hp, num_factors="5"))
    assert (code, worker_code) == (1, 1), log
    checkpoint = tmp_path / "other" / HOSTS[0] / "checkpoints/checkpoint.json"
    assert failure.startswith(f"Checkpoint {checkpoint} belongs to another job (num_factors: checkpoint 4, this "
                              "job 5)") and "empty the checkpoint directory" in failure, failure
    assert worker_failure.startswith("The job failed on the first host 127.0.0.1")
    assert not (tmp_path / "other" / HOSTS[0] / "model/model.json").exists()
