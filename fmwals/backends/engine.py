"""What the local back end needs from something that runs the container's entry points."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class Shard:
    """The files of a ``ShardedByS3Key`` channel that one host receives, each placed at its path under
    ``root`` (its name when ``root`` is a file)."""

    root: Path
    files: tuple[Path, ...]

    def placements(self) -> list[tuple[Path, str]]:
        """(file, path relative to the channel directory) of each file."""
        if self.root.is_file():
            return [(f, f.name) for f in self.files]
        return [(f, str(f.relative_to(self.root))) for f in self.files]


# A File-mode channel as an engine mounts it: a file or directory whole, or one host's shard.
Channel = Path | Shard


@dataclass(frozen=True)
class HostJob:
    """What one host of a job runs on: its name, its /opt/ml tree, its File-mode channels."""

    host: str
    opt_ml: Path
    channels: dict[str, Channel]


class Running(Protocol):
    """A started ``train``: its output lines, and the means to stop it."""

    def lines(self) -> Iterator[str]:
        """stdout and stderr, line by line, until the process ends."""
        ...

    def terminate(self) -> None:
        """Ask it to stop (SIGTERM)."""
        ...

    def kill(self) -> None:
        """Stop it now (SIGKILL)."""
        ...

    def wait(self) -> int:
        """Its exit code, once it has ended."""
        ...


class Engine(Protocol):
    """Runs ``train`` and ``serve`` with a /opt/ml tree: as subprocesses, or in Docker containers."""

    def check(self, image: str) -> None:
        """Raise ``BackendUnavailableError`` (saying what to do) if jobs cannot start here."""
        ...

    def start_training(
        self, image: str, opt_ml: Path, channels: dict[str, Channel], env: dict[str, str], name: str,
        checkpoints: Path | None = None,
    ) -> Running:
        """Run ``train`` on ``opt_ml``; ``channels`` maps File-mode channel names to local files or dirs;
        ``checkpoints``, a host directory, appears as ``opt_ml/checkpoints`` (read and written)."""
        ...

    def host_names(self, count: int) -> tuple[tuple[str, ...], str]:
        """The names of a job's ``count`` hosts and the network interface they reach each other on."""
        ...

    def start_hosts(
        self, image: str, hosts: list[HostJob], env: dict[str, str], name: str, checkpoints: Path | None = None
    ) -> Running:
        """Run ``train`` on every host of a multi-host job, the hosts reaching each other by name."""
        ...

    def start_serving(
        self, image: str, opt_ml: Path, port: int, env: dict[str, str], name: str, log_path: Path
    ) -> dict[str, Any]:
        """Start ``serve`` on ``port`` with the model in ``opt_ml/model``; returns its handle as record
        fields."""
        ...

    def serving_problem(self, record: dict[str, Any]) -> str | None:
        """``None`` while the server runs, else why it does not (with where to look)."""
        ...

    def stop_serving(self, record: dict[str, Any]) -> None: ...

    def serving_log(self, record: dict[str, Any]) -> str: ...
