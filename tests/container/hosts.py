"""The hosts of one training job as containers of the image, the way SageMaker (and its SDK's local mode) runs
them: a Docker network of the job's own, each host's container with its host name as hostname and network
alias (``algo-1`` ... ``algo-N``), each with its own /opt/ml tree whose ``resourceconfig.json`` names it as
``current_host``. Used by the multi-host container tests and ``bench/bench_distributed_docker.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from container.formats.recordio import write_spmatrix_to_sparse_tensor
from tests.container.helpers import docker, env_args

POLL_SECONDS = 0.5
FULLY_REPLICATED, SHARDED = "FullyReplicated", "ShardedByS3Key"
_THROUGHPUT = re.compile(r"#throughput_metric: host=\S+, train throughput=(\S+) records/second")
_TEST_AUC = re.compile(r"#quality_metric: host=\S+, test auc <score>=(\S+)")


@dataclass(frozen=True)
class Channel:
    """A channel's files: every host gets all of them (FullyReplicated) or file ``i`` of ``hosts`` goes to the
    host of rank ``i % hosts`` (ShardedByS3Key, as SageMaker deals a prefix's objects)."""

    files: tuple[Path, ...]
    distribution: str = FULLY_REPLICATED
    content_type: str = "application/x-recordio-protobuf"

    def share(self, rank: int, count: int) -> tuple[Path, ...]:
        return self.files if self.distribution == FULLY_REPLICATED else self.files[rank::count]


def write_rows(path: Path, x: sp.csr_matrix, y: np.ndarray) -> Path:
    """One RecordIO-protobuf file of sparse rows with labels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as out:
        write_spmatrix_to_sparse_tensor(out, x, y)
    return path


class DockerHosts:
    """``count`` hosts of one job: their trees under ``root``, their network, their containers (named
    ``<prefix>-<id>-algo-<i>``), all removed by ``remove()``."""

    def __init__(self, image: str, root: Path, count: int, prefix: str = "hosts") -> None:
        self.image = image
        self.root = root
        self.hosts = tuple(f"algo-{i}" for i in range(1, count + 1))
        self.name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.containers: dict[str, str] = {}
        docker("network", "create", "--label", f"{prefix}.job={self.name}", self.name)

    def opt_ml(self, host: str) -> Path:
        return self.root / host

    def configure(self, hyperparameters: dict[str, str], channels: dict[str, Channel]) -> None:
        """Each host's /opt/ml: config files naming it, and its share of each channel (hard links)."""
        for rank, host in enumerate(self.hosts):
            tree = self.opt_ml(host)
            shutil.rmtree(tree, ignore_errors=True)
            config = tree / "input" / "config"
            config.mkdir(parents=True)
            resources = {"current_host": host, "hosts": list(self.hosts), "network_interface_name": "eth0"}
            data_config = {name: {"ContentType": c.content_type, "TrainingInputMode": "File",
                                  "S3DistributionType": c.distribution, "RecordWrapperType": "None"}
                           for name, c in channels.items()}
            for name, body in (("hyperparameters.json", hyperparameters), ("resourceconfig.json", resources),
                               ("inputdataconfig.json", data_config)):
                (config / name).write_text(json.dumps(body))
            for name, channel in channels.items():
                target = tree / "input" / "data" / name
                target.mkdir(parents=True)
                for path in channel.share(rank, len(self.hosts)):
                    try:
                        os.link(path, target / path.name)
                    except OSError:  # another file system
                        shutil.copyfile(path, target / path.name)
            (tree / "model").mkdir()
            (tree / "output").mkdir()

    def start(self, host: str, *, cpus: str | None = None, env: dict[str, str] | None = None) -> None:
        """``docker run -d`` the host's ``train`` on the network (pinned to ``cpus`` if given)."""
        options = ["--cpuset-cpus", cpus] if cpus is not None else []
        self.containers[host] = docker(
            "run", "-d", "--name", f"{self.name}-{host}", "--network", self.name, "--network-alias", host,
            "--hostname", host, *options, "-v", f"{self.opt_ml(host)}:/opt/ml", *env_args(env), self.image, "train",
        ).stdout.strip()

    def start_all(self, *, cpus: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        for rank, host in enumerate(self.hosts):
            self.start(host, cpus=None if cpus is None else cpus[rank], env=env)

    def running(self, host: str) -> bool:
        state = docker("inspect", "--format", "{{.State.Running}}", self.containers[host], check=False)
        return state.stdout.strip() == "true"

    def wait(self, bound: float) -> dict[str, int | None]:
        """Each started host's exit code once all have ended, or None for those still running after ``bound``
        seconds."""
        deadline = time.monotonic() + bound
        while any(self.running(h) for h in self.containers) and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        return {host: None if self.running(host) else self.exit_code(host) for host in self.containers}

    def exit_code(self, host: str) -> int:
        return int(docker("inspect", "--format", "{{.State.ExitCode}}", self.containers[host]).stdout.strip())

    def logs(self, host: str, timestamps: bool = False) -> str:
        """The host's output (each line prefixed with Docker's RFC 3339 time of it with ``timestamps``)."""
        result = docker("logs", *(["--timestamps"] if timestamps else []), self.containers[host], check=False)
        return result.stdout + result.stderr

    def wait_for_line(self, host: str, text: str, bound: float) -> None:
        """Return once ``text`` is in the host's output; AssertionError after ``bound`` seconds."""
        deadline = time.monotonic() + bound
        while text not in self.logs(host):
            if time.monotonic() >= deadline or not self.running(host):
                raise AssertionError(f"{host} did not log {text!r} within {bound:g} s:\n{self.logs(host)[-3000:]}")
            time.sleep(POLL_SECONDS)

    def failure(self, host: str) -> str:
        path = self.opt_ml(host) / "output" / "failure"
        return path.read_text(errors="replace") if path.is_file() else ""

    def kill(self, host: str) -> None:
        docker("kill", self.containers[host])

    def remove(self) -> None:
        for container in self.containers.values():
            docker("rm", "-f", container, check=False)
        docker("network", "rm", self.name, check=False)


def final_test_auc(output: str) -> float:
    """The final ``test auc`` of a job's output."""
    found = _TEST_AUC.findall(output)
    assert found, f"no final test auc in the output:\n{output[-3000:]}"
    return float(found[-1])


def epoch_seconds(output: str, rows: int) -> list[float]:
    """Seconds of each epoch from the job's throughput lines (``rows`` per epoch)."""
    return [rows / float(value) for value in _THROUGHPUT.findall(output)]
