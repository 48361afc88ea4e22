"""The built image itself: entry points, metadata, size, and the numba cache baked in at build time."""

from __future__ import annotations

import json

import pytest

from tests.container.helpers import compiled_kernels, docker

pytestmark = pytest.mark.docker

MAX_IMAGE_BYTES = 600_000_000


def inspect(image: str) -> dict:
    return json.loads(docker("image", "inspect", image).stdout)[0]


def test_train_and_serve_resolve_on_path(docker_image: str) -> None:
    out = docker("run", "--rm", docker_image, "sh", "-c", "command -v train; command -v serve").stdout.split()
    assert out == ["/usr/local/bin/train", "/usr/local/bin/serve"]


def test_image_runs_the_command_itself_with_sagemaker_label(docker_image: str) -> None:
    config = inspect(docker_image)["Config"]
    # entrypoint.sh execs the command it is given (no tini, no shell left): see the PID 1 test below.
    # No default command: with none, entrypoint.sh chooses train or serve or says what to pass.
    assert config["Entrypoint"] == ["/opt/program/entrypoint.sh"]
    assert not config.get("Cmd")
    assert config["Labels"]["com.amazonaws.sagemaker.capabilities.accept-bind-to-port"] == "true"
    assert config.get("User", "") in ("", "root", "0")
    env = dict(item.split("=", 1) for item in config["Env"])
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["NUMBA_CACHE_DIR"]


def test_the_command_is_pid_1(docker_image: str) -> None:
    # `docker run IMAGE train` / `serve` run as PID 1, so SIGTERM (StopTrainingJob, docker stop) reaches them.
    out = docker("run", "--rm", docker_image, "python", "-c", "import os; print(os.getpid())").stdout
    assert out.strip() == "1"


def test_image_ships_no_data_under_opt_ml_and_no_pip_cache(docker_image: str) -> None:
    result = docker(
        "run",
        "--rm",
        docker_image,
        "sh",
        "-c",
        "test ! -e /opt/ml && test ! -e /root/.cache/pip && echo clean",
        check=False,
    )
    assert result.stdout.strip() == "clean", result.stdout + result.stderr


def test_image_is_under_600_mb(docker_image: str) -> None:
    size = inspect(docker_image)["Size"]
    assert size < MAX_IMAGE_BYTES, f"image is {size / 1e6:.0f} MB uncompressed"


def test_python_packages_import_in_the_image(docker_image: str) -> None:
    result = docker(
        "run",
        "--rm",
        docker_image,
        "python",
        "-c",
        "import algorithm.fm, container.training, serve.app, numba; print(numba.__version__)",
    )
    assert result.stdout.strip()


def test_numba_kernels_load_from_the_cache_baked_in_at_build(docker_image: str) -> None:
    # NUMBA_DEBUG_CACHE prints "[cache] data saved ..." for every kernel it has to compile.
    result = docker(
        "run",
        "--rm",
        "-e",
        "NUMBA_DEBUG_CACHE=1",
        docker_image,
        "python",
        "-m",
        "container.warmup",
        timeout=900,
    )
    output = result.stdout + result.stderr
    compiled = compiled_kernels(output)
    loaded = [line for line in output.splitlines() if line.startswith("[cache] data loaded")]
    assert loaded, output[-3000:]
    assert not compiled, f"{len(compiled)} kernels were compiled at run time:\n" + "\n".join(compiled[:10])
