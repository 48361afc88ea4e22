"""The real server (gunicorn + Flask, serve/gunicorn_conf.py) over HTTP: formats, errors, limits, batch.

``ServeProcess`` and the model fixtures are shared with the other test_serve_* modules.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import requests
import scipy.sparse as sp

from algorithm import artifact
from algorithm.csr import CSR
from algorithm.fm import FactorizationMachines
from container.formats.record_pb2 import Record
from container.formats.recordio import write_numpy_to_dense_tensor, write_spmatrix_to_sparse_tensor
from container.formats.recordio_framing import read_records
from tests.unit.test_duplicate_keys import bodies, repeated_rows, summed

ROOT = Path(__file__).resolve().parents[2]
FEATURE_DIM = 30
RECORDIO = "application/x-recordio-protobuf"


class ServeProcess:
    """``gunicorn -c serve/gunicorn_conf.py serve.wsgi:app`` on a free port, as serve.sh runs it."""

    def __init__(self, base_dir: Path, **env: str) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = base_dir / f"gunicorn-{port}.log"
        environ = {**os.environ, "SAGEMAKER_BASE_DIR": str(base_dir), "SAGEMAKER_BIND_TO_PORT": str(port),
                   "SAGEMAKER_MODEL_SERVER_WORKERS": "2", **env}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "serve/gunicorn_conf.py", "serve.wsgi:app"],
                cwd=ROOT, env=environ, stdout=log, stderr=subprocess.STDOUT)
        self.session = requests.Session()
        self._wait_ready()

    def _wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited {self.process.returncode}:\n{self.log()}")
            try:
                if requests.get(self.url + "/ping", timeout=2).status_code == 200:
                    return
            except requests.RequestException:  # not listening yet, or no worker warm yet
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"gunicorn not ready after {timeout} s:\n{self.log()}")

    def post(self, body: bytes, content_type: str | None, accept: str | None = None, **kw) -> requests.Response:
        headers = {k: v for k, v in (("Content-Type", content_type), ("Accept", accept)) if v is not None}
        return self.session.post(self.url + "/invocations", data=body, headers=headers, timeout=60, **kw)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def train_model(base_dir: Path, predictor_type: str) -> FactorizationMachines:
    """A small FM trained on random sparse data, saved as the artifact under base_dir/model."""
    rng = np.random.default_rng(1)
    X = sp.random(400, FEATURE_DIM, density=0.2, format="csr", random_state=2, dtype=np.float32)
    y = (X @ rng.standard_normal(FEATURE_DIM)).astype(np.float32)
    if predictor_type == "binary_classifier":
        y = (y > np.median(y)).astype(np.float32)
    model = FactorizationMachines(feature_dim=FEATURE_DIM, num_factors=4, predictor_type=predictor_type,
                                  epochs=3).fit(CSR.from_matrix(X), y)
    artifact.save(base_dir / "model", model)
    return model


def served(base_dir: Path, predictor_type: str, **env: str):
    model = train_model(base_dir, predictor_type)
    server = ServeProcess(base_dir, **env)
    try:
        yield model, server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    yield from served(tmp_path_factory.mktemp("classifier"), "binary_classifier")


@pytest.fixture(scope="module")
def regressor(tmp_path_factory):
    yield from served(tmp_path_factory.mktemp("regressor"), "regressor")


def sample_rows(n: int = 25, seed: int = 3) -> sp.csr_matrix:
    X = sp.random(n, FEATURE_DIM, density=0.3, format="csr", random_state=seed, dtype=np.float32)
    X.data[X.indptr[n // 2]:X.indptr[n // 2 + 1]] = 0  # an all-zero row keeps its place
    X.eliminate_zeros()
    return X


def expected_scores(model: FactorizationMachines, X: sp.csr_matrix) -> np.ndarray:
    return model.predict_scores(CSR.from_matrix(X))


def json_sparse(X: sp.csr_matrix) -> bytes:
    return json.dumps({"instances": [
        {"data": {"features": {"keys": X[i].indices.tolist(), "shape": [X.shape[1]],
                               "values": X[i].data.tolist()}}} for i in range(X.shape[0])]}).encode()


def jsonlines_dense(X: sp.csr_matrix) -> bytes:
    return "\n".join(json.dumps({"features": row.tolist()}) for row in X.toarray()).encode()


def csv_dense(X: sp.csr_matrix) -> bytes:
    return "\n".join(",".join(repr(float(v)) for v in row) for row in X.toarray()).encode()


def libsvm(X: sp.csr_matrix) -> bytes:
    """Rows without labels, except that an all-zero row is its label alone (a blank line is no row)."""
    lines = [" ".join(f"{j}:{v!r}" for j, v in zip(X[i].indices, X[i].data.tolist(), strict=True)) or "0"
             for i in range(X.shape[0])]
    return "\n".join(lines).encode()


def recordio_sparse(X: sp.csr_matrix) -> bytes:
    buf = io.BytesIO()
    write_spmatrix_to_sparse_tensor(buf, X)
    return buf.getvalue()


def recordio_dense(X: sp.csr_matrix, dtype=np.float32) -> bytes:
    buf = io.BytesIO()
    write_numpy_to_dense_tensor(buf, X.toarray().astype(dtype))
    return buf.getvalue()


REQUESTS = {
    "json-sparse": ("application/json", json_sparse),
    "json-dense-bare-list": ("application/json", lambda X: json.dumps(X.toarray().tolist()).encode()),
    "jsonlines-dense": ("application/jsonlines", jsonlines_dense),
    "csv": ("text/csv", csv_dense),
    "libsvm": ("text/libsvm", libsvm),
    "recordio-sparse": (RECORDIO, recordio_sparse),
    "recordio-dense": (RECORDIO, recordio_dense),
}


def parse(accept: str, body: bytes) -> tuple[np.ndarray, np.ndarray | None]:
    """Scores and predicted labels (None if absent) from a response body."""
    if accept == "application/json":
        rows = json.loads(body)["predictions"]
    elif accept == "application/jsonlines":
        rows = [json.loads(line) for line in body.decode().splitlines()]
    elif accept == "text/csv":
        rows = [dict(zip(("score", "predicted_label"), map(float, line.split(",")), strict=False))
                for line in body.decode().splitlines()]
    else:
        rows = [{k: v.float32_tensor.values[0] for k, v in r.label.items()} for r in read_records(io.BytesIO(body))]
    scores = np.float32([r["score"] for r in rows])
    labels = np.float32([r["predicted_label"] for r in rows]) if "predicted_label" in rows[0] else None
    return scores, labels


def test_ping_is_200_with_empty_body(classifier):
    _, server = classifier
    response = requests.get(server.url + "/ping", timeout=2)
    assert response.status_code == 200
    assert response.content == b""


@pytest.mark.parametrize("request_format", sorted(REQUESTS))
@pytest.mark.parametrize("accept", ["application/json", "application/jsonlines", "text/csv", RECORDIO])
def test_classifier_scores_match_model_in_input_order(classifier, request_format, accept):
    model, server = classifier
    X = sample_rows()
    content_type, encode = REQUESTS[request_format]
    response = server.post(encode(X), content_type, accept)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == accept
    scores, labels = parse(accept, response.content)
    np.testing.assert_allclose(scores, expected_scores(model, X), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(labels, (scores >= 0.5).astype(np.float32))


@pytest.mark.parametrize("accept", ["application/jsonlines", "text/csv"])
def test_text_responses_end_every_line_with_a_newline(classifier, accept):
    _, server = classifier
    body = server.post(json_sparse(sample_rows(3)), "application/json", accept).content
    assert body.endswith(b"\n") and body.count(b"\n") == 3 and b"\n\n" not in body


def test_classifier_json_key_order_and_float_label(classifier):
    _, server = classifier
    response = server.post(json_sparse(sample_rows(2)), "application/json", "application/json")
    assert response.text.startswith('{"predictions":[{"score":')
    first = json.loads(response.content)["predictions"][0]
    assert list(first) == ["score", "predicted_label"]
    assert isinstance(first["predicted_label"], float)


@pytest.mark.parametrize("accept", ["application/json", "application/jsonlines", "text/csv", RECORDIO])
def test_regressor_returns_scores_only(regressor, accept):
    model, server = regressor
    X = sample_rows()
    response = server.post(recordio_sparse(X), RECORDIO, accept)
    assert response.status_code == 200, response.text
    scores, labels = parse(accept, response.content)
    assert labels is None
    np.testing.assert_allclose(scores, expected_scores(model, X), rtol=1e-6, atol=1e-6)


def test_order_preserved_over_many_rows(regressor):
    """Rows with distinct scores come back in input order (a permuted request gives permuted answers)."""
    model, server = regressor
    X = sp.random(3000, FEATURE_DIM, density=0.3, format="csr", random_state=9, dtype=np.float32)
    permutation = np.random.default_rng(0).permutation(X.shape[0])
    straight, _ = parse(RECORDIO, server.post(recordio_sparse(X), RECORDIO, RECORDIO).content)
    permuted, _ = parse(RECORDIO, server.post(recordio_sparse(X[permutation]), RECORDIO, RECORDIO).content)
    np.testing.assert_array_equal(permuted, straight[permutation])
    np.testing.assert_allclose(straight, expected_scores(model, X), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("accept,expected", [
    (None, "application/json"),
    ("*/*", "application/json"),
    ("text/csv; charset=utf-8", "text/csv"),
    ("text/html, application/jsonlines;q=0.5, text/csv;q=0.9", "text/csv"),
    ("text/html, */*;q=0.1", "application/json"),
    (f"{RECORDIO}, application/json", RECORDIO),
])
def test_accept_negotiation(classifier, accept, expected):
    _, server = classifier
    response = server.post(json_sparse(sample_rows(3)), "application/json; charset=utf-8", accept)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == expected


def _assert_error(response: requests.Response, status: int, *needles: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    message = response.json()["error"]
    assert "Traceback" not in message
    for needle in needles:
        assert needle in message, message
    return message


def test_unsupported_content_type_is_415(classifier):
    _, server = classifier
    _assert_error(server.post(b"<x/>", "application/xml"), 415, "application/xml")
    _assert_error(server.post(b"1,2", None), 415)


def test_unsupported_accept_is_406(classifier):
    _, server = classifier
    _assert_error(server.post(json_sparse(sample_rows(1)), "application/json", "text/html"), 406, "text/html")
    _assert_error(server.post(json_sparse(sample_rows(1)), "application/json", "text/csv;q=0"), 406)


def test_empty_body_is_400(classifier):
    _, server = classifier
    _assert_error(server.post(b"", "application/json"), 400, "empty")


ZEROS = ",".join(["0"] * FEATURE_DIM)


def _recordio_with_nan() -> bytes:
    X = np.zeros((2, FEATURE_DIM), dtype=np.float32)
    X[1, 4] = np.nan
    buf = io.BytesIO()
    write_numpy_to_dense_tensor(buf, X)
    return buf.getvalue()


@pytest.mark.parametrize("content_type,body,needles", [
    ("application/json", b'{"instances": [{"features": [1, 2', ("JSON",)),
    ("application/json", b'{"instances": [{"features": [1.0, 2.0]}]}', ("instances[0]", "30", "2")),
    ("application/json", b'{"instances": [{"features": [%s]}, {"data": {"features": {"keys": [30], '
                         b'"values": [1.0]}}}]}' % ZEROS.encode(), ("instances[1]", "keys", "30")),
    ("application/jsonlines", b'{"features": [%s]}\n{"features": [1]}' % ZEROS.encode(), ("line 2", "30")),
    ("text/csv", b"%s\n1,2,3" % ZEROS.encode(), ("line 2", "30", "3")),
    ("text/csv", b"%s\n%s" % (ZEROS.encode(), ZEROS.replace("0", "nan", 1).encode()), ("line 2", "NaN")),
    ("text/csv", b"inf" + ZEROS[1:].encode(), ("line 1",)),
    ("text/libsvm", b"0:1\n0:1 99:2", ("line 2", "99")),
    ("text/libsvm", b"0:1 3:nan", ("line 1",)),
    ("application/json", b'{"instances": [{"features": [NaN]}]}', ("JSON",)),
    (RECORDIO, _recordio_with_nan(), ("record 1", "NaN")),
    (RECORDIO, b"\x0a\x23\xd7\xce\xff\x00\x00\x00garbage", ("record 0",)),
])
def test_malformed_bodies_are_400_naming_the_problem(classifier, content_type, body, needles):
    """Bad JSON, wrong dense width, key >= feature_dim, NaN/inf: 400 naming the row and the numbers."""
    _, server = classifier
    _assert_error(server.post(body, content_type), 400, *needles)


def test_bad_request_then_good_request_same_connection(classifier):
    """Client errors leave the workers serving, and the log without a traceback or a failure line (those are
    for 500s)."""
    model, server = classifier
    log_start = len(server.log())
    for _ in range(5):  # more than the workers, so every worker sees a failure
        assert server.post(b"{not json", "application/json").status_code == 400
        assert server.post(b"\x00\x01", RECORDIO).status_code == 400
    X = sample_rows(4)
    response = server.post(json_sparse(X), "application/json")
    assert response.status_code == 200
    np.testing.assert_allclose(parse("application/json", response.content)[0], expected_scores(model, X),
                               rtol=1e-6)
    assert server.process.poll() is None
    log = server.log()[log_start:]
    for marker in ("Traceback", "invocation failed", "request failed"):
        assert marker not in log, log


def test_malformed_setting_stops_the_server_naming_the_variable(tmp_path):
    environ = {**os.environ, "SAGEMAKER_BASE_DIR": str(tmp_path), "SAGEMAKER_MODEL_SERVER_TIMEOUT": "60s"}
    result = subprocess.run([sys.executable, "-m", "gunicorn", "-c", "serve/gunicorn_conf.py", "serve.wsgi:app"],
                            cwd=ROOT, env=environ, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode != 0
    assert "SAGEMAKER_MODEL_SERVER_TIMEOUT must be an integer, got '60s'" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def test_unknown_route_and_method(classifier):
    _, server = classifier
    assert requests.get(server.url + "/nope", timeout=5).status_code == 404
    assert requests.get(server.url + "/invocations", timeout=5).status_code == 405


def test_execution_parameters(classifier):
    """MaxConcurrentTransforms = workers; no BatchStrategy (SDK local mode rejects MULTI_RECORD)."""
    _, server = classifier
    response = requests.get(server.url + "/execution-parameters", timeout=5)
    assert response.status_code == 200
    assert response.json() == {"MaxConcurrentTransforms": 2, "MaxPayloadInMB": 6}


# --- batch transform: SplitType Line / RecordIO, BatchStrategy SingleRecord / MultiRecord -------------


@pytest.fixture(scope="module")
def batch_classifier(tmp_path_factory):
    yield from served(tmp_path_factory.mktemp("batch"), "binary_classifier", SAGEMAKER_BATCH="true",
                      SAGEMAKER_MAX_PAYLOAD_IN_MB="1", SAGEMAKER_BATCH_STRATEGY="MULTI_RECORD",
                      SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT="text/csv", SAGEMAKER_MODEL_SERVER_WORKERS="1",
                      FMWALS_MAX_ROWS_PER_REQUEST="250000")


@pytest.mark.parametrize("request_format", ["jsonlines-dense", "csv", "libsvm"])
def test_batch_split_line_single_and_multi_record(batch_classifier, request_format):
    """SplitType=Line: SingleRecord posts one line (trailing newline kept), MultiRecord many lines."""
    model, server = batch_classifier
    X = sample_rows(12)
    content_type, encode = REQUESTS[request_format]
    lines = encode(X).split(b"\n")
    single = [parse("text/csv", server.post(line + b"\n", content_type).content)[0][0] for line in lines]
    body = server.post(b"\n".join(lines) + b"\n", content_type).content
    assert not body.endswith(b"\n")  # AssembleWith=Line appends one per response: one line per row
    multi, _ = parse("text/csv", body)
    np.testing.assert_allclose(single, expected_scores(model, X), rtol=1e-6)
    np.testing.assert_array_equal(multi, single)


def test_batch_split_recordio_bare_and_framed(batch_classifier):
    """SplitType=RecordIO: SingleRecord may send one bare Record (header and padding stripped); MultiRecord
    sends framed records with padding."""
    model, server = batch_classifier
    X = sample_rows(6)
    framed = recordio_sparse(X)
    records = read_records(io.BytesIO(framed))
    single = [parse("text/csv", server.post(r.SerializeToString(), RECORDIO).content)[0][0] for r in records]
    multi, _ = parse("text/csv", server.post(framed, RECORDIO).content)
    np.testing.assert_allclose(single, expected_scores(model, X), rtol=1e-6)
    np.testing.assert_array_equal(multi, single)
    assert isinstance(records[0], Record)


def test_payload_limit_is_413(batch_classifier):
    _, server = batch_classifier
    limit = 1024 * 1024
    big = b"\n".join([b"0:1"] * (limit // 4 + 10))
    assert len(big) > limit
    _assert_error(server.post(big, "text/libsvm"), 413, "1 MB")

    def chunks():  # no Content-Length: the limit still holds
        yield big[: limit // 2]
        yield big[limit // 2:]

    assert server.post(chunks(), "text/libsvm").status_code == 413
    ok = b"\n".join([b"0:1"] * (limit // 5))
    assert server.post(ok, "text/libsvm").status_code == 200
    assert requests.get(server.url + "/execution-parameters", timeout=5).json() == {
        "MaxConcurrentTransforms": 1, "MaxPayloadInMB": 1}


@pytest.mark.parametrize("env,message", [
    ({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "lots"}, "SAGEMAKER_MAX_PAYLOAD_IN_MB must be an integer"),
    ({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "101"}, "SAGEMAKER_MAX_PAYLOAD_IN_MB must be between 1 and 100"),
    ({"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT": "text/html"}, "SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT 'text/html'"),
])
def test_bad_serving_environment_fails_at_startup(tmp_path, env, message):
    """A misconfigured endpoint exits at once with the reason in its log, instead of failing requests."""
    train_model(tmp_path, "regressor")
    with pytest.raises(RuntimeError, match="gunicorn exited") as failure:
        ServeProcess(tmp_path, **env)
    assert message in str(failure.value)


@pytest.mark.parametrize("content_type", ["application/json", "application/jsonlines", "text/libsvm", RECORDIO])
def test_repeated_keys_score_as_the_scipy_summed_rows(classifier, content_type):
    """``3:1 3:1`` is x_3 = 2 (scipy's sum_duplicates), never a self-interaction <v3, v3>."""
    model, server = classifier
    matrix, labels = repeated_rows()
    X = sp.csr_matrix((matrix.data, matrix.indices, matrix.indptr), shape=(matrix.shape[0], FEATURE_DIM))
    response = server.post(bodies(X, labels)[content_type], content_type, "text/csv")
    assert response.status_code == 200, response.text
    scores, _ = parse("text/csv", response.content)
    np.testing.assert_allclose(scores, expected_scores(model, summed(X)), rtol=1e-6)


def test_an_answer_over_the_response_limit_is_413_before_the_work(classifier, batch_classifier):
    """200,000 label-only libsvm lines (400 KB) would be an 11 MB RecordIO answer: over InvokeEndpoint's 6 MB
    it is refused with the reason, while its 1.6 MB CSV answer is served; batch transform allows 100 MB."""
    _, server = classifier
    body = b"0\n" * 200_000
    _assert_error(server.post(body, "text/libsvm", RECORDIO), 413, "200000 rows at 56 bytes or more each",
                  "6 MB response limit (FMWALS_MAX_RESPONSE_IN_MB)")
    served_csv = server.post(body, "text/libsvm", "text/csv")
    assert served_csv.status_code == 200 and served_csv.content.count(b"\n") == 200_000
    _, batch = batch_classifier
    assert len(read_records(io.BytesIO(batch.post(body, "text/libsvm", RECORDIO).content))) == 200_000
    _assert_error(batch.post(b"0\n" * 250_001, "text/libsvm"), 413,
                  "250001 rows, more than the 250000 allowed per request (FMWALS_MAX_ROWS_PER_REQUEST)")
