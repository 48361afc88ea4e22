"""The ``local_process`` engine: the repo's ``train`` and ``serve.sh`` as subprocesses, no Docker.

They run with the Python running this client (its venv must hold the image's runtime requirements) and
``SAGEMAKER_BASE_DIR`` pointing at the job's /opt/ml tree. A job of several hosts runs one process per host,
each with its own tree, the hosts named by loopback addresses (127.0.0.1, 127.0.0.2, ...) on the interface
``lo``, so each host's servers bind an address of its own. The program directory is the one holding
``train`` and ``serve.sh``: ``$FMWALS_PROGRAM_DIR``, or this repository.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fmwals.backends import processes
from fmwals.backends.engine import Channel, HostJob, Shard
from fmwals.backends.hosts import HostsRun
from fmwals.errors import BackendUnavailableError

STOP_GRACE_SECONDS = 30.0


def program_dir() -> Path:
    """Where ``train`` and ``serve.sh`` live."""
    return Path(os.environ.get("FMWALS_PROGRAM_DIR") or Path(__file__).resolve().parents[2])


def _environment(opt_ml: Path, extra: dict[str, str]) -> dict[str, str]:
    program = str(program_dir())
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "/usr/bin:/bin")])
    pythonpath = os.pathsep.join(p for p in (program, os.environ.get("PYTHONPATH")) if p)
    return {
        **os.environ,
        "PATH": path,
        "PYTHONPATH": pythonpath,
        "PYTHONUNBUFFERED": "1",
        "SAGEMAKER_BASE_DIR": str(opt_ml),
        **extra,
    }


def link_channels(opt_ml: Path, channels: dict[str, Channel]) -> None:
    """Make each File-mode channel appear under ``input/data/<channel>`` (symlinks, no copies)."""
    for name, source in channels.items():
        target = opt_ml / "input" / "data" / name
        if isinstance(source, Shard):
            target.mkdir(parents=True, exist_ok=True)
            for path, relative in source.placements():
                (target / relative).parent.mkdir(parents=True, exist_ok=True)
                (target / relative).symlink_to(path)
        elif source.is_dir():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(source, target_is_directory=True)
        else:
            target.mkdir(parents=True, exist_ok=True)
            (target / source.name).symlink_to(source)


class _Process:
    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.process = process

    def lines(self) -> Iterator[str]:
        assert self.process.stdout is not None
        yield from self.process.stdout

    def terminate(self) -> None:
        processes.signal_group(self.process.pid, signal.SIGTERM)

    def kill(self) -> None:
        processes.signal_group(self.process.pid, signal.SIGKILL)

    def wait(self) -> int:
        return self.process.wait()


class ProcessEngine:
    """``train`` and ``serve.sh`` of the program directory, each in its own process group."""

    def check(self, image: str) -> None:
        program = program_dir()
        missing = [name for name in ("train", "serve.sh") if not (program / name).is_file()]
        if missing:
            raise BackendUnavailableError(
                f"instance_type='local_process' runs the entry points of {program}, which has no "
                f"{', '.join(missing)}: set FMWALS_PROGRAM_DIR to the repository that holds them, or use "
                "instance_type='local' (Docker)."
            )

    def start_training(
        self, image: str, opt_ml: Path, channels: dict[str, Channel], env: dict[str, str], name: str,
        checkpoints: Path | None = None,
    ) -> _Process:
        link_channels(opt_ml, channels)
        if checkpoints is not None:
            (opt_ml / "checkpoints").symlink_to(checkpoints, target_is_directory=True)
        process = subprocess.Popen(
            [sys.executable, str(program_dir() / "train")],
            cwd=program_dir(),
            env=_environment(opt_ml, env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        return _Process(process)

    def host_names(self, count: int) -> tuple[tuple[str, ...], str]:
        if count == 1:
            return ("algo-1",), "eth0"
        return tuple(f"127.0.0.{i}" for i in range(1, count + 1)), "lo"

    def start_hosts(
        self, image: str, hosts: list[HostJob], env: dict[str, str], name: str, checkpoints: Path | None = None
    ) -> HostsRun:
        return HostsRun({job.host: self.start_training(image, job.opt_ml, job.channels, env, name, checkpoints)
                         for job in hosts})

    def start_serving(
        self, image: str, opt_ml: Path, port: int, env: dict[str, str], name: str, log_path: Path
    ) -> dict[str, Any]:
        environment = _environment(opt_ml, {"SAGEMAKER_BIND_TO_PORT": str(port), **env})
        with open(log_path, "ab") as log:
            process = subprocess.Popen(
                [str(program_dir() / "serve.sh")],
                cwd=program_dir(),
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        processes.CHILDREN[process.pid] = process
        return {"Pid": process.pid, "LogPath": str(log_path)}

    def serving_problem(self, record: dict[str, Any]) -> str | None:
        if processes.alive(int(record["Pid"])):
            return None
        return f"its server process {record['Pid']} has exited (log: {record['LogPath']})"

    def stop_serving(self, record: dict[str, Any]) -> None:
        processes.stop_group(int(record["Pid"]), STOP_GRACE_SECONDS)

    def serving_log(self, record: dict[str, Any]) -> str:
        try:
            return Path(record["LogPath"]).read_text(errors="replace")
        except OSError:
            return ""
