"""Shared fixtures and the Docker marker policy.

Tests marked ``@pytest.mark.docker`` need a running Docker engine and the image ``$IMAGE`` (default
``fm-wals:latest``). Without an engine they are skipped, except when ``REQUIRE_DOCKER=1`` (``make test`` and
CI set it): then they fail with the reason, so a green run always means the image was really tested.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = ROOT / "local_test" / "test_dir"
REQUESTS_DIR = ROOT / "local_test" / "requests"
DEFAULT_IMAGE = "fm-wals:latest"


def image_name() -> str:
    return os.environ.get("IMAGE") or DEFAULT_IMAGE


def docker_required() -> bool:
    return os.environ.get("REQUIRE_DOCKER", "") == "1"


def skip_or_fail(reason: str) -> None:
    """Skip the current test, or fail it when REQUIRE_DOCKER=1 (a missing engine is then an error)."""
    if docker_required():
        pytest.fail(f"REQUIRE_DOCKER=1 but {reason}", pytrace=False)
    pytest.skip(reason)


@functools.cache
def docker_unavailable_reason() -> str | None:
    """None when ``docker info`` answers; else why not."""
    if shutil.which("docker") is None:
        return "the docker client is not installed (make docker-engine installs the engine)"
    try:
        probe = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 30 s"
    if probe.returncode != 0:
        detail = (probe.stderr or probe.stdout).strip().splitlines()
        return "no Docker engine answers `docker info` (make docker-engine starts one): " + (
            detail[-1] if detail else f"exit {probe.returncode}"
        )
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("docker") is not None:
        reason = docker_unavailable_reason()
        if reason is not None:
            skip_or_fail(reason)


@pytest.fixture(scope="session")
def docker_image() -> str:
    """The image under test: ``$IMAGE``, built with scripts/build_image.sh when it does not exist yet.

    ``make test`` builds it before pytest starts, so this only builds when pytest is run by hand.
    """
    reason = docker_unavailable_reason()
    if reason is not None:
        skip_or_fail(reason)
    image = image_name()
    exists = subprocess.run(["docker", "image", "inspect", image], capture_output=True, check=False)
    if exists.returncode != 0:
        build = subprocess.run(
            [str(ROOT / "scripts" / "build_image.sh")],
            env={**os.environ, "IMAGE": image},
            capture_output=True,
            text=True,
            check=False,
        )
        if build.returncode != 0:
            pytest.fail(f"building {image} failed:\n{build.stdout[-3000:]}\n{build.stderr[-3000:]}", pytrace=False)
    return image


@pytest.fixture
def sample_opt_ml(tmp_path: Path) -> Path:
    """A fresh copy of local_test/test_dir (input/ only: config + the digits sample) shaped like /opt/ml."""
    target = tmp_path / "opt_ml"
    shutil.copytree(SAMPLE_DIR / "input", target / "input")
    return target
