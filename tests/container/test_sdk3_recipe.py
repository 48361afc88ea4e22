"""The README's SageMaker SDK 3.x recipe, run as it stands with SDK 3.x's own python (.venv-sdk3, made by
`make venv-sdk3`; the main .venv keeps SDK 2.x): ModelTrainer trains the bundled sample in local mode, with
the image given no command, and LocalSession deploys the model and predicts. Needs docker compose."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REQUESTS_DIR, ROOT, skip_or_fail
from tests.container.helpers import docker, free_port

pytestmark = pytest.mark.docker

SDK3_PYTHON = ROOT / ".venv-sdk3" / "bin" / "python"
SECTION = "### SageMaker SDK 3.x"


def readme_recipe() -> str:
    """The first python block of the README's SDK 3.x section."""
    readme = (ROOT / "README.md").read_text()
    assert SECTION in readme, f"README.md has no '{SECTION}' section"
    block = re.search(r"```python\n(.*?)```", readme.split(SECTION, 1)[1], re.DOTALL)
    assert block is not None, f"README.md's '{SECTION}' section has no python block"
    return block.group(1)


def compose_containers(image: str) -> set[str]:
    """Ids of the containers of ``image`` that docker compose created (running or exited)."""
    listed = docker("ps", "-aq", "--filter", f"ancestor={image}", "--filter", "label=com.docker.compose.project")
    return set(listed.stdout.split())


def test_readme_sdk3_recipe_trains_deploys_and_predicts(docker_image: str, tmp_path: Path) -> None:
    if not SDK3_PYTHON.exists():
        skip_or_fail(f"{SDK3_PYTHON.relative_to(ROOT)} is missing (make venv-sdk3 creates it)")
    compose_v2 = docker("compose", "version", check=False).returncode == 0
    if not compose_v2 and shutil.which("docker-compose") is None:
        skip_or_fail("SDK 3.x local mode needs `docker compose` (v2) or docker-compose")
    script = tmp_path / "recipe.py"
    script.write_text(readme_recipe())
    sdk_config = tmp_path / "sdk-config.yaml"  # no telemetry calls: the test machine may have no route to AWS
    sdk_config.write_text("SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n")
    env = {
        **os.environ,
        "IMAGE": docker_image,
        "PORT": str(free_port()),
        "SAGEMAKER_USER_CONFIG_OVERRIDE": str(sdk_config),
        "TMPDIR": str(tmp_path),
    }
    before = compose_containers(docker_image)
    try:
        result = subprocess.run(
            [str(SDK3_PYTHON), str(script)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
    finally:
        leftovers = compose_containers(docker_image) - before
        if leftovers:
            docker("rm", "-f", *sorted(leftovers), check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert "No command given; running 'train'" in output  # the image chose train by itself
    assert "#quality_metric: host=algo-1, test binary_classification_accuracy" in output
    reply = next(line for line in result.stdout.splitlines() if line.startswith('{"predictions"'))
    labels = [row["predicted_label"] for row in json.loads(reply)["predictions"]]
    assert labels == json.loads((REQUESTS_DIR / "expected_labels.json").read_text())
