"""What this process may use: CPUs (affinity and cgroup CPU quota) and memory (cgroup limit); and the memory
it used at its peak.

``os.cpu_count()`` reports the host's CPUs; a container limited with ``--cpus`` or a SageMaker instance
shares them through a cgroup quota, and ``taskset``/cpusets through the affinity mask. Both cgroup v2
(``cpu.max``, ``memory.max``) and v1 (``cpu.cfs_quota_us``/``cpu.cfs_period_us``,
``memory.limit_in_bytes``) are read. A limit set on any ancestor cgroup applies too, so every directory from
the process's own cgroup up to the mount root is read and the smallest limit wins.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
PROC_SELF_STATUS = Path("/proc/self/status")

# cgroup v1 reports "no memory limit" as a huge page-aligned number (2**63 rounded down to a page).
_V1_UNLIMITED_MEMORY = 1 << 62


def usable_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> int:
    """CPUs this process may run on: the affinity mask, capped by a cgroup CPU quota rounded up; >= 1."""
    cpus = len(os.sched_getaffinity(0))
    quota = _cpu_quota(root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def memory_limit_bytes(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> int | None:
    """The cgroup memory limit in bytes, or ``None`` when there is none (or no cgroup is visible)."""
    limits = []
    for directory in _cgroup_dirs(root, proc_cgroup, "memory"):
        v2 = _read(directory / "memory.max")
        if v2 is not None and v2 != "max":
            limits.append(int(v2))
        v1 = _read(directory / "memory.limit_in_bytes")
        if v1 is not None and int(v1) < _V1_UNLIMITED_MEMORY:
            limits.append(int(v1))
    return min(limits, default=None)


def peak_rss_bytes(status: Path = PROC_SELF_STATUS) -> int | None:
    """This process's peak resident memory (``VmHWM``: since its program started, unlike ``ru_maxrss``, which
    keeps the high-water mark of the process that forked it), or None where /proc does not say."""
    for line in (_read(status) or "").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


def _cpu_quota(root: Path, proc_cgroup: Path) -> float | None:
    """The smallest CPU quota (in CPUs) of the cgroup and its ancestors, or ``None`` when unlimited."""
    quotas = []
    for directory in _cgroup_dirs(root, proc_cgroup, "cpu"):
        v2 = _read(directory / "cpu.max")
        if v2 is not None:
            quota, _, period = v2.partition(" ")
            if quota != "max":
                quotas.append(int(quota) / int(period or 100000))
        v1_quota = _read(directory / "cpu.cfs_quota_us")
        v1_period = _read(directory / "cpu.cfs_period_us")
        if v1_quota is not None and v1_period is not None and int(v1_quota) > 0:
            quotas.append(int(v1_quota) / int(v1_period))
    return min(quotas, default=None)


def _cgroup_dirs(root: Path, proc_cgroup: Path, controller: str) -> Iterator[Path]:
    """The directories of this process's cgroup and its ancestors for ``controller``, innermost first.

    cgroup v2 is mounted at ``root`` itself (a line ``0::/path``); v1 mounts each controller under
    ``root/<controllers>`` (a line ``N:cpu,cpuacct:/path``). Inside a container with a cgroup namespace the
    path is ``/`` and the mount root is the container's own cgroup.
    """
    text = _read(proc_cgroup) or ""
    for line in text.splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":
            mount = root
        elif controller in controllers.split(","):
            mount = root / controllers
            if not mount.is_dir():
                mount = root / controller
        else:
            continue
        directory = mount / path.lstrip("/")
        while True:
            yield directory
            if directory == mount or mount not in directory.parents:
                break
            directory = directory.parent


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def memory_available_bytes(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_SELF_CGROUP) -> int:
    """Bytes this process may still allocate: the cgroup memory limit (else the machine's memory) less its
    resident set."""
    limit = memory_limit_bytes(root, proc_cgroup)
    if limit is None:
        limit = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    resident = int((_read(Path("/proc/self/statm")) or "0 0").split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return max(0, limit - resident)
