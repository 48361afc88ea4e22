"""Prediction encoders: parsed back with json, csv and the SDK's own RecordIO reader."""

import csv
import io
import json

import numpy as np
import pytest
from sagemaker.amazon.common import read_records

from container.errors import UnsupportedFormatError
from container.formats.responses import ENCODERS, encode, for_line_assembly

RNG = np.random.default_rng(0)
SCORES = RNG.random(37, dtype=np.float32)
CLASSIFIER = {"score": SCORES, "predicted_label": (SCORES >= 0.5).astype(np.float32)}
REGRESSOR = {"score": (RNG.standard_normal(37) * 1e3).astype(np.float32)}
TRICKY = {"score": np.array([0.0, -0.0, 1e-38, 3.4e38, -1.5, 1 / 3, 123456.7, 1e-7], dtype=np.float32)}


def _parse(accept, body, names):
    if accept == "application/json":
        return json.loads(body)["predictions"]
    if accept == "application/jsonlines":
        return [json.loads(line) for line in body.decode().splitlines()]
    if accept == "text/csv":
        lines = csv.reader(io.StringIO(body.decode()))
        return [dict(zip(names, map(float, row), strict=True)) for row in lines]
    records = read_records(io.BytesIO(body))
    assert all(not r.features for r in records)
    return [{name: r.label[name].float32_tensor.values[0] for name in r.label} for r in records]


@pytest.mark.parametrize("accept", sorted(ENCODERS))
@pytest.mark.parametrize("columns", [CLASSIFIER, REGRESSOR, TRICKY], ids=["classifier", "regressor", "edge"])
def test_round_trip_exact_float32_in_order(accept, columns):
    """Every format reads back to the same float32 values, one output per row, in row order."""
    parsed = _parse(accept, encode(accept, columns), list(columns))
    assert len(parsed) == len(columns["score"])
    key_order = sorted if accept == "application/x-recordio-protobuf" else list  # protobuf maps: no order
    assert all(key_order(row) == key_order(columns) for row in parsed)
    for name in columns:
        np.testing.assert_array_equal(np.float32([row[name] for row in parsed]), columns[name])


def test_json_shape_and_key_order():
    columns = {"score": np.float32([0.25, 0.75]), "predicted_label": np.float32([0, 1])}
    body = encode("application/json", columns)
    assert body == (b'{"predictions":[{"score":0.25,"predicted_label":0.0},'
                    b'{"score":0.75,"predicted_label":1.0}]}')


def test_every_text_line_ends_with_a_newline_but_not_in_batch_transform():
    columns = {"score": np.float32([0.5, 1.5])}
    jsonlines = encode("application/jsonlines", columns)
    csv_body = encode("text/csv", {**columns, "predicted_label": np.float32([1, 1])})
    assert jsonlines == b'{"score":0.5}\n{"score":1.5}\n'
    assert csv_body == b"0.5,1.0\n1.5,1.0\n"
    # AssembleWith=Line appends one newline per response: the last one is left to it
    assert for_line_assembly("application/jsonlines", jsonlines) == b'{"score":0.5}\n{"score":1.5}'
    assert for_line_assembly("text/csv", csv_body) == b"0.5,1.0\n1.5,1.0"
    assert for_line_assembly("application/json", b'{"predictions":[]}') == b'{"predictions":[]}'


@pytest.mark.parametrize("accept,expected", [
    ("application/json", b'{"predictions":[]}'), ("application/jsonlines", b""), ("text/csv", b""),
    ("application/x-recordio-protobuf", b""),
])
def test_no_rows(accept, expected):
    assert encode(accept, {"score": np.float32([]), "predicted_label": np.float32([])}) == expected


@pytest.mark.parametrize("columns", [CLASSIFIER, REGRESSOR], ids=["classifier", "regressor"])
def test_recordio_matches_protobuf_library(columns):
    """Each fixed-layout record parses to what record_pb2 builds, and re-serializes to the same bytes."""
    from sagemaker.amazon.record_pb2 import Record

    body = encode("application/x-recordio-protobuf", columns)
    records = read_records(io.BytesIO(body))
    assert len(records) == len(SCORES)
    for i, record in enumerate(records):
        expected = Record()
        for name, values in columns.items():
            expected.label[name].float32_tensor.values.append(values[i])
        assert record == expected
    padded = (len(records[0].SerializeToString()) + 3) // 4 * 4
    assert len(body) == len(records) * (8 + padded)


def test_recordio_framing_is_sdk_identical_for_a_known_value():
    """Magic 0xCED7230A little-endian, length word, payload, zero padding to 4 bytes."""
    body = encode("application/x-recordio-protobuf", {"score": np.float32([1.0])})
    assert body == bytes.fromhex("0a23d7ce13000000" "12110a0573636f7265120812060a040000803f" "00")


def test_unknown_accept():
    with pytest.raises(UnsupportedFormatError, match="text/html"):
        encode("text/html", REGRESSOR)
