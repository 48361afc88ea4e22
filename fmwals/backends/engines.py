"""The instance types that run on this machine, each with the engine that runs it: ``local_process`` (the
repo's entry points as subprocesses) and ``local`` / ``local_gpu`` (the image in the Docker engine)."""

from __future__ import annotations

from collections.abc import Callable

from fmwals.backends.engine import Engine
from fmwals.backends.local_docker import DockerEngine
from fmwals.backends.local_process import ProcessEngine

ENGINES: dict[str, Callable[[], Engine]] = {
    "local_process": ProcessEngine,
    "local": DockerEngine,
    "local_gpu": DockerEngine,
}


def is_local(instance_type: str | None) -> bool:
    """Whether ``instance_type`` runs on this machine."""
    return instance_type in ENGINES


def engine_for(instance_type: str) -> Engine:
    """A new engine for a local ``instance_type``."""
    return ENGINES[instance_type]()
