"""Several hosts of one local training job (``instance_count > 1``): each host's /opt/ml tree and channels,
and one run over all of them.

As on SageMaker, every host gets its own ``resourceconfig.json`` (same ``hosts``, its own ``current_host``),
a ``FullyReplicated`` channel whole and a ``ShardedByS3Key`` channel's files dealt round-robin in key order.
The run's output is every host's, each line prefixed ``<host> | ``; when a host fails, the others are stopped
after ``HOST_FAILURE_GRACE_SECONDS`` (time to write their own ``output/failure``), and the job fails with each
failed host's reason.
"""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

from container.channel_files import channel_files
from fmwals.backends.engine import Channel, HostJob, Running, Shard

HOST_FAILURE_GRACE_SECONDS = float(os.environ.get("FMWALS_HOST_FAILURE_GRACE_SECONDS", "30"))
KILL_AFTER_SECONDS = 20.0
SHARDED = "ShardedByS3Key"


def opt_ml_dir(job_dir: Path, hosts: tuple[str, ...], host: str) -> Path:
    """The host's /opt/ml tree: the job's own for the first host (its model is the job's), else one under
    ``hosts/<host>``."""
    return job_dir / "opt_ml" if host == hosts[0] else job_dir / "hosts" / host / "opt_ml"


def share(source: Path, distribution: str | None, rank: int, count: int) -> Channel:
    """What the host of ``rank`` (of ``count``) receives of a channel: all of it, or its ShardedByS3Key
    share (the files File mode reads, in key order, dealt round-robin)."""
    if distribution != SHARDED or count == 1:
        return source
    return Shard(source, tuple(channel_files(source)[rank::count]))


def share_files(channel: Channel) -> list[Path]:
    """The files a host's channel holds, in the order Pipe mode feeds them."""
    return list(channel.files) if isinstance(channel, Shard) else channel_files(channel)


class HostsRun:
    """One ``Running`` over every host's run: lines prefixed by host, stopped and waited for together.

    ``codes`` maps each host that has ended to its exit code, in the order they ended; ``on_exit`` runs once
    every host has ended (e.g. to remove the job's network)."""

    def __init__(self, runs: dict[str, Running], on_exit: Callable[[], None] | None = None) -> None:
        self.runs = runs
        self.codes: dict[str, int] = {}
        self._on_exit = on_exit
        self._lines: queue.Queue[tuple[str, str | None]] = queue.Queue()
        self._lock = threading.Lock()
        self._stopping = False
        self._threads = [
            threading.Thread(target=self._follow, args=(host,), name=f"host-{host}", daemon=True) for host in runs
        ]
        for thread in self._threads:
            thread.start()

    def _follow(self, host: str) -> None:
        run = self.runs[host]
        try:
            for line in run.lines():
                self._lines.put((host, line))
            code = run.wait()
        except Exception as err:  # the engine lost the host (e.g. its container vanished)
            self._lines.put((host, f"lost this host's output: {err}\n"))
            code = -1
        with self._lock:
            self.codes[host] = code
        if code != 0:
            self._stop_others(host, code)
        self._lines.put((host, None))

    def _stop_others(self, host: str, code: int) -> None:
        with self._lock:
            if self._stopping:
                return
            self._stopping = True
        others = [h for h in self.runs if h not in self.codes]
        if others:
            self._lines.put((host, f"host {host} failed (exit code {code}): stopping {', '.join(others)} in "
                                   f"{HOST_FAILURE_GRACE_SECONDS:g} s unless they end first\n"))
            self._later(HOST_FAILURE_GRACE_SECONDS, self.terminate)
            self._later(HOST_FAILURE_GRACE_SECONDS + KILL_AFTER_SECONDS, self.kill)

    @staticmethod
    def _later(seconds: float, action: Callable[[], None]) -> None:
        timer = threading.Timer(seconds, action)
        timer.daemon = True
        timer.start()

    def lines(self) -> Iterator[str]:
        ended = 0
        while ended < len(self.runs):
            host, line = self._lines.get()
            if line is None:
                ended += 1
            else:
                yield f"{host} | {line}"

    def _each(self, action: Callable[[Running], None]) -> None:
        for host, run in self.runs.items():
            if host not in self.codes:
                action(run)

    def terminate(self) -> None:
        self._each(lambda run: run.terminate())

    def kill(self) -> None:
        self._each(lambda run: run.kill())

    def wait(self) -> int:
        """0 if every host exited 0, else the exit code of the host that failed first."""
        for thread in self._threads:
            thread.join()
        if self._on_exit is not None:
            self._on_exit()
            self._on_exit = None
        return next((code for code in self.codes.values() if code != 0), 0)


def failure_reason(host_jobs: list[HostJob], codes: dict[str, int]) -> str:
    """``AlgorithmError: <host>: <reason>; ...`` for each host that failed, the first to fail first: the host's
    ``output/failure`` text, else its exit code."""
    trees = {job.host: job.opt_ml for job in host_jobs}
    parts = []
    for host, code in codes.items():
        if code == 0:
            continue
        failure = trees[host] / "output" / "failure"
        text = failure.read_text(errors="replace").strip() if failure.is_file() else ""
        parts.append(f"{host}: {text}" if text else f"{host}: exited with code {code} and wrote no output/failure")
    return "AlgorithmError: " + "; ".join(parts)
