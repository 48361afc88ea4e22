"""The image as a non-root user on a read-only root filesystem (``docker run --user 1000 --read-only --tmpfs
/tmp``): ``train`` and ``serve`` work, loading every kernel from the image's numba cache; and the memory
limit of a container is what a gzip bomb in a channel, or an oversized member of a model tarball, is checked
against, so the job ends with the reason instead of the OOM killer."""

from __future__ import annotations

import gzip
import json
import os
import tarfile
from pathlib import Path

import pytest

from tests.container.helpers import ServeContainer, compiled_kernels, http, run_train

pytestmark = pytest.mark.docker

NON_ROOT_READ_ONLY = ("--user", "1000:1000", "--read-only", "--tmpfs", "/tmp")
MEMORY = ("--memory", "1g", "--memory-swap", "1g")
GIB = 1 << 30


def _writable_by_anyone(root: Path) -> None:
    """The mounted /opt/ml as SageMaker's is for the container's user: writable (here by uid 1000)."""
    for directory, _, files in os.walk(root):
        os.chmod(directory, 0o777)
        for name in files:
            os.chmod(Path(directory) / name, 0o666)


def _read_only_copy_line(output: str) -> bool:
    return "numba's cache /opt/numba-cache is read-only: its kernels are read through links in /tmp/" in output


@pytest.fixture(scope="module")
def trained(docker_image: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """/opt/ml after ``train`` ran as uid 1000 on a read-only root filesystem, and that run's output."""
    opt_ml = tmp_path_factory.mktemp("opt_ml")
    sample = Path(__file__).resolve().parents[2] / "local_test" / "test_dir" / "input"
    for path in sample.rglob("*"):
        target = opt_ml / "input" / path.relative_to(sample)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(path.read_bytes())
    _writable_by_anyone(opt_ml)
    result = run_train(docker_image, opt_ml, env={"NUMBA_DEBUG_CACHE": "1"}, options=NON_ROOT_READ_ONLY)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-3000:]
    return opt_ml, output


def test_train_as_non_root_on_a_read_only_root_filesystem(trained: tuple[Path, str]) -> None:
    opt_ml, output = trained
    model = opt_ml / "model"
    assert (model / "model.json").is_file() and (model / "model.npz").is_file()
    assert {path.stat().st_uid for path in model.iterdir()} == {1000}
    assert _read_only_copy_line(output), output[-3000:]
    assert not compiled_kernels(output), "kernels compiled instead of loaded from the image's cache"


def test_serve_as_non_root_on_a_read_only_root_filesystem(docker_image: str, trained: tuple[Path, str]) -> None:
    opt_ml, _ = trained
    server = ServeContainer(docker_image, opt_ml / "model", options=NON_ROOT_READ_ONLY,
                            env={"NUMBA_DEBUG_CACHE": "1"})
    try:
        status, _, body = http("POST", server.url + "/invocations", b"0:1 5:2.5",
                               {"Content-Type": "text/libsvm", "Accept": "application/json"})
        assert status == 200, body
        assert len(json.loads(body)["predictions"]) == 1
        logs = server.logs(tail=None)
        assert not compiled_kernels(logs), "kernels compiled instead of loaded from the image's cache"
        assert "Traceback" not in logs and "Read-only file system" not in logs, logs[-3000:]
    finally:
        server.remove()


def _zeros_gzip(size: int) -> bytes:
    """``size`` zero bytes as concatenated gzip members of 1 MiB each (about 1000:1; gzip reads them as one)."""
    member = gzip.compress(bytes(1 << 20), compresslevel=9)
    return member * (size >> 20)


def test_a_gzip_bomb_in_a_channel_fails_the_job_with_the_reason(docker_image: str, tmp_path: Path) -> None:
    opt_ml = tmp_path / "opt_ml"
    (opt_ml / "input/config").mkdir(parents=True)
    (opt_ml / "input/config/hyperparameters.json").write_text(json.dumps(
        {"feature_dim": "4", "num_factors": "2", "predictor_type": "regressor"}))
    (opt_ml / "input/data/train").mkdir(parents=True)
    bomb = _zeros_gzip(4 * GIB)
    assert len(bomb) < 5 << 20
    (opt_ml / "input/data/train/rows.csv.gz").write_bytes(bomb)
    _writable_by_anyone(opt_ml)
    result = run_train(docker_image, opt_ml, options=(*NON_ROOT_READ_ONLY, *MEMORY))
    assert result.returncode == 1, f"exit {result.returncode}: {(result.stdout + result.stderr)[-3000:]}"
    failure = (opt_ml / "output/failure").read_text()
    assert failure.startswith("/opt/ml/input/data/train/rows.csv.gz: decompresses to more than "), failure
    assert "than this job can hold in memory" in failure


def test_an_oversized_member_of_a_model_tarball_fails_the_warm_start(docker_image: str, tmp_path: Path) -> None:
    opt_ml = tmp_path / "opt_ml"
    (opt_ml / "input/config").mkdir(parents=True)
    (opt_ml / "input/config/hyperparameters.json").write_text(json.dumps(
        {"feature_dim": "4", "num_factors": "2", "predictor_type": "regressor"}))
    (opt_ml / "input/data/train").mkdir(parents=True)
    (opt_ml / "input/data/train/rows.csv").write_text("1,0,1,0,1\n")
    (opt_ml / "input/data/model").mkdir(parents=True)
    header = tarfile.TarInfo("model.npz")
    header.size = 4 * GIB  # a tar.gz of 4 MB whose member inflates to 4 GiB
    tarball = gzip.compress(header.tobuf()) + _zeros_gzip(4 * GIB) + gzip.compress(bytes(1024))
    (opt_ml / "input/data/model/model.tar.gz").write_bytes(tarball)
    _writable_by_anyone(opt_ml)
    result = run_train(docker_image, opt_ml, options=(*NON_ROOT_READ_ONLY, *MEMORY))
    assert result.returncode == 1, f"exit {result.returncode}: {(result.stdout + result.stderr)[-3000:]}"
    failure = (opt_ml / "output/failure").read_text()
    assert "model.tar.gz: member 'model.npz' is 4,294,967,296 bytes" in failure, failure
    assert "bytes of memory the model may take" in failure
