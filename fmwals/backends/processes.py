"""Small process helpers shared by the local back ends: liveness, group signals, free ports."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from fmwals.errors import BackendUnavailableError

# Children started by this process, so liveness checks reap them instead of seeing zombies.
CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie counts as dead)."""
    child = CHILDREN.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError):
        if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


def signal_group(pid: int, sig: int) -> None:
    """Send ``sig`` to the process group led by ``pid`` (started with ``start_new_session``)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


def stop_group(pid: int, grace: float) -> None:
    """SIGTERM the group, then SIGKILL it if its leader still runs after ``grace`` seconds."""
    signal_group(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if alive(pid):
        signal_group(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def free_port() -> int:
    """A TCP port nothing listens on right now (chosen by the kernel)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def check_port_free(port: int) -> None:
    """Raise a clear error if ``port`` is taken on this machine."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a listener blocks, TIME_WAIT does not
        try:
            probe.bind(("0.0.0.0", port))
        except OSError:
            raise BackendUnavailableError(
                f"Port {port} is already in use on this machine: stop whatever listens there (e.g. an "
                "endpoint you forgot to delete: `ss -ltnp`), or deploy without port= to use a free one."
            ) from None
