"""CSV, libsvm, JSON and JSON Lines decoders: agreement with reference readers, and named errors."""

import csv
import io

import numpy as np
import orjson
import pytest
import scipy.sparse as sp
from sklearn.datasets import dump_svmlight_file, load_svmlight_file

from container.errors import DataError, UnsupportedFormatError
from container.formats.registry import decode, media_type


def _dense(ds):
    return ds.to_scipy().toarray()


def test_csv_matches_the_csv_module():
    rng = np.random.default_rng(1)
    matrix = np.round(rng.normal(size=(50, 6)), 3) * (rng.random((50, 6)) > 0.3)
    text = "\n".join(",".join(repr(float(v)) for v in row) for row in matrix) + "\n\n"
    ds = decode("text/csv", text.encode(), source="f.csv", with_labels=True)
    expected = np.array(list(csv.reader(io.StringIO(text.strip()))), dtype=np.float32)
    np.testing.assert_array_equal(ds.labels, expected[:, 0])
    np.testing.assert_array_equal(_dense(ds), expected[:, 1:])
    assert ds.n_cols == 5 and ds.indices.dtype == np.int64


@pytest.mark.parametrize("body,message", [
    (b"1,2\n3,x\n", "line 2 column 2: 'x' is not a number"),
    (b"a,b\n1,2\n", "line 1 column 1"),
    (b"1,2\n3\n", "line 2 has 1 columns"),
    (b"1,nan\n", "line 1 holds NaN or infinity"),
    (b"1,inf\n", "line 1 holds NaN or infinity"),
    (b"\xff\xfe,1\n", "not UTF-8"),
])
def test_csv_errors_name_line_and_column(body, message):
    with pytest.raises(DataError, match=message):
        decode("text/csv", body, source="data.csv", with_labels=False)


def test_csv_dense_width_must_match_feature_dim():
    with pytest.raises(DataError, match="line 1 has 2 feature values, expected feature_dim=3"):
        decode("text/csv", b"1,2\n", source="request", feature_dim=3)


def test_libsvm_matches_scikit_learn(tmp_path):
    rng = np.random.default_rng(2)
    X = sp.random(40, 30, density=0.1, random_state=3, format="csr", dtype=np.float64)
    y = rng.integers(0, 2, 40).astype(float)
    path = tmp_path / "d.svm"
    dump_svmlight_file(X, y, str(path))  # zero-based by default
    ds = decode("text/libsvm", path.read_bytes(), source=str(path), with_labels=True, feature_dim=30)
    X_ref, y_ref = load_svmlight_file(str(path), n_features=30, zero_based=True)
    np.testing.assert_allclose(_dense(ds), X_ref.toarray(), rtol=1e-6)
    np.testing.assert_array_equal(ds.labels, y_ref)


def test_libsvm_serving_ignores_an_optional_label_and_comments():
    ds = decode("text/x-libsvm", b"1 0:1.5 4:2 # note\n3:1 qid:2\n", source="request", feature_dim=5)
    np.testing.assert_array_equal(_dense(ds), [[1.5, 0, 0, 0, 2], [0, 0, 0, 1, 0]])


@pytest.mark.parametrize("body,message", [
    (b"1 0:1 9:1\n", "line 1 key\\[1\\]=9 is outside \\[0, 5\\)"),
    (b"1 0:1 x:1\n", "line 1: 'x:1' is not index:value"),
    (b"0:1\n", "line 1: label '0:1'"),
    (b"1 0:nan\n", "line 1 holds NaN"),
])
def test_libsvm_errors_name_the_line(body, message):
    with pytest.raises(DataError, match=message):
        decode("text/libsvm", body, source="train.svm", feature_dim=5, with_labels=True)


def test_json_all_instance_shapes_agree():
    dense = [[0.5, 0, 2], [0, 0, 0]]
    bodies = [
        {"instances": [{"features": r} for r in dense]},
        {"instances": [{"data": {"features": {"values": r}}, "configuration": {}} for r in dense]},
        {"instances": [{"data": {"features": {"keys": [0, 2], "shape": [3], "values": [0.5, 2]}}},
                       {"data": {"features": {"keys": [], "shape": [3], "values": []}}}]},
        dense,
    ]
    for body in bodies:
        ds = decode("application/json", orjson.dumps(body), source="request", feature_dim=3)
        np.testing.assert_array_equal(_dense(ds), dense)
    lines = b"\n".join(orjson.dumps(i) for i in bodies[2]["instances"]) + b"\n"
    np.testing.assert_array_equal(_dense(decode("application/jsonlines", lines, source="r", feature_dim=3)), dense)
    np.testing.assert_array_equal(_dense(decode("application/json", b"[1, 0, 2]", source="r")), [[1, 0, 2]])


@pytest.mark.parametrize("body,message", [
    (b"", "not valid JSON"),
    (b'{"rows": []}', "needs an 'instances' list"),
    (b'{"instances": [{"features": [1, 2]}]}', r"instances\[0\].features has 2 feature values, expected feature_dim=3"),
    (b'{"instances": [{"data": {"features": {"keys": [0, 5], "shape": [3], "values": [1, 1]}}}]}',
     r"instances\[0\].data.features.keys key\[1\]=5 is outside"),
    (b'{"instances": [{"data": {"features": {"keys": [0], "values": [1, 2]}}}]}', "1 keys but 2 values"),
    (b'{"instances": [{"data": {"features": {"keys": [0.5], "values": [1]}}}]}', "whole numbers"),
    (b'{"instances": [{"features": [1, "x", 2]}]}', r"instances\[0\].features must be a list of numbers"),
    (b'{"instances": [{"feature": [1, 2, 3]}]}', "needs 'features' or 'data.features'"),
    (b'[[1, 2, 1e999]]', "infinity"),
])
def test_json_errors_name_instance_and_field(body, message):
    with pytest.raises(DataError, match=message):
        decode("application/json", body, source="request", feature_dim=3)


def test_jsonlines_error_names_the_line():
    with pytest.raises(DataError, match="line 2 is not valid JSON"):
        decode("application/jsonlines", b'{"features": [1]}\n{oops\n', source="request", feature_dim=1)


def test_media_types_and_unsupported():
    assert media_type("Application/JSON; charset=utf-8") == "application/json"
    assert media_type("application/x-jsonlines") == "application/jsonlines"
    with pytest.raises(UnsupportedFormatError, match="image/png"):
        decode("image/png", b"x", source="request")
