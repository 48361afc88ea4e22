"""The ``local`` back end: the image in the Docker engine (marked ``docker``: skipped without an engine unless
REQUIRE_DOCKER=1), and the errors that say what to do when the engine, the image or a port is missing."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from algorithm import artifact
from fmwals import BackendUnavailableError, EndpointError, FactorizationMachines, JobFailedError
from fmwals.backends.local_docker import client

FM_ARGS = {
    "num_factors": 4,
    "predictor_type": "binary_classifier",
    "epochs": 4,
    "bias_lr": 0.05,
    "linear_lr": 0.05,
    "factors_lr": 0.01,
}


def _fm(image, **kwargs):
    return FactorizationMachines("role", 1, "local", image_uri=image, **{**FM_ARGS, **kwargs})


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.parametrize("input_mode", ["File", "Pipe"])
def test_train_deploy_predict_in_docker(docker_image, digits, input_mode):
    x, y, xt, yt = digits
    fm = _fm(docker_image, input_mode=input_mode)
    fm.fit([fm.record_set(x, y), fm.record_set(xt, yt, channel="test")], mini_batch_size=100, logs=False)
    metrics = fm.training_job_analytics.metrics()
    assert len(metrics["train:binary_classification_accuracy:epoch"]) == 4
    assert metrics["test:binary_classification_accuracy"][0] > 0.9
    predictor = fm.deploy(1, "local")
    answer = [r.label["predicted_label"].float32_tensor.values[0] for r in predictor.predict(xt[:40])]
    accuracy = np.mean([p == label for p, label in zip(answer, yt[:40], strict=True)])
    assert accuracy > 0.9
    fm.delete_endpoint()
    with pytest.raises(EndpointError, match="does not exist"):
        predictor.predict(xt[:1])


@pytest.mark.docker
@pytest.mark.slow
def test_a_stopped_container_job_resumes_from_its_checkpoints_in_a_new_job(docker_image, digits, tmp_path):
    x, y, _, _ = digits
    rows = np.tile(x, (20, 1)), np.tile(y, 20)
    args = {"epochs": 60, "num_threads": 1, "seed": 5}
    checkpoints = tmp_path / "checkpoints"
    stopped = _fm(docker_image, **args, checkpoint_s3_uri=str(checkpoints))
    records = stopped.record_set(*rows)
    stopped.fit(records, mini_batch_size=10, wait=False)
    deadline = time.monotonic() + 300
    while not (checkpoints / "checkpoint.json").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    stopped.latest_training_job.stop()
    with pytest.raises(JobFailedError, match="Stopped by request"):
        stopped.latest_training_job.wait(logs=False)
    assert "Received SIGTERM" in stopped.latest_training_job.log()
    resumed = _fm(docker_image, **args, checkpoint_s3_uri=f"file://{checkpoints}")
    resumed.fit(records, mini_batch_size=10, logs=False)
    assert "Resuming from checkpoint /opt/ml/checkpoints/checkpoint.json" in resumed.latest_training_job.log()
    whole = _fm(docker_image, **args)
    whole.fit(records, mini_batch_size=10, logs=False)
    expected = artifact.read(whole.model_data.removeprefix("file://"))[1]
    for name, array in artifact.read(resumed.model_data.removeprefix("file://"))[1].items():
        np.testing.assert_array_equal(array, expected[name], err_msg=name)


@pytest.mark.docker
def test_missing_image_says_how_to_build_it(digits):
    x, y, _, _ = digits
    fm = _fm("fmwals-no-such-image:0")
    with pytest.raises(BackendUnavailableError, match="not found: build it with `make image"):
        fm.fit(fm.record_set(x[:20], y[:20]))


@pytest.mark.docker
@pytest.mark.slow
def test_port_in_use_and_stopped_container(docker_image, digits):
    x, y, xt, _ = digits
    fm = _fm(docker_image, epochs=1)
    fm.fit(fm.record_set(x[:200], y[:200]), logs=False)
    with socket.socket() as busy:
        busy.bind(("0.0.0.0", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(BackendUnavailableError, match=f"Port {port} is already in use"):
            fm.deploy(1, "local", port=port)
    predictor = fm.deploy(1, "local", endpoint_name="doomed-container")
    container = client().containers.list(filters={"label": "fmwals.endpoint=doomed-container"})[0]
    container.kill()
    time.sleep(1)
    with pytest.raises(EndpointError, match=r"has stopped .* see `docker logs"):
        predictor.predict(xt[:1])
    predictor.delete_endpoint()


def test_missing_engine_says_what_to_do(monkeypatch, digits):
    x, y, _, _ = digits
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    fm = _fm("fm-wals:latest")
    with pytest.raises(
        BackendUnavailableError, match=r"Cannot reach the Docker engine .* instance_type='local_process'"
    ):
        fm.fit(fm.record_set(x[:20], y[:20]))
