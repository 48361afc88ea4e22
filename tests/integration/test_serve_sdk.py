"""The official SageMaker SDK's serializers and deserializers as the client of the real server."""

from __future__ import annotations

import io

import numpy as np
import pytest
from sagemaker.amazon.factorization_machines import FactorizationMachinesPredictor
from sagemaker.deserializers import (
    CSVDeserializer,
    JSONDeserializer,
    JSONLinesDeserializer,
    RecordDeserializer,
)
from sagemaker.serializers import CSVSerializer, JSONLinesSerializer, JSONSerializer, RecordSerializer

from tests.integration.test_serve_http import (  # noqa: F401  (module-scoped server fixtures)
    classifier,
    expected_scores,
    regressor,
    sample_rows,
)


def call(server, serializer, deserializer, data):
    """What ``Predictor.predict`` does: serialize, POST with the SDK's headers, deserialize the body."""
    accept = ", ".join(deserializer.ACCEPT)
    response = server.post(serializer.serialize(data), serializer.CONTENT_TYPE, accept)
    assert response.status_code == 200, response.text
    return deserializer.deserialize(io.BytesIO(response.content), response.headers["Content-Type"])


@pytest.mark.filterwarnings("ignore:FactorizationMachinesPredictor is part of the SageMaker Python SDK v2")
def test_fm_predictor_defaults_are_record_serializer_and_deserializer():
    predictor = FactorizationMachinesPredictor("unused-endpoint", sagemaker_session=object())
    assert isinstance(predictor.serializer, RecordSerializer)
    assert isinstance(predictor.deserializer, RecordDeserializer)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_record_serializer_and_deserializer(classifier, dtype):  # noqa: F811
    """RecordSerializer writes Float32 or Float64 dense tensors (by dtype); the reply is framed Records."""
    model, server = classifier
    X = sample_rows()
    records = call(server, RecordSerializer(), RecordDeserializer(), X.toarray().astype(dtype))
    scores = np.float32([r.label["score"].float32_tensor.values[0] for r in records])
    labels = np.float32([r.label["predicted_label"].float32_tensor.values[0] for r in records])
    np.testing.assert_allclose(scores, expected_scores(model, X), rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(labels, (scores >= 0.5).astype(np.float32))


def test_record_serializer_single_vector(regressor):  # noqa: F811
    model, server = regressor
    X = sample_rows(1)
    (record,) = call(server, RecordSerializer(), RecordDeserializer(), X.toarray()[0].astype(np.float32))
    assert list(record.label) == ["score"]
    np.testing.assert_allclose(record.label["score"].float32_tensor.values[0], expected_scores(model, X)[0],
                               rtol=1e-6)


@pytest.mark.parametrize("payload", ["numpy", "instances"])
def test_json_serializer_and_deserializer(classifier, payload):  # noqa: F811
    """JSONSerializer sends a numpy array as a bare list of rows, or a dict as is."""
    model, server = classifier
    X = sample_rows()
    data = X.toarray() if payload == "numpy" else {"instances": [{"features": r} for r in X.toarray().tolist()]}
    result = call(server, JSONSerializer(), JSONDeserializer(), data)
    scores = np.float32([p["score"] for p in result["predictions"]])
    np.testing.assert_allclose(scores, expected_scores(model, X), rtol=1e-6, atol=1e-7)
    assert [p["predicted_label"] for p in result["predictions"]] == [float(s >= 0.5) for s in scores]


def test_jsonlines_serializer_and_deserializer(regressor):  # noqa: F811
    model, server = regressor
    X = sample_rows()
    rows = [{"features": r} for r in X.toarray().tolist()]
    result = call(server, JSONLinesSerializer(), JSONLinesDeserializer(), rows)
    np.testing.assert_allclose(np.float32([r["score"] for r in result]), expected_scores(model, X),
                               rtol=1e-6, atol=1e-6)


def test_csv_serializer_with_csv_and_json_replies(classifier):  # noqa: F811
    model, server = classifier
    X = sample_rows()
    as_csv = call(server, CSVSerializer(), CSVDeserializer(), X.toarray())
    assert all(len(row) == 2 for row in as_csv)
    np.testing.assert_allclose(np.float32([row[0] for row in as_csv]), expected_scores(model, X), rtol=1e-6)
    as_json = call(server, CSVSerializer(), JSONDeserializer(), X.toarray())
    assert [p["score"] for p in as_json["predictions"]] == [float(row[0]) for row in as_csv]
