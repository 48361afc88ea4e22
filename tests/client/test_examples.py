"""The examples run end to end through the client, as a user would run them."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(tmp_path, *args: str) -> str:
    env = {"PATH": "/usr/bin:/bin", "FMWALS_HOME": str(tmp_path / "fmwals"), "HOME": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.parametrize("instance_type", [
    "local_process", pytest.param("local", marks=pytest.mark.docker)])
def test_mnist_flow_reaches_098_and_prints_the_confusion_matrix(tmp_path, instance_type):
    out = _run(tmp_path, "examples.mnist_flow", "--instance-type", instance_type, "--tuning-jobs", "2")
    accuracy = float(re.search(r"held-out accuracy: ([0-9.]+)", out).group(1))
    assert accuracy >= 0.98
    assert re.search(r"predictions\s+0\s+1", out) and "best training job:" in out


def test_wals_recommend_example(tmp_path):
    out = _run(tmp_path, "examples.wals_recommend", "--instance-type", "local_process")
    assert float(re.search(r"test:auc: ([0-9.]+)", out).group(1)) > 0.6  # well above chance (0.5)
    assert re.search(r"user 0: items \[(\d+, ){4}\d+\]", out)
    assert "a new user who likes items" in out and "items like item 0" in out
