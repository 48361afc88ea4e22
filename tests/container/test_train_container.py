"""`docker run -v DIR:/opt/ml IMAGE train`: success writes the model; user errors fail with a reason."""

from __future__ import annotations

import json
import stat
import subprocess
import time
import tomllib
from pathlib import Path

import pytest

from tests.container.helpers import compiled_kernels, docker, run_train

pytestmark = pytest.mark.docker


def failure_reason(opt_ml: Path) -> str:
    """The first line of output/failure: the one-line reason SageMaker shows as FailureReason."""
    failure = opt_ml / "output" / "failure"
    assert failure.is_file(), "output/failure was not written"
    return failure.read_text().splitlines()[0]


def assert_user_error(result: subprocess.CompletedProcess[str]) -> None:
    """Exit 1 is a user error (bad input); 2 would be an internal error, 0 a silent acceptance."""
    assert result.returncode == 1, f"exit {result.returncode}:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}"


def write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value))


def test_training_on_the_sample_writes_the_model(docker_image: str, sample_opt_ml: Path) -> None:
    result = run_train(docker_image, sample_opt_ml)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    model = sample_opt_ml / "model"
    assert (model / "model.json").is_file()
    assert (model / "model.npz").is_file()
    assert not (sample_opt_ml / "output" / "failure").exists()
    assert "#quality_metric" in result.stdout + result.stderr
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    version = tomllib.loads(pyproject.read_text())["project"]["version"]
    assert json.loads((model / "model.json").read_text())["package_version"] == version  # the image's, not 0+unknown
    for path in model.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path.name


def test_training_compiles_no_kernel_at_run_time(docker_image: str, sample_opt_ml: Path) -> None:
    # Every kernel training uses must come from the cache `python -m container.warmup` filled at build.
    result = run_train(docker_image, sample_opt_ml, env={"NUMBA_DEBUG_CACHE": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    compiled = compiled_kernels(result.stdout + result.stderr)
    assert not compiled, "kernels compiled at run time (missing from container.warmup):\n" + "\n".join(compiled)


def test_broken_hyperparameters_json_fails_with_the_reason(docker_image: str, sample_opt_ml: Path) -> None:
    (sample_opt_ml / "input" / "config" / "hyperparameters.json").write_text('{"feature_dim": "64",')
    result = run_train(docker_image, sample_opt_ml)
    assert_user_error(result)
    assert "hyperparameters" in failure_reason(sample_opt_ml).lower()
    assert not (sample_opt_ml / "model" / "model.json").exists()


def test_invalid_hyperparameter_values_fail_with_every_problem_named(docker_image: str, sample_opt_ml: Path) -> None:
    hyperparameters = sample_opt_ml / "input" / "config" / "hyperparameters.json"
    values = json.loads(hyperparameters.read_text())
    values.update(num_factors="-3", predictor_type="ranker")
    write_json(hyperparameters, values)
    result = run_train(docker_image, sample_opt_ml)
    assert_user_error(result)
    reason = failure_reason(sample_opt_ml)
    assert "num_factors" in reason
    assert "predictor_type" in reason


def test_missing_train_channel_fails_with_the_reason(docker_image: str, sample_opt_ml: Path) -> None:
    config = sample_opt_ml / "input" / "config" / "inputdataconfig.json"
    channels = json.loads(config.read_text())
    del channels["train"]
    write_json(config, channels)
    for path in (sample_opt_ml / "input" / "data" / "train").iterdir():
        path.unlink()
    (sample_opt_ml / "input" / "data" / "train").rmdir()
    result = run_train(docker_image, sample_opt_ml)
    assert_user_error(result)
    reason = failure_reason(sample_opt_ml)
    assert "train" in reason
    assert "channel" in reason.lower()


def test_docker_stop_ends_training_promptly(docker_image: str, sample_opt_ml: Path) -> None:
    # SageMaker's StopTrainingJob is SIGTERM then SIGKILL; train runs as PID 1, where the kernel drops
    # signals that have no handler, so it must handle SIGTERM itself.
    hyperparameters = sample_opt_ml / "input" / "config" / "hyperparameters.json"
    values = json.loads(hyperparameters.read_text())
    values["epochs"] = "100000"
    write_json(hyperparameters, values)
    container = docker("run", "-d", "-v", f"{sample_opt_ml}:/opt/ml", docker_image, "train").stdout.strip()
    try:
        deadline = time.monotonic() + 300
        while "epoch=" not in docker("logs", container, check=False).stdout:
            assert time.monotonic() < deadline, "training did not report an epoch within 300 s"
            running = docker("inspect", "--format", "{{.State.Running}}", container).stdout.strip()
            assert running == "true", docker("logs", container, check=False).stdout[-3000:]
            time.sleep(0.5)
        started = time.monotonic()
        docker("stop", "-t", "60", container, timeout=120)
        elapsed = time.monotonic() - started
        exit_code = int(docker("inspect", "--format", "{{.State.ExitCode}}", container).stdout.strip())
        assert exit_code != 137, "train ignored SIGTERM and was killed"
        assert elapsed < 20, f"train took {elapsed:.1f} s to stop after SIGTERM"
    finally:
        docker("rm", "-f", container, check=False)
