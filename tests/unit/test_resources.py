"""usable_cpus / memory_limit_bytes against fake cgroup v1 and v2 trees."""

import os
from pathlib import Path

import pytest

from container.resources import memory_limit_bytes, peak_rss_bytes, usable_cpus

AFFINITY = len(os.sched_getaffinity(0))


def _tree(tmp_path: Path, proc_cgroup: str, files: dict[str, str]) -> tuple[Path, Path]:
    root = tmp_path / "cgroup"
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text + "\n")
    root.mkdir(exist_ok=True)
    proc = tmp_path / "proc_self_cgroup"
    proc.write_text(proc_cgroup)
    return root, proc


def test_v2_quota_rounds_up_and_caps_affinity(tmp_path):
    root, proc = _tree(tmp_path, "0::/\n", {"cpu.max": "150000 100000"})
    assert usable_cpus(root, proc) == min(AFFINITY, 2)


def test_v2_fractional_quota_gives_at_least_one_cpu(tmp_path):
    root, proc = _tree(tmp_path, "0::/\n", {"cpu.max": "20000 100000"})
    assert usable_cpus(root, proc) == 1


def test_v2_unlimited_is_affinity(tmp_path):
    root, proc = _tree(tmp_path, "0::/\n", {"cpu.max": "max 100000", "memory.max": "max"})
    assert usable_cpus(root, proc) == AFFINITY
    assert memory_limit_bytes(root, proc) is None


def test_v2_ancestor_limit_applies(tmp_path):
    root, proc = _tree(tmp_path, "0::/job/task\n", {
        "job/cpu.max": "100000 100000",
        "job/task/cpu.max": "max 100000",
        "job/memory.max": "1073741824",
        "job/task/memory.max": "2147483648",
    })
    assert usable_cpus(root, proc) == 1
    assert memory_limit_bytes(root, proc) == 1 << 30


def test_v1_quota_and_memory(tmp_path):
    root, proc = _tree(tmp_path, "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/x\n", {
        "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "100000",
        "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000",
        "memory/docker/abc/memory.limit_in_bytes": "536870912",
    })
    assert usable_cpus(root, proc) == 1
    assert memory_limit_bytes(root, proc) == 512 << 20


def test_v1_unlimited(tmp_path):
    root, proc = _tree(tmp_path, "4:cpu:/\n3:memory:/\n", {
        "cpu/cpu.cfs_quota_us": "-1",
        "cpu/cpu.cfs_period_us": "100000",
        "memory/memory.limit_in_bytes": "9223372036854771712",
    })
    assert usable_cpus(root, proc) == AFFINITY
    assert memory_limit_bytes(root, proc) is None


def test_v1_host_path_not_visible_falls_back_to_mount_root(tmp_path):
    """Without a cgroup namespace /proc/self/cgroup names a host path; the mount root is our own cgroup."""
    root, proc = _tree(tmp_path, "3:memory:/kubepods/pod1/c1\n", {"memory/memory.limit_in_bytes": "1048576"})
    assert memory_limit_bytes(root, proc) == 1 << 20


@pytest.mark.parametrize("proc_text", ["", "0::/\n"])
def test_no_cgroup_files(tmp_path, proc_text):
    root, proc = _tree(tmp_path, proc_text, {})
    assert usable_cpus(root, proc) == AFFINITY
    assert memory_limit_bytes(root, proc) is None


def test_defaults_read_this_machine():
    assert 1 <= usable_cpus() <= AFFINITY
    limit = memory_limit_bytes()
    assert limit is None or limit > 0


def test_peak_rss_is_the_programs_high_water_mark(tmp_path):
    status = tmp_path / "status"
    status.write_text("Name:\ttrain\nVmPeak:\t  900000 kB\nVmHWM:\t  204800 kB\nVmRSS:\t  102400 kB\n")
    assert peak_rss_bytes(status) == 204800 * 1024
    assert peak_rss_bytes(tmp_path / "absent") is None
    assert peak_rss_bytes() > 10 * 2**20  # this process's own, from /proc
