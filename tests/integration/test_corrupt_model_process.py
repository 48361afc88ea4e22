"""Malformed models through the real processes: the server (serve.sh's gunicorn) refuses to start with one line
naming the file and what is wrong, exit 1; a warm start (``train`` with the model in its ``model`` channel)
fails the job with that line in output/failure, exit 1. Never a traceback."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.container.helpers import free_port
from tests.corrupt_artifacts import CORRUPTIONS, FEATURE_DIM, NUM_FACTORS, Corruption

pytestmark = pytest.mark.slow  # 80 process starts (tests/unit/test_artifact_corruptions.py runs the table fast)
ROOT = Path(__file__).resolve().parents[2]
SERVED = [c for c in CORRUPTIONS if not c.state_only]


@pytest.mark.parametrize("corruption", SERVED, ids=[c.name for c in SERVED])
def test_the_server_does_not_start_and_says_which_file_is_wrong(tmp_path: Path, corruption: Corruption) -> None:
    (tmp_path / "model").mkdir()
    corruption.write(tmp_path / "model")
    env = {**os.environ, "SAGEMAKER_BASE_DIR": str(tmp_path), "SAGEMAKER_BIND_TO_PORT": str(free_port()),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    proc = subprocess.run([str(ROOT / "serve.sh")], env=env, capture_output=True, text=True, timeout=120)
    lines = (proc.stdout + proc.stderr).splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stdout + proc.stderr
    assert lines[0].startswith("Cannot start the server: ")
    assert corruption.file in lines[0] and corruption.says in lines[0], lines[0]


@pytest.mark.parametrize("corruption", CORRUPTIONS, ids=[c.name for c in CORRUPTIONS])
def test_a_warm_start_fails_the_job_naming_the_file(tmp_path: Path, corruption: Corruption) -> None:
    config = tmp_path / "input/config"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({
        "feature_dim": str(FEATURE_DIM), "num_factors": str(NUM_FACTORS), "predictor_type": "binary_classifier",
        "epochs": "1", "optimizer": "adam"}))
    (tmp_path / "input/data/train").mkdir(parents=True)
    (tmp_path / "input/data/train/rows.csv").write_text("1" + ",0.5" * FEATURE_DIM + "\n0" + ",1" * FEATURE_DIM)
    (tmp_path / "input/data/model").mkdir()
    corruption.write(tmp_path / "input/data/model")
    proc = subprocess.run([sys.executable, str(ROOT / "train")], env={"SAGEMAKER_BASE_DIR": str(tmp_path),
                          "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=300)
    failure = (tmp_path / "output/failure").read_text()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert failure.count("\n") == 1 and "Traceback" not in proc.stdout + proc.stderr, failure
    assert failure.startswith("Cannot warm start from the 'model' channel")
    assert corruption.file in failure and corruption.says in failure, failure
    assert not (tmp_path / "model").exists()
