"""Hosts of a multi-host job on loopback for tests and benchmarks: a real dask scheduler (in this process) and
one real ``dask worker`` process per host, named by the host (127.0.0.x), each with its own
``SAGEMAKER_BASE_DIR``, and the driver's ``Cluster`` over them; dask configured as the hosts of a job are
(``container.cluster.dask_settings``)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import dask
from distributed import Client, LocalCluster

from container.cluster import Cluster, dask_settings

ROOT = Path(__file__).resolve().parents[2]
START_SECONDS = 90.0


def _worker(scheduler: str, host: str, base: Path, cpu: int | None, threads: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(base), "PYTHONPATH": str(ROOT), "OPENBLAS_NUM_THREADS": "1",
           "NUMBA_NUM_THREADS": str(threads),
           "DASK_INTERNAL_INHERIT_CONFIG": dask.config.serialize(dask.config.global_config)}
    command = [sys.executable, "-m", "distributed.cli.dask_worker", scheduler, "--name", host, "--host", host,
               "--nthreads", "1", "--no-nanny", "--no-dashboard", "--death-timeout", "60"]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    base.mkdir(parents=True, exist_ok=True)
    log = (base / "worker.log").open("wb")
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)


@contextmanager
def loopback_hosts(bases: Sequence[Path], cpus: Sequence[int] | None = None, threads: int = 1
                   ) -> Iterator[Cluster]:
    """A scheduler and one worker process per entry of ``bases`` (host 127.0.0.<i+1>, its /opt/ml there),
    optionally pinned to ``cpus[i]``; the ``Cluster`` the driver gets. Everything stops on exit."""
    hosts = tuple(f"127.0.0.{i + 1}" for i in range(len(bases)))
    with dask.config.set(dask_settings()), \
            LocalCluster(n_workers=0, host="127.0.0.1", scheduler_port=0, dashboard_address=":0", processes=False,
                         protocol="tcp://") as scheduler, Client(scheduler.scheduler_address) as client:
        processes = [_worker(scheduler.scheduler_address, host, base, None if cpus is None else cpus[i], threads)
                     for i, (host, base) in enumerate(zip(hosts, bases, strict=True))]
        try:
            deadline = time.monotonic() + START_SECONDS
            workers: dict[str, str] = {}
            while len(workers) < len(hosts):
                if time.monotonic() > deadline or any(p.poll() is not None for p in processes):
                    logs = "\n".join((b / "worker.log").read_text(errors="replace")[-2000:] for b in bases)
                    raise RuntimeError(f"the workers did not all start within {START_SECONDS} s:\n{logs}")
                time.sleep(0.2)
                info = client.scheduler_info(n_workers=-1)["workers"]
                workers = {w["name"]: address for address, w in info.items()}
            yield Cluster(client, {host: workers[host] for host in hosts}, hosts)
        finally:
            for process in processes:
                process.terminate()
            for process in processes:
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=20)
