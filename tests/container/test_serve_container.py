"""`docker run -p PORT:8080 -v MODEL:/opt/ml/model IMAGE serve`: /ping, /invocations, SIGTERM."""

from __future__ import annotations

import io
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REQUESTS_DIR, SAMPLE_DIR
from tests.container.helpers import ServeContainer, compiled_kernels, http, run_train

pytestmark = pytest.mark.docker

RECORDIO = "application/x-recordio-protobuf"


@pytest.fixture(scope="module")
def trained_model(docker_image: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The model the image trains on the bundled sample (trained once per module)."""
    opt_ml = tmp_path_factory.mktemp("serve") / "opt_ml"
    shutil.copytree(SAMPLE_DIR / "input", opt_ml / "input")
    result = run_train(docker_image, opt_ml)
    if result.returncode != 0:
        pytest.fail(
            f"training the sample model failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}",
            pytrace=False,
        )
    return opt_ml / "model"


@pytest.fixture(scope="module")
def server(docker_image: str, trained_model: Path) -> Iterator[ServeContainer]:
    container = ServeContainer(docker_image, trained_model)
    yield container
    container.remove()


def test_ping_answers_200_with_an_empty_body(server: ServeContainer) -> None:
    status, _, body = http("GET", server.url + "/ping")
    assert status == 200
    assert body == b""


def test_invocations_json_predicts_the_sample_digits(server: ServeContainer) -> None:
    body = (REQUESTS_DIR / "digits.json").read_bytes()
    status, headers, response = http(
        "POST",
        server.url + "/invocations",
        body,
        {"Content-Type": "application/json", "Accept": "application/json"},
    )
    assert status == 200, response
    assert headers["Content-Type"].startswith("application/json")
    predictions = json.loads(response)["predictions"]
    expected = json.loads((REQUESTS_DIR / "expected_labels.json").read_text())
    assert len(predictions) == len(expected)
    for prediction in predictions:
        assert 0.0 <= prediction["score"] <= 1.0
        assert prediction["predicted_label"] in (0.0, 1.0)
    correct = sum(p["predicted_label"] == label for p, label in zip(predictions, expected, strict=True))
    assert correct >= len(expected) - 1, predictions


def test_invocations_recordio_answers_sdk_readable_records(server: ServeContainer) -> None:
    os.environ.setdefault("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    from sagemaker.amazon.common import read_records

    body = (REQUESTS_DIR / "digits.pbr").read_bytes()
    status, _, response = http(
        "POST", server.url + "/invocations", body, {"Content-Type": RECORDIO, "Accept": RECORDIO}
    )
    assert status == 200, response
    records = read_records(io.BytesIO(response))
    assert len(records) == 5
    assert all(0.0 <= r.label["score"].float32_tensor.values[0] <= 1.0 for r in records)


def test_serving_compiles_no_kernel_at_run_time(docker_image: str, trained_model: Path) -> None:
    container = ServeContainer(docker_image, trained_model, env={"NUMBA_DEBUG_CACHE": "1"})
    try:
        for name, content_type in (("digits.json", "application/json"), ("digits.pbr", RECORDIO)):
            body = (REQUESTS_DIR / name).read_bytes()
            status, _, response = http("POST", container.url + "/invocations", body, {"Content-Type": content_type})
            assert status == 200, response
        compiled = compiled_kernels(container.logs(tail=None))
        assert not compiled, "kernels compiled at run time (missing from the warmup):\n" + "\n".join(compiled)
    finally:
        container.remove()


def test_serve_listens_on_sagemaker_bind_to_port(docker_image: str, trained_model: Path) -> None:
    container = ServeContainer(docker_image, trained_model, container_port=9090, env={"SAGEMAKER_BIND_TO_PORT": "9090"})
    try:
        assert http("GET", container.url + "/ping")[0] == 200
    finally:
        container.remove()


def test_docker_stop_ends_serve_promptly(docker_image: str, trained_model: Path) -> None:
    container = ServeContainer(docker_image, trained_model)
    try:
        elapsed = container.stop(grace=30)
        assert container.exit_code() != 137, "gunicorn ignored SIGTERM and was killed:\n" + container.logs()
        assert elapsed < 15, f"serve took {elapsed:.1f} s to stop after SIGTERM"
    finally:
        container.remove()
