"""entrypoint.sh (the image's ENTRYPOINT) run as a process: it runs the program it is given and, with no
command and nothing under $SAGEMAKER_BASE_DIR or with an unknown one, says in one line what SageMaker passes.
The image's own runs (train, serve, no command) are in tests/container/test_entrypoint.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

ENTRYPOINT = ROOT / "entrypoint.sh"


def run(*args: str, base: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(ENTRYPOINT), *args],
        env={**os.environ, "SAGEMAKER_BASE_DIR": str(base)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def the_one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "SageMaker runs 'IMAGE train' for training jobs and 'IMAGE serve' for endpoints" in lines[0]
    return lines[0]


def test_no_command_with_no_training_config_and_no_model_says_what_to_pass(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    result = run(base=tmp_path)
    assert result.returncode == 2
    line = the_one_line(result)
    assert f"no training configuration in {tmp_path}/input/config and no model in {tmp_path}/model" in line
    assert "IMAGE train" in line and "IMAGE serve" in line


def test_unknown_command_says_what_to_pass(tmp_path: Path) -> None:
    result = run("fit", "--epochs", "3", base=tmp_path)
    assert result.returncode == 2
    assert "Unknown command 'fit'" in the_one_line(result)


def test_a_program_runs_with_its_arguments_and_exit_code(tmp_path: Path) -> None:
    result = run(sys.executable, "-c", "import sys; print(sys.argv[1:]); sys.exit(3)", "a b", "c", base=tmp_path)
    assert result.returncode == 3
    assert result.stdout.strip() == "['a b', 'c']"
