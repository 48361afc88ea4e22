"""Fixtures of the client tests: an isolated ``$FMWALS_HOME`` per test (with every endpoint it started
deleted afterwards), small data sets, and an S3-compatible server (moto) on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import boto3
import numpy as np
import pytest

from fmwals import jobs
from fmwals.backends import backend_for

CREDENTIALS = {"region_name": "us-east-1", "aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


@pytest.fixture(autouse=True)
def fmwals_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Records of this test only; endpoints left running by a failing test are deleted."""
    home = tmp_path / "fmwals-home"
    monkeypatch.setenv("FMWALS_HOME", str(home))
    monkeypatch.setenv("FMWALS_STOP_GRACE_SECONDS", "3")
    yield home
    for record in sorted((home / "endpoints").glob("*/record.json")):
        name = record.parent.name
        backend_for(jobs.read("endpoints", name)["InstanceType"]).delete_endpoint(name)


@pytest.fixture(scope="session")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's digits, "is it a 0?": (x_train, y_train, x_test, y_test), float32, scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    y = (y == 0).astype(np.float32)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(y))
    x, y = x[order], y[order]
    return x[:1400], y[:1400], x[1400:], y[1400:]


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1 (real HTTP, no AWS account)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3(s3_endpoint: str) -> object:
    """An S3 client of the moto server with a fresh bucket ``test-bucket``."""
    client = boto3.client("s3", endpoint_url=s3_endpoint, **CREDENTIALS)
    for bucket in client.list_buckets().get("Buckets", []):
        for item in client.list_objects_v2(Bucket=bucket["Name"]).get("Contents", []):
            client.delete_object(Bucket=bucket["Name"], Key=item["Key"])
        client.delete_bucket(Bucket=bucket["Name"])
    client.create_bucket(Bucket="test-bucket")
    return client
