"""The image's entry point: `train` and `serve` as SageMaker passes them, and what happens without them.

With no command (`docker run IMAGE`, SDK 3.x local-mode training) the image trains a training job, serves a
mounted model, or says in one line what SageMaker passes; an unknown command gets the same line.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.container.helpers import ServeContainer, docker, http, run_train

pytestmark = pytest.mark.docker


def output_of(result: subprocess.CompletedProcess[str]) -> str:
    return result.stdout + result.stderr


def assert_says_what_sagemaker_passes(output: str) -> None:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert "'IMAGE train' for training jobs" in lines[0]
    assert "'IMAGE serve' for endpoints" in lines[0]
    assert "Traceback" not in output and "No model in" not in output


def test_no_command_and_nothing_mounted_says_what_sagemaker_passes(docker_image: str) -> None:
    result = docker("run", "--rm", docker_image, check=False)
    assert result.returncode == 2, output_of(result)
    assert_says_what_sagemaker_passes(output_of(result))
    assert "No command given and nothing to do" in output_of(result)


def test_unknown_command_says_what_sagemaker_passes(docker_image: str) -> None:
    result = docker("run", "--rm", docker_image, "fit", check=False)
    assert result.returncode == 2, output_of(result)
    assert_says_what_sagemaker_passes(output_of(result))
    assert "Unknown command 'fit'" in output_of(result)


def test_no_command_trains_a_training_job_even_over_an_earlier_model(
    docker_image: str, sample_opt_ml: Path
) -> None:
    # SDK 3.x local mode passes no command and reuses its /opt/ml/model directory between jobs.
    for _ in range(2):
        result = docker("run", "--rm", "-v", f"{sample_opt_ml}:/opt/ml", docker_image, timeout=900, check=False)
        assert result.returncode == 0, output_of(result)[-3000:]
        assert "No command given; running 'train'" in output_of(result)
        assert "Training finished" in output_of(result)
        assert (sample_opt_ml / "model" / "model.json").is_file()


def test_no_command_serves_a_mounted_model(docker_image: str, sample_opt_ml: Path) -> None:
    trained = run_train(docker_image, sample_opt_ml)
    assert trained.returncode == 0, output_of(trained)[-3000:]
    server = ServeContainer(docker_image, sample_opt_ml / "model", command=())
    try:
        assert http("GET", server.url + "/ping")[0] == 200
        assert "No command given; running 'serve'" in server.logs()
    finally:
        server.remove()
