"""scripts/demo.sh end to end (train_local.sh, serve_local.sh, predict.sh): local processes and Docker."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT


def run_demo(mode: str, test_dir: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ROOT / "scripts" / "demo.sh")],
        env={**os.environ, "MODE": mode, "TEST_DIR": str(test_dir), **env},
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )


def predictions_in(output: str) -> list[dict[str, float]]:
    line = next(line for line in output.splitlines() if line.startswith('{"predictions"'))
    return list(json.loads(line)["predictions"])


def test_demo_as_local_processes(sample_opt_ml: Path) -> None:
    result = run_demo("process", sample_opt_ml)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (sample_opt_ml / "model" / "model.json").is_file()
    assert len(predictions_in(result.stdout)) == 5


@pytest.mark.docker
def test_demo_in_docker(docker_image: str, sample_opt_ml: Path) -> None:
    result = run_demo("docker", sample_opt_ml, IMAGE=docker_image)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert (sample_opt_ml / "model" / "model.json").is_file()
    assert len(predictions_in(result.stdout)) == 5
