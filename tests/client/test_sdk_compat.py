"""The official SageMaker Python SDK 2.x in its local mode trains and serves this image: its own Estimator,
its own docker-compose plumbing, its own predictor (marked ``docker``; needs docker compose v2 or
docker-compose)."""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
import time

import boto3
import numpy as np
import pytest

from tests.conftest import skip_or_fail

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def _compose_available() -> bool:
    probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, check=False)
    return "v2" in probe.stdout or shutil.which("docker-compose") is not None


def _remove_compose_leftovers(image: str, since: float) -> None:
    """The SDK's compose runs leave exited containers behind; remove the ones this test created."""
    from fmwals.backends.local_docker import client

    for container in client().containers.list(
        all=True, filters={"ancestor": image, "status": "exited", "label": "com.docker.compose.service"}
    ):
        created = dt.datetime.fromisoformat(container.attrs["Created"][:26].rstrip("Z")).replace(
            tzinfo=dt.UTC
        )
        if created.timestamp() >= since - 1:
            container.remove()


@pytest.mark.docker
@pytest.mark.slow
def test_sdk_estimator_local_mode_trains_and_serves(docker_image, digits, tmp_path, monkeypatch):
    if not _compose_available():
        skip_or_fail("the SDK's local mode needs `docker compose` (v2) or docker-compose")
    from sagemaker.amazon.common import write_numpy_to_dense_tensor
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.estimator import Estimator
    from sagemaker.local import LocalSession
    from sagemaker.serializers import CSVSerializer

    monkeypatch.chdir(tmp_path)  # the SDK writes its compose files under the working directory's temp dirs
    x, y, xt, yt = digits
    (tmp_path / "train").mkdir()
    with open(tmp_path / "train" / "part-0.pbr", "wb") as f:
        write_numpy_to_dense_tensor(f, x, y)
    config = tmp_path / "sdk-config.yaml"  # no telemetry calls: this machine has no route to AWS
    config.write_text(
        "SchemaVersion: '1.0'\nSageMaker:\n  PythonSDK:\n    Modules:\n      TelemetryOptOut: true\n"
    )
    monkeypatch.setenv("SAGEMAKER_USER_CONFIG_OVERRIDE", str(config))
    session = LocalSession(boto_session=boto3.Session(region_name="us-east-1"))
    session.config = {"local": {"local_code": True}}
    estimator = Estimator(
        image_uri=docker_image,
        role=ROLE,
        instance_count=1,
        instance_type="local",
        sagemaker_session=session,
        output_path=f"file://{tmp_path / 'output'}",
        hyperparameters={
            "feature_dim": 64,
            "num_factors": 4,
            "predictor_type": "binary_classifier",
            "epochs": 4,
            "linear_lr": 0.05,
            "bias_lr": 0.05,
            "mini_batch_size": 100,
        },
    )
    started = time.time()
    try:
        estimator.fit({"train": f"file://{tmp_path / 'train'}"})
        assert estimator.model_data.endswith("model.tar.gz")
        predictor = estimator.deploy(1, "local", serializer=CSVSerializer(), deserializer=JSONDeserializer())
        try:
            answer = predictor.predict(xt[:40])["predictions"]
        finally:
            predictor.delete_endpoint()
    finally:
        _remove_compose_leftovers(docker_image, started)
    accuracy = np.mean([r["predicted_label"] == label for r, label in zip(answer, yt[:40], strict=True)])
    assert accuracy > 0.9
