"""JSON and JSON Lines request bodies: every instance form, agreement with the matrix they encode, errors."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from container.errors import DataError
from container.formats.json_requests import decode_json, decode_jsonlines

DENSE = [[0.5, 0, 2], [0, 0, 0]]


def dense(ds):
    return ds.to_scipy().toarray()


def sparse_instance(keys, values, shape=(3,)):
    features = {"keys": keys, "values": values} | ({"shape": list(shape)} if shape is not None else {})
    return {"data": {"features": features}}


@pytest.mark.parametrize(
    "body",
    [
        {"instances": [{"features": r} for r in DENSE]},
        {"instances": [{"data": {"features": {"values": r}}, "configuration": {"k": 1}} for r in DENSE]},
        {"instances": [sparse_instance([0, 2], [0.5, 2]), sparse_instance([], [])]},
        {"instances": [sparse_instance([2, 0], [2, 0.5]), {"data": {"features": {"shape": [3]}}}]},
        {"instances": [DENSE[0], {"features": DENSE[1]}]},
        DENSE,
    ],
)
def test_every_instance_form_gives_the_same_rows(body):
    ds = decode_json(orjson.dumps(body), source="request", feature_dim=3)
    np.testing.assert_array_equal(dense(ds), DENSE)
    assert ds.n_cols == 3 and ds.labels is None and ds.indices.dtype == np.int64
    assert decode_json(orjson.dumps(body), source="request").n_cols == 3  # inferred


def test_single_flat_row_sparse_rows_keep_their_order_and_jsonlines():
    np.testing.assert_array_equal(dense(decode_json(b"[1, 0, 2]", source="r")), [[1, 0, 2]])
    ds = decode_json(
        orjson.dumps({"instances": [sparse_instance([2, 0], [4.0, 0.0], shape=None)]}), source="r", feature_dim=3
    )
    assert ds.indices.tolist() == [2, 0] and ds.data.tolist() == [4.0, 0.0]  # as sent, explicit zero kept
    lines = b'{"features": [0.5, 0, 2]}\n\n' + orjson.dumps(sparse_instance([], [])) + b"\n[0, 1, 0]"
    np.testing.assert_array_equal(dense(decode_jsonlines(lines, source="r")), [[0.5, 0, 2], [0, 0, 0], [0, 1, 0]])
    assert decode_json(b'{"instances": []}', source="r", feature_dim=4).n_cols == 4
    assert decode_jsonlines(b"\n", source="r").n_rows == 0


@settings(max_examples=50, deadline=None)
@given(st.integers(1, 12), st.integers(1, 15), st.integers(0, 2**16))
def test_sparse_and_dense_encodings_of_a_matrix_decode_to_it(n_rows, n_cols, seed):
    X = sp.random(n_rows, n_cols, density=0.3, random_state=seed, format="csr", dtype=np.float32)
    instances = [sparse_instance(X[i].indices.tolist(), X[i].data.tolist(), (n_cols,)) for i in range(n_rows)]
    for body in (orjson.dumps({"instances": instances}), orjson.dumps(X.toarray().tolist())):
        np.testing.assert_array_equal(dense(decode_json(body, source="r")), X.toarray())
    lines = b"\n".join(orjson.dumps(i) for i in instances)
    np.testing.assert_array_equal(dense(decode_jsonlines(lines, source="r", feature_dim=n_cols)), X.toarray())


@pytest.mark.parametrize(
    "body,message",
    [
        (b"", "the body is not valid JSON"),
        (b"[1, NaN]", "the body is not valid JSON: unexpected character"),
        (b'{"rows": []}', "a JSON object body needs an 'instances' list"),
        (b'"text"', "the JSON body must be an object with 'instances' or a list of rows"),
        (
            b'{"instances": [{"features": [1, 2]}]}',
            r"instances\[0\].features has 2 feature values, expected feature_dim=3",
        ),
        (
            b'{"instances": [{"features": [1, 2, 3]}, '
            + orjson.dumps(sparse_instance([0, 2, 3000], [1, 1, 1], (4000,)))
            + b"]}",
            r"instances\[1\].data.features.keys\[2\]=3000 >= feature_dim 3",
        ),
        (
            orjson.dumps({"instances": [sparse_instance([0, 5], [1, 1], (4,))]}),
            r"instances\[0\].data.features.keys\[1\]=5 >= shape 4",
        ),
        (
            orjson.dumps({"instances": [sparse_instance([-1], [1])]}),
            r"instances\[0\].data.features.keys\[0\]=-1 is negative",
        ),
        (
            orjson.dumps({"instances": [sparse_instance([0], [1, 2])]}),
            r"instances\[0\].data.features has 1 keys but 2 values",
        ),
        (
            orjson.dumps({"instances": [sparse_instance([0.5], [1])]}),
            r"instances\[0\].data.features.keys must hold whole numbers",
        ),
        (
            orjson.dumps({"instances": [sparse_instance([], []), sparse_instance([2**63, -1], [1, 1])]}),
            r"instances\[1\].data.features.keys must hold whole numbers below 2\*\*63",
        ),
        (
            orjson.dumps({"instances": [sparse_instance([0], [1], (0.5,))]}),
            r"instances\[0\].data.features.shape must be a list of non-negative",
        ),
        (
            b'{"instances": [{"features": [1, "x", 2]}]}',
            r"instances\[0\].features must be a list of numbers; .*\[1\] is 'x'",
        ),
        (
            b'{"instances": [{"features": [1, null, 2]}]}',
            r"instances\[0\].features must be a list of numbers; instances\[0\].features\[1\] is None",
        ),
        (
            b'{"instances": [{"features": [1, [2], 3]}]}',
            r"instances\[0\].features must be a list of numbers; .*\[1\] is \[2\]",
        ),
        (
            b'{"instances": [{"features": {"values": [1]}}]}',
            r"instances\[0\].features must be a list of numbers, got dict",
        ),
        (b'{"instances": [{"feature": [1, 2, 3]}]}', r"instances\[0\] needs 'features' or 'data.features'"),
        (b'{"instances": [3]}', r"instances\[0\] must be an object or a list of numbers"),
        (b"[[1, 2, 1e39]]", r"rows\[0\]\[2\] is NaN or infinity as float32"),
        (b"[[1, 2, 3], [1, 2]]", r"rows\[1\] has 2 feature values, expected feature_dim=3"),
        (
            orjson.dumps({"instances": [{"data": {"features": {"values": [1, 2], "shape": [3]}}}]}),
            r"instances\[0\].data.features has 2 values but its shape holds 3",
        ),
    ],
)
def test_errors_name_the_instance_and_field(body, message):
    with pytest.raises(DataError, match=f"^request: {message}"):
        decode_json(body, source="request", feature_dim=3)


def test_errors_without_feature_dim():
    with pytest.raises(DataError, match=r"rows\[1\] has 2 values but rows\[0\] has 3"):
        decode_json(b"[[1, 2, 3], [1, 2]]", source="r")
    with pytest.raises(DataError, match="has keys but no shape"):
        decode_json(orjson.dumps({"instances": [sparse_instance([1], [1], shape=None)]}), source="r")


def test_jsonlines_errors_name_the_line():
    with pytest.raises(DataError, match=r"^r: line 3 is not valid JSON"):
        decode_jsonlines(b'{"features": [1]}\n\n{oops\n', source="r", feature_dim=1)
    with pytest.raises(DataError, match=r"^r: line 2: data.features.keys\[0\]=7 >= feature_dim 2"):
        decode_jsonlines(b"[1, 2]\n" + orjson.dumps(sparse_instance([7], [1], None)), source="r", feature_dim=2)


def test_labels_are_not_part_of_json_requests():
    with pytest.raises(DataError, match="carry no labels") as info:
        decode_json(b"[[1]]", source="r", with_labels=True)
    for works in ("application/x-recordio-protobuf", "text/csv", "text/libsvm"):
        assert works in str(info.value)


def test_faults_after_many_scanned_instances_are_named_as_in_the_whole_body():
    instance = b'{"data": {"features": {"keys": [0, 7], "shape": [30], "values": [1.0, 2]}}}'
    many = b",\n".join([instance] * 500)
    broken = b'{"instances": [' + many + b', {"features": [1, 2}]}'
    with pytest.raises(orjson.JSONDecodeError) as parsed:
        orjson.loads(broken)
    with pytest.raises(DataError) as decoded:
        decode_json(broken, source="r", feature_dim=30)
    assert str(decoded.value) == f"r: the body is not valid JSON: {parsed.value}"
    bad_value = b'{"instances": [' + many + b", " + instance.replace(b"2]", b'"2"]') + b"]}"
    with pytest.raises(DataError, match=r"^r: instances\[500\]\.data\.features\.values must be a list of numbers; "
                       r"instances\[500\]\.data\.features\.values\[1\] is '2'$"):
        decode_json(bad_value, source="r", feature_dim=30)
    lines = b"\n".join([instance] * 500) + b"\n\n" + instance.replace(b"[0, 7]", b"[0, 70]")
    with pytest.raises(DataError, match=r"^r: line 502: data\.features\.keys\[1\]=70 >= shape 30$"):
        decode_jsonlines(lines, source="r", feature_dim=30)
