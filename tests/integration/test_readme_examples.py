"""The README's own examples, run as written against real processes: the training command on the bundled
sample (``local_test/test_dir``); every curl, ``predict.sh`` and ``requests`` example of the serving section
against ``serve.sh`` on the model that command wrote; the WALS section's job layout, trained and queried with
its curl example. Only the address changes (a free port instead of 8080)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
PYTHON_BIN = str(Path(sys.executable).parent)


def section(heading: str) -> str:
    """The README text under the ``### heading...`` line, up to the next heading."""
    match = re.search(rf"^### {re.escape(heading)}.*?$(.*?)(?=^##)", README, re.MULTILINE | re.DOTALL)
    assert match, f"README has no '### {heading}' section"
    return match.group(1)


def blocks(text: str, language: str) -> list[str]:
    """The fenced code blocks of ``language`` ("" for unlabelled ones) in ``text``."""
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


def run_bash(script: str, port: int | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    """``script`` under ``set -euo pipefail`` from the repository root; curl fails on an HTTP error."""
    if port is not None:
        script = script.replace("localhost:8080", f"127.0.0.1:{port}")
        env["PORT"] = str(port)
    script = script.replace("curl -s ", "curl -sS --fail-with-body ")
    environ = {**os.environ, "PATH": f"{PYTHON_BIN}:{os.environ['PATH']}", **env}
    return subprocess.run(["bash", "-c", "set -euo pipefail\n" + script], cwd=ROOT, env=environ,
                          capture_output=True, text=True, timeout=600)


class Server:
    """``serve.sh`` as a local process on a free port, stopped with its process group."""

    def __init__(self, base_dir: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.log_path = base_dir / "serve.log"
        environ = {**os.environ, "PATH": f"{PYTHON_BIN}:{os.environ['PATH']}", "SAGEMAKER_BASE_DIR": str(base_dir),
                   "SAGEMAKER_BIND_TO_PORT": str(self.port)}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([str(ROOT / "serve.sh")], cwd=ROOT, env=environ, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/ping", timeout=2).status_code == 200:
                    return
            except requests.RequestException:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"serve.sh not ready:\n{self.log_path.read_text()}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=60)


def train_as_the_readme_says(base: Path) -> subprocess.CompletedProcess[str]:
    """The Train section's local-process command, with its job directory moved to ``base``."""
    commands = [line for block in blocks(section("Train"), "bash") for line in block.splitlines()
                if ".venv/bin/python train" in line]
    assert len(commands) == 1, commands
    command = commands[0].replace('"$PWD/local_test/test_dir"', f'"{base}"').replace(".venv/bin/python",
                                                                                      sys.executable)
    return run_bash(command)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """The bundled sample, copied, and the README's training command run on it."""
    base = tmp_path_factory.mktemp("readme-fm") / "test_dir"
    shutil.copytree(ROOT / "local_test/test_dir", base, ignore=shutil.ignore_patterns("model", "output"))
    return base, train_as_the_readme_says(base)


@pytest.fixture(scope="module")
def fm_server(trained) -> Iterator[Server]:
    base, proc = trained
    assert proc.returncode == 0, proc.stdout + proc.stderr
    server = Server(base)
    yield server
    server.stop()


def test_the_training_command_trains_on_the_bundled_sample(trained):
    base, proc = trained
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "#quality_metric: host=algo-1, test binary_classification_accuracy" in proc.stdout
    assert json.loads((base / "model/model.json").read_text())["hyperparameters"]["feature_dim"] == 64


@pytest.mark.parametrize("index", range(len(blocks(section("Serve"), "bash"))))
def test_every_shell_example_of_the_serving_section_answers(fm_server, index):
    block = blocks(section("Serve"), "bash")[index]
    script = "\n".join(line for line in block.splitlines() if not line.startswith("docker "))
    proc = run_bash(script, fm_server.port)
    assert proc.returncode == 0, f"{script}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert "error" not in proc.stdout
    assert proc.stdout.strip(), script


def test_the_dense_json_example_is_answered_with_one_prediction(fm_server):
    commands = [command for block in blocks(section("Serve"), "bash") for command in re.split(r"\n(?=\S)", block)]
    dense = next(command for command in commands if '"features": [' in command)
    proc = run_bash(dense, fm_server.port)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(json.loads(proc.stdout)["predictions"]) == 1


def test_the_requests_example_of_the_serving_section_runs(fm_server):
    local = [block for block in blocks(section("Serve"), "python") if "localhost:8080" in block]
    assert len(local) == 1
    code = local[0].replace("localhost:8080", f"127.0.0.1:{fm_server.port}")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("[{'score': ")


def wals_job(base: Path) -> None:
    """The WALS section's job layout (hyperparameters.json, the ratings file, inputdataconfig.json) as files."""
    layout = next(block for block in blocks(section("WALS"), "") if "hyperparameters.json:" in block)
    hyperparameters = re.search(r"hyperparameters\.json:\s*(\{.*?\})\s*\n\s*input/", layout, re.DOTALL)
    ratings = re.search(r"input/data/train/(\S+):(.*?)\n\s*inputdataconfig", layout, re.DOTALL)
    config = re.search(r"inputdataconfig\.json:\s*(\{.*\})", layout, re.DOTALL)
    assert hyperparameters and ratings and config, layout
    (base / "input/config").mkdir(parents=True)
    (base / "input/config/hyperparameters.json").write_text(hyperparameters.group(1))
    (base / "input/config/inputdataconfig.json").write_text(config.group(1))
    lines = [line.split("(")[0].strip() for line in ratings.group(2).splitlines()]
    (base / "input/data/train").mkdir(parents=True)
    (base / "input/data/train" / ratings.group(1)).write_text("\n".join(line for line in lines if line) + "\n")


def test_the_wals_section_trains_and_answers_its_queries(tmp_path):
    wals_job(tmp_path)
    proc = subprocess.run([sys.executable, str(ROOT / "train")], env={**os.environ,
                          "SAGEMAKER_BASE_DIR": str(tmp_path)}, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    server = Server(tmp_path)
    try:
        [query] = blocks(section("WALS"), "bash")
        proc = run_bash(query, server.port)
    finally:
        server.stop()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    answers = json.loads(proc.stdout)["predictions"]
    assert len(answers) == 5 and not [answer for answer in answers if "error" in answer]
