"""scripts/push_image.sh for real: push to a local registry, delete the local tag, pull it back, run it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, skip_or_fail
from tests.container.helpers import docker, free_port

pytestmark = pytest.mark.docker

FAKE_AWS = """#!/usr/bin/env bash
# Stand-in for the AWS CLI: records each call; the ECR repository does not exist until created.
echo "$*" >> "$FAKE_AWS_LOG"
case "$1 $2" in
    "configure get") echo us-east-1 ;;
    "sts get-caller-identity") echo 123456789012 ;;
    "ecr describe-repositories") exit 254 ;;
    "ecr create-repository") echo '{}' ;;
    "ecr get-login-password") echo not-a-real-password ;;
    *) echo "fake aws: unexpected call: $*" >&2; exit 2 ;;
esac
"""


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A docker-registry on a free loopback port, with its own storage; yields host:port.

    One per module: the second push can then mount the layers the first one uploaded.
    """
    if shutil.which("docker-registry") is None:
        skip_or_fail("docker-registry is not installed (make docker-engine installs it)")
    port = free_port()
    state = tmp_path_factory.mktemp("registry")
    subprocess.run(
        [str(ROOT / "scripts" / "start_registry.sh"), str(port), str(state)],
        check=True,
        capture_output=True,
        timeout=60,
    )
    try:
        yield f"127.0.0.1:{port}"
    finally:
        os.kill(int((state / "registry.pid").read_text()), signal.SIGTERM)


def push(env: dict[str, str]) -> str:
    """Run scripts/push_image.sh without rebuilding; returns the pushed image URI it prints."""
    result = subprocess.run(
        [str(ROOT / "scripts" / "push_image.sh")],
        env={**os.environ, "NO_BUILD": "1", **env},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout.strip().splitlines()[-1]


def test_push_to_a_registry_then_pull_back_and_run(docker_image: str, registry: str) -> None:
    original_id = docker("image", "inspect", "--format", "{{.Id}}", docker_image).stdout.strip()
    target = push({"IMAGE": docker_image, "REGISTRY": f"{registry}/fm-wals-push-test", "TAG": "t1"})
    assert target == f"{registry}/fm-wals-push-test:t1"
    try:
        docker("rmi", target)
        assert docker("image", "inspect", target, check=False).returncode != 0
        docker("pull", target)
        assert docker("image", "inspect", "--format", "{{.Id}}", target).stdout.strip() == original_id
        ran = docker(
            "run",
            "--rm",
            target,
            "python",
            "-c",
            "import numba, algorithm.fm, container.paths; print('ok')",
        )
        assert ran.stdout.strip() == "ok"
    finally:
        docker("rmi", target, check=False)


def test_push_to_ecr_creates_the_repository_and_logs_in(docker_image: str, registry: str, tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake_aws = bin_dir / "aws"
    fake_aws.write_text(FAKE_AWS)
    fake_aws.chmod(fake_aws.stat().st_mode | stat.S_IEXEC)
    calls = tmp_path / "aws-calls.log"
    docker_config = tmp_path / "docker-config"
    docker_config.mkdir()
    env = {
        "IMAGE": docker_image,
        "TAG": "ecr1",
        "ECR_REPOSITORY": "fm-wals-ecr-test",
        "ECR_HOST": registry,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "FAKE_AWS_LOG": str(calls),
        "DOCKER_CONFIG": str(docker_config),
        "AWS_REGION": "",
        "AWS_DEFAULT_REGION": "",
        "AWS_ACCOUNT_ID": "",
    }
    target = push(env)
    try:
        assert target == f"{registry}/fm-wals-ecr-test:ecr1"
        made = [line.split()[:2] for line in calls.read_text().splitlines()]
        assert made == [
            ["configure", "get"],
            ["sts", "get-caller-identity"],
            ["ecr", "describe-repositories"],
            ["ecr", "create-repository"],
            ["ecr", "get-login-password"],
        ]
        assert registry in json.loads((docker_config / "config.json").read_text())["auths"]
        with urllib.request.urlopen(f"http://{registry}/v2/fm-wals-ecr-test/tags/list", timeout=10) as answer:
            assert json.loads(answer.read())["tags"] == ["ecr1"]
    finally:
        docker("rmi", target, check=False)
