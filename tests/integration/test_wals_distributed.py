"""Distributed WALS against one host: a real dask scheduler and real worker processes on loopback, each host
with its own /opt/ml; every sweep's training loss, the test metrics and the artifact match ``train_wals`` on
the union of the hosts' data."""

from __future__ import annotations

import logging
import os
import re
import signal
from pathlib import Path

import numpy as np
import pytest

from algorithm import artifact
from algorithm.checkpoint import Checkpoints
from algorithm.schemas import parse_for_algorithm
from container import wals_training
from container.config import ChannelConfig
from container.errors import ChannelError
from container.paths import SageMakerPaths
from container.wals_distributed import HostLostError, block_bounds, train_wals_distributed
from tests.integration.dask_hosts import loopback_hosts

LOSS = re.compile(r"#quality_metric: host=\S+, epoch=(\d+), train loss <loss>=(\S+)")
TEST = re.compile(r"#quality_metric: host=\S+, epoch=(\d+), test (\w+) <\w+>=(\S+)")


def _lines(n: int, seed: int) -> list[str]:
    """``n`` CSV triplets with string ids (repeated pairs included), power-law-ish rows and columns."""
    rng = np.random.default_rng(seed)
    rows = (rng.pareto(1.5, n) * 20).astype(int) % 300
    cols = (rng.pareto(1.2, n) * 10).astype(int) % 120
    values = rng.integers(1, 6, n)
    return [f"user {r},item-{c:03d},{v}\n" for r, c, v in zip(rows, cols, values, strict=True)]


def _write(base: Path, channels: dict[str, dict[str, str]]) -> SageMakerPaths:
    paths = SageMakerPaths(base)
    for name, files in channels.items():
        for file, text in files.items():
            (paths.channel_dir(name) / file).parent.mkdir(parents=True, exist_ok=True)
            header = "row,col,value\n" if name in ("train", "test") else ""
            (paths.channel_dir(name) / file).write_text(header + text)
    paths.model_dir.mkdir(parents=True, exist_ok=True)
    return paths


def _hp(**extra: str) -> dict:
    _, parsed = parse_for_algorithm({"algorithm": "wals", "embedding_dimension": "4", "max_sweeps": "4",
                                     "regularization_coeff": "5", "num_threads": "1", **extra})
    return parsed


def _metrics(text: str) -> tuple[list[float], dict[tuple[int, str], float]]:
    losses = [float(v) for _, v in LOSS.findall(text)]
    tests = {(int(e), name): float(v) for e, name, v in TEST.findall(text)}
    return losses, tests


def _one_host(tmp: Path, train: list[str], test: list[str], hp: dict, caplog: pytest.LogCaptureFixture
              ) -> tuple[list[float], dict, dict[str, np.ndarray], dict]:
    paths = _write(tmp / "one", {"train": {"all.csv": "".join(train)}, "test": {"t.csv": "".join(test)}})
    configs = {name: ChannelConfig(name, "text/csv") for name in ("train", "test")}
    caplog.clear()
    wals_training.train_wals(paths, hp, configs, "algo-1", Checkpoints(None))
    losses, tests = _metrics(caplog.text)
    meta, arrays = artifact.read(paths.model_dir)
    return losses, tests, arrays, meta


@pytest.mark.parametrize(("n_hosts", "distribution", "extra"), [
    (2, "ShardedByS3Key", {}),
    (3, "ShardedByS3Key", {"alpha": "2.0"}),
    (2, "FullyReplicated", {"alpha": "1.5", "solver": "cg", "cg_steps": "3"}),
    (3, "FullyReplicated", {"early_stopping_patience": "1", "max_sweeps": "6"}),
])
def test_distributed_sweeps_match_one_host(tmp_path: Path, caplog: pytest.LogCaptureFixture, n_hosts: int,
                                           distribution: str, extra: dict[str, str]) -> None:
    caplog.set_level(logging.INFO)
    lines = _lines(6000, seed=n_hosts)
    train, test = lines[:5000], lines[5000:]
    hp = _hp(**extra)
    expected_losses, expected_tests, expected, expected_meta = _one_host(tmp_path, train, test, hp, caplog)

    bases = [tmp_path / f"host{r}" for r in range(n_hosts)]
    for r, base in enumerate(bases):
        share = train[r::n_hosts] if distribution == "ShardedByS3Key" else train
        _write(base, {"train": {f"part-{r}.csv": "".join(share)}, "test": {"t.csv": "".join(test)}})
    configs = {"train": ChannelConfig("train", "text/csv", distribution=distribution),
               "test": ChannelConfig("test", "text/csv")}
    caplog.clear()
    with loopback_hosts(bases) as cluster:
        train_wals_distributed(cluster, SageMakerPaths(bases[0]), hp, configs, Checkpoints(None))
    losses, tests = _metrics(caplog.text)

    assert len(losses) == len(expected_losses) >= 2
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-4)
    assert tests.keys() == expected_tests.keys()
    np.testing.assert_allclose([tests[k] for k in sorted(tests)], [expected_tests[k] for k in sorted(tests)],
                               rtol=1e-3, atol=1e-4)
    meta, arrays = artifact.read(SageMakerPaths(bases[0]).model_dir)
    assert arrays.keys() == expected.keys()
    for name in ("row_ids", "col_ids", "seen_indptr", "seen_indices"):
        np.testing.assert_array_equal(arrays[name], expected[name], err_msg=name)
    for name in ("row_factors", "col_factors"):
        np.testing.assert_allclose(arrays[name], expected[name], rtol=1e-2, atol=1e-3, err_msg=name)
    assert meta["best_sweep"] == expected_meta["best_sweep"]
    assert meta["sweeps_run"] == expected_meta["sweeps_run"]
    assert not any((base / "model").exists() and any((base / "model").iterdir()) for base in bases[1:])


def test_declared_integer_ids_and_weight_channels_match_one_host(tmp_path: Path,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    lines = [re.sub(r"user (\d+),item-0*(\d+)", r"\1,\2", line) for line in _lines(4000, seed=5)]
    weights = "".join(f"{r},{1 + r % 3}\n" for r in range(0, 300, 7))
    hp = _hp(num_rows="310", num_cols="125", alpha="1.0")
    paths = _write(tmp_path / "one", {"train": {"all.csv": "".join(lines)}, "row_weights": {"w.csv": weights}})
    configs = {"train": ChannelConfig("train", "text/csv", distribution="ShardedByS3Key"),
               "row_weights": ChannelConfig("row_weights", "text/csv")}
    caplog.clear()
    wals_training.train_wals(paths, hp, configs, "algo-1", Checkpoints(None))
    expected_losses, _ = _metrics(caplog.text)
    _, expected = artifact.read(paths.model_dir)
    bases = [tmp_path / "a", tmp_path / "b"]
    _write(bases[0], {"train": {"p.csv": "".join(lines[::2])}, "row_weights": {"w.csv": weights}})
    _write(bases[1], {"train": {"p.csv": "".join(lines[1::2])}})
    caplog.clear()
    with loopback_hosts(bases) as cluster:
        train_wals_distributed(cluster, SageMakerPaths(bases[0]), hp, configs, Checkpoints(None))
    losses, _ = _metrics(caplog.text)
    np.testing.assert_allclose(losses, expected_losses, rtol=1e-4)
    _, arrays = artifact.read(SageMakerPaths(bases[0]).model_dir)
    assert arrays["row_factors"].shape == (310, 4) and arrays["col_factors"].shape == (125, 4)
    for name in ("row_ids", "col_ids", "row_weights", "seen_indptr", "seen_indices"):
        np.testing.assert_array_equal(arrays[name], expected[name], err_msg=name)


def test_a_distributed_job_resumes_its_checkpoint(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    lines = _lines(5000, seed=11)
    expected_losses, _, expected, _ = _one_host(tmp_path, lines, lines[:500], _hp(alpha="2.0"), caplog)
    bases = [tmp_path / "a", tmp_path / "b"]
    for r, base in enumerate(bases):
        _write(base, {"train": {"part.csv": "".join(lines[r::2])}, "test": {"t.csv": "".join(lines[:500])}})
    configs = {"train": ChannelConfig("train", "text/csv", distribution="ShardedByS3Key"),
               "test": ChannelConfig("test", "text/csv")}
    checkpoints = tmp_path / "checkpoints"
    with loopback_hosts(bases) as cluster:
        caplog.clear()
        train_wals_distributed(cluster, SageMakerPaths(bases[0]), _hp(alpha="2.0", max_sweeps="2"), configs,
                               Checkpoints(checkpoints))
        assert (checkpoints / "checkpoint.json").exists()
        first, _ = _metrics(caplog.text)
        caplog.clear()
        train_wals_distributed(cluster, SageMakerPaths(bases[0]), _hp(alpha="2.0"), configs,
                               Checkpoints(checkpoints))
        assert "Resuming from checkpoint" in caplog.text
        resumed, _ = _metrics(caplog.text)
    assert len(first) == 2 and len(resumed) == 3
    np.testing.assert_allclose([first[0], *resumed], expected_losses, rtol=1e-4)
    _, arrays = artifact.read(SageMakerPaths(bases[0]).model_dir)
    np.testing.assert_allclose(arrays["col_factors"], expected["col_factors"], rtol=1e-2, atol=1e-3)


def test_a_job_without_entries_on_any_host_is_refused(tmp_path: Path) -> None:
    bases = [tmp_path / "a", tmp_path / "b"]
    for base in bases:
        _write(base, {"train": {"empty.csv": ""}})
    configs = {"train": ChannelConfig("train", "text/csv", distribution="ShardedByS3Key")}
    with loopback_hosts(bases) as cluster, pytest.raises(ChannelError, match="no entries on any of the 2 hosts"):
        train_wals_distributed(cluster, SageMakerPaths(bases[0]), _hp(), configs, Checkpoints(None))


class _KillAfterFirstSweep(logging.Handler):
    """Kills process ``pid`` when the first sweep's metric line is logged: the host dies mid-job."""

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.pid = pid

    def emit(self, record: logging.LogRecord) -> None:
        if "epoch=0, train loss" in record.getMessage() and self.pid:
            os.kill(self.pid, signal.SIGKILL)
            self.pid = 0


def test_a_host_that_dies_mid_job_is_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    bases = [tmp_path / "a", tmp_path / "b"]
    lines = _lines(4000, seed=7)
    for r, base in enumerate(bases):
        _write(base, {"train": {"part.csv": "".join(lines[r::2])}})
    configs = {"train": ChannelConfig("train", "text/csv", distribution="ShardedByS3Key")}
    with loopback_hosts(bases) as cluster:
        victim = cluster.workers["127.0.0.2"]
        killer = _KillAfterFirstSweep(cluster.client.run(os.getpid, workers=[victim])[victim])
        logging.getLogger("train.job").addHandler(killer)
        try:
            lost = r"Host 127\.0\.0\.2 \(tcp://.*\) left the job while solving the (rows|columns) of sweep"
            with pytest.raises(HostLostError, match=lost):
                train_wals_distributed(cluster, SageMakerPaths(bases[0]), _hp(max_sweeps="20"), configs,
                                       Checkpoints(None))
        finally:
            logging.getLogger("train.job").removeHandler(killer)
        assert killer.pid == 0


def test_blocks_balance_entries() -> None:
    assert block_bounds(np.array([5, 1, 1, 1, 1, 1]), 2).tolist() == [0, 1, 6]
    assert block_bounds(np.ones(10, np.int64), 3).tolist() == [0, 4, 7, 10]
    assert block_bounds(np.zeros(0, np.int64), 2).tolist() == [0, 0, 0]
