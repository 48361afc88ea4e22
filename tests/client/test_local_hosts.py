"""``instance_count > 1`` on the local back ends: one real ``train`` per host (subprocesses on 127.0.0.x, or
containers on a job network as algo-1 ... algo-N), each host with its own resourceconfig.json and its share of
a ShardedByS3Key channel, every host's output in the job's log, and a job that fails naming the host that
failed."""

from __future__ import annotations

import json
import stat
import time
from pathlib import Path

import numpy as np
import pytest

from algorithm import artifact
from container.formats.recordio import write_numpy_to_dense_tensor
from fmwals import FactorizationMachines, JobFailedError, TrainingInput, jobs
from fmwals.backends.engine import Shard
from fmwals.backends.hosts import share
from fmwals.backends.local_docker import client

FM_ARGS = {
    "num_factors": 4,
    "predictor_type": "binary_classifier",
    "epochs": 3,
    "feature_dim": 64,
    "mini_batch_size": 100,
}


def _shards(directory: Path, x: np.ndarray, y: np.ndarray, count: int) -> Path:
    """``count`` RecordIO-protobuf files of the rows, one per host."""
    directory.mkdir()
    for i, (xs, ys) in enumerate(zip(np.array_split(x, count), np.array_split(y, count), strict=True)):
        with open(directory / f"part-{i}.pbr", "wb") as f:
            write_numpy_to_dense_tensor(f, xs, ys)
    return directory


def _host_trees(job_name: str) -> dict[str, Path]:
    """Each host's /opt/ml tree, by the host named in its resourceconfig.json."""
    job_dir = jobs.entity_dir("jobs", job_name)
    trees = [job_dir / "opt_ml", *sorted((job_dir / "hosts").glob("*/opt_ml"))]
    return {json.loads((t / "input/config/resourceconfig.json").read_text())["current_host"]: t for t in trees}


def _fit_two_hosts(instance_type: str, tmp_path: Path, digits, **kwargs) -> FactorizationMachines:
    x, y, _, _ = digits
    train = _shards(tmp_path / "train", x, y, 2)
    fm = FactorizationMachines("role", 2, instance_type, **{**FM_ARGS, **kwargs})
    fm.fit({"train": TrainingInput(str(train), distribution="ShardedByS3Key")}, logs=False)
    return fm


def _check_hosts(fm: FactorizationMachines, hosts: list[str], interface: str) -> None:
    name = fm.latest_training_job.name
    trees = _host_trees(name)
    assert sorted(trees) == sorted(hosts)
    for rank, host in enumerate(hosts):
        config = json.loads((trees[host] / "input/config/resourceconfig.json").read_text())
        assert config["hosts"] == hosts and config["network_interface_name"] == interface
        files = sorted(p.name for p in (trees[host] / "input/data/train").iterdir())
        assert files == [f"part-{rank}.pbr"]  # its ShardedByS3Key share, the other host's file not there
    log = fm.latest_training_job.log()
    for host in hosts:
        assert f"{host} | " in log, f"no output of host {host} in the job's log:\n{log[-3000:]}"
    assert fm.model_data.startswith("file://")
    artifact.read(fm.model_data.removeprefix("file://"))  # the first host's model, in the one-host format


@pytest.mark.slow
def test_two_processes_on_loopback_each_with_its_config_and_shard(tmp_path, digits):
    fm = _fit_two_hosts("local_process", tmp_path, digits)
    _check_hosts(fm, ["127.0.0.1", "127.0.0.2"], "lo")


def test_a_sharded_channel_is_dealt_round_robin_in_key_order_and_others_reach_every_host(tmp_path):
    for name in ("b/part-2", "a/part-1", "c", ".hidden", "a/part-0"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(name)
    shares = [share(tmp_path, "ShardedByS3Key", rank, 2) for rank in range(2)]
    assert [[relative for _, relative in s.placements()] for s in shares if isinstance(s, Shard)] == [
        ["a/part-0", "b/part-2"], ["a/part-1", "c"]]
    assert share(tmp_path, "FullyReplicated", 1, 2) == tmp_path
    assert share(tmp_path, "ShardedByS3Key", 0, 1) == tmp_path
    assert [r for _, r in share(tmp_path / "c", "ShardedByS3Key", 1, 2).placements()] == []  # one file, two hosts


def _failing_program(directory: Path) -> Path:
    """Entry points whose ``train`` fails on the second host of resourceconfig.json and runs on the first
    until stopped: how the back end treats one failed host, whatever the algorithm does."""
    directory.mkdir()
    (directory / "train").write_text(
        "import json, os, sys, time\n"
        "base = os.environ['SAGEMAKER_BASE_DIR']\n"
        "config = json.load(open(os.path.join(base, 'input/config/resourceconfig.json')))\n"
        "print('host', config['current_host'], 'up', flush=True)\n"
        "if config['current_host'] == config['hosts'][1]:\n"
        "    open(os.path.join(base, 'output/failure'), 'w').write('bad data on this host')\n"
        "    sys.exit(2)\n"
        "time.sleep(120)\n"
    )
    serve = directory / "serve.sh"
    serve.write_text("#!/bin/sh\nexit 1\n")
    serve.chmod(serve.stat().st_mode | stat.S_IEXEC)
    return directory


def test_a_failed_host_fails_the_job_naming_it_and_stops_the_others(tmp_path, digits, monkeypatch):
    monkeypatch.setenv("FMWALS_PROGRAM_DIR", str(_failing_program(tmp_path / "program")))
    monkeypatch.setenv("FMWALS_HOST_FAILURE_GRACE_SECONDS", "1")
    started = time.monotonic()
    with pytest.raises(JobFailedError, match=r"AlgorithmError: 127\.0\.0\.2: bad data on this host") as failed:
        _fit_two_hosts("local_process", tmp_path, digits)
    assert time.monotonic() - started < 60  # not the first host's 120 s: it was stopped
    assert "127.0.0.1: " in failed.value.reason  # the host stopped after the failure is named too


def test_instance_count_out_of_range_says_what_runs(digits):
    x, y, _, _ = digits
    fm = FactorizationMachines("role", 17, "local_process", **FM_ARGS)
    with pytest.raises(ValueError, match="instance_count=17: the local back ends run 1 to 16 hosts"):
        fm.fit(fm.record_set(x[:40], y[:40]))


def _job_resources(name: str) -> tuple[list[object], list[object]]:
    """The job's containers and networks still in the Docker engine."""
    engine = client()
    label = f"fmwals.training-job={name}"
    return (engine.containers.list(all=True, filters={"label": label}),
            engine.networks.list(filters={"label": label}))


@pytest.mark.docker
@pytest.mark.slow
def test_two_containers_on_a_job_network_as_algo_1_and_algo_2(docker_image, tmp_path, digits):
    fm = _fit_two_hosts("local", tmp_path, digits, image_uri=docker_image)
    _check_hosts(fm, ["algo-1", "algo-2"], "eth0")
    assert _job_resources(fm.latest_training_job.name) == ([], [])


@pytest.mark.docker
def test_a_failed_container_host_fails_the_job_naming_it(docker_image, tmp_path, digits):
    x, y, _, _ = digits
    train = _shards(tmp_path / "train", x, y, 2)
    (train / "part-1.pbr").write_bytes(b"not RecordIO at all")  # algo-2's share
    fm = FactorizationMachines("role", 2, "local", image_uri=docker_image, **FM_ARGS)
    with pytest.raises(JobFailedError, match=r"AlgorithmError: .*algo-2.*part-1\.pbr"):
        fm.fit({"train": TrainingInput(str(train), distribution="ShardedByS3Key")}, logs=False)
    assert _job_resources(fm.latest_training_job.name) == ([], [])
