"""The built-in FM's model end to end: the real server (gunicorn) serves a model_algo-1 left in /opt/ml/model as
SageMaker extracts the built-in's model.tar.gz, and a real `train` process warm-starts from that model.tar.gz in
the model channel (its optimizer starting fresh, as logged); a tarball with a path-traversal member fails the
job with the reason, extracting nothing."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from algorithm import artifact, mxnet_params
from tests.integration.test_serve_http import ServeProcess
from tests.integration.test_train_process import FM_HP, _classification_data, _dense, _job, _train

FEATURE_DIM, NUM_FACTORS = 8, 4


def builtin_model() -> tuple[dict[str, np.ndarray], bytes]:
    """FM weights and the built-in-style model.tar.gz holding them (the Linear_Plus_Bias variant, v transposed)."""
    rng = np.random.default_rng(5)
    arrays = {"w0": rng.normal(size=1).astype(np.float32), "w": rng.normal(size=FEATURE_DIM).astype(np.float32),
              "V": rng.normal(scale=0.3, size=(FEATURE_DIM, NUM_FACTORS)).astype(np.float32)}
    params = mxnet_params.write({"arg:v": arrays["V"].T.copy(),
                                 "arg:Linear_Plus_Bias_weight": arrays["w"].reshape(1, -1),
                                 "arg:Linear_Plus_Bias_bias": arrays["w0"]})
    meta = {"training_parameters": {"feature_dim": str(FEATURE_DIM), "num_factors": str(NUM_FACTORS),
                                    "predictor_type": "binary_classifier"}}
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.writestr("params", params)
        archive.writestr("meta.json", json.dumps(meta))
    return arrays, tarball({"model_algo-1": zipped.getvalue()})


def tarball(members: dict[str, bytes]) -> bytes:
    packed = io.BytesIO()
    with tarfile.open(fileobj=packed, mode="w:gz") as tar:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return packed.getvalue()


def test_the_server_serves_the_builtins_model(tmp_path: Path) -> None:
    arrays, packed = builtin_model()
    (tmp_path / "model").mkdir()
    with tarfile.open(fileobj=io.BytesIO(packed)) as tar:  # what SageMaker does with ModelDataUrl
        tar.extractall(tmp_path / "model", filter="data")
    X = sp.random(20, FEATURE_DIM, density=0.4, format="csr", random_state=3, dtype=np.float32).toarray()
    z = arrays["w0"][0] + X @ arrays["w"] + 0.5 * (((X @ arrays["V"]) ** 2).sum(1) - (X**2) @ (arrays["V"] ** 2).sum(1))
    server = ServeProcess(tmp_path)
    try:
        reply = server.post(json.dumps({"instances": [{"features": row.tolist()} for row in X]}).encode(),
                            "application/json", "application/json")
    finally:
        server.stop()
    assert reply.status_code == 200, reply.text
    predictions = reply.json()["predictions"]
    scores = np.array([p["score"] for p in predictions])
    np.testing.assert_allclose(scores, 1 / (1 + np.exp(-z)), rtol=1e-5, atol=1e-6)
    assert [p["predicted_label"] for p in predictions] == [float(s >= 0.5) for s in scores]


def test_train_warm_starts_from_the_builtins_model_tar_gz(tmp_path: Path) -> None:
    arrays, packed = builtin_model()
    x, y = _classification_data()
    hp = {**FM_HP, "epochs": "1", "optimizer": "adam", "num_threads": "1"}
    base = _job(tmp_path, hp=hp, channels={"train": {"a": _dense(x, y)}, "model": {"model.tar.gz": packed}})
    proc, failure = _train(base)
    assert proc.returncode == 0, failure
    assert "Read the built-in FM's model from" in proc.stdout
    assert "Warm start from the model in" in proc.stdout
    assert "the adam optimizer starts fresh (the earlier model carries no optimizer state)" in proc.stdout
    continued = artifact.load(base / "model")
    cold = _job(tmp_path / "cold", hp=hp, channels={"train": {"a": _dense(x, y)}})
    assert _train(cold)[0].returncode == 0
    from_scratch = artifact.load(cold / "model")
    # One epoch moves the weights a little: the warm start stays near the built-in's, far from a cold start's.
    assert np.abs(continued.V_ - arrays["V"]).max() < np.abs(from_scratch.V_ - arrays["V"]).max() / 3


def test_a_model_channel_with_a_path_traversal_member_fails_the_job(tmp_path: Path) -> None:
    _, packed = builtin_model()
    with tarfile.open(fileobj=io.BytesIO(packed)) as tar:
        payload = tar.extractfile("model_algo-1").read()  # type: ignore[union-attr]
    x, y = _classification_data()
    base = _job(tmp_path / "job", channels={"train": {"a": _dense(x, y)}, "model": {
        "model.tar.gz": tarball({"model_algo-1": payload, "../../escaped": b"x"})}})
    proc, failure = _train(base)
    assert proc.returncode == 1
    assert failure is not None and "'../../escaped' with a '..' component: refused, nothing was extracted" in failure
    assert not (tmp_path / "escaped").exists() and not (base / "model" / "model.json").exists()
