"""CSV and libsvm decoders against reference readers (np.loadtxt, the csv module, scikit-learn), their
named errors, and the content-type registry."""

from __future__ import annotations

import csv
import io

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.datasets import dump_svmlight_file, load_svmlight_file

from container.errors import DataError, UnsupportedFormatError
from container.formats import registry
from container.formats.csv import decode_csv
from container.formats.libsvm import decode_libsvm


def dense(ds):
    return ds.to_scipy().toarray()


# --- CSV -----------------------------------------------------------------------------------------------------


def csv_text(matrix: np.ndarray, fmt=repr) -> str:
    return "\n".join(",".join(fmt(float(v)) for v in row) for row in matrix)


def test_csv_matches_loadtxt_and_the_csv_module():
    rng = np.random.default_rng(1)
    matrix = np.round(rng.normal(size=(60, 7)) * 10.0 ** rng.integers(-8, 8, (60, 7)), 5) * (rng.random((60, 7)) > 0.4)
    text = "\ufeff" + csv_text(matrix, lambda v: f"{v:.6g}").replace("\n", "\r\n", 5) + "\n\n  \n"
    ds = decode_csv(text.encode(), source="f.csv", with_labels=True)
    reference = np.loadtxt(io.StringIO(text.lstrip("\ufeff").rstrip()), delimiter=",", dtype=np.float32)
    rows = np.array([r for r in csv.reader(io.StringIO(text.lstrip("\ufeff"))) if r and r[0].strip()], np.float32)
    np.testing.assert_array_equal(reference, rows)
    np.testing.assert_array_equal(ds.labels, reference[:, 0])
    np.testing.assert_array_equal(dense(ds), reference[:, 1:])
    assert ds.n_cols == 6 and ds.nnz == np.count_nonzero(reference[:, 1:]) and ds.indices.dtype == np.int64
    serving = decode_csv(text.encode(), source="request", feature_dim=7)
    np.testing.assert_array_equal(dense(serving), reference)
    assert serving.labels is None


@settings(max_examples=60, deadline=None)
@given(
    arrays(
        np.float32,
        st.tuples(st.integers(1, 8), st.integers(1, 6)),
        elements=st.floats(width=32, allow_nan=False, allow_infinity=False),
    )
)
def test_csv_round_trips_float32_exactly(matrix):
    ds = decode_csv(csv_text(matrix).encode(), source="f")
    np.testing.assert_array_equal(dense(ds), matrix)


def test_csv_empty_body():
    ds = decode_csv(b"\n \n", source="f", feature_dim=3, with_labels=True)
    assert ds.n_rows == 0 and ds.n_cols == 3 and ds.labels.size == 0


@pytest.mark.parametrize(
    "body,kwargs,message",
    [
        (b"1,2\n\n3,x\n", {}, "line 3 column 2: 'x' is not a number"),
        (b"1,2\n3,\n", {}, "line 2 column 2: empty cell"),
        (b'1,"2"\n', {}, "line 1 column 2: '\"2\"' is not a number"),
        (b"1,2\n3\n", {}, "line 2 has 1 columns, line 1 has 2"),
        (b"1,2,3\n", {"feature_dim": 3, "with_labels": True}, "line 1 has 2 feature values, expected feature_dim=3"),
        (b"1,2\n1,nan\n", {}, "line 2 holds NaN or infinity in column 2"),
        (b"inf,2\n", {"with_labels": True}, "line 1 holds NaN or infinity in the label"),
        (b"1,1e39\n", {}, "line 1 holds NaN or infinity in column 2"),
        (b"\xff\xfe,1\n", {}, "line 1 column 1: not UTF-8"),
        (b"1\n", {"with_labels": True}, "line 1 has no feature columns after the label column"),
    ],
)
def test_csv_errors_name_line_and_column(body, kwargs, message):
    with pytest.raises(DataError, match=f"^data.csv: {message}"):
        decode_csv(body, source="data.csv", **kwargs)


def test_a_csv_header_row_is_named_as_one():
    with pytest.raises(DataError, match=r"^d.csv: line 1 column 1: 'label' is not a number; the first line looks "
                                        r"like a header, and CSV here has none .*remove the first line"):
        decode_csv(b"label,f0,f1\n1,0.5,2\n", source="d.csv", feature_dim=2, with_labels=True)
    with pytest.raises(DataError) as info:  # a word among numbers on line 1 is a typo, not a header
        decode_csv(b"1,x,2\n", source="d.csv", with_labels=True)
    assert "header" not in str(info.value)


# --- libsvm ----------------------------------------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 30), st.integers(1, 20), st.integers(0, 2**16), st.booleans())
def test_libsvm_matches_scikit_learn(n_rows, n_cols, seed, known_dim):
    X = sp.random(n_rows, n_cols, density=0.3, random_state=seed, format="csr", dtype=np.float64)
    X.data = np.round((X.data - 0.5) * 1e3, 3)
    y = np.random.default_rng(seed).integers(-1, 2, n_rows).astype(float)
    out = io.BytesIO()
    dump_svmlight_file(X, y, out, zero_based=True, comment="made by scikit-learn")
    body = out.getvalue()
    X_ref, y_ref = load_svmlight_file(io.BytesIO(body), n_features=n_cols, zero_based=True)
    ds = decode_libsvm(body, source="f", with_labels=True, feature_dim=n_cols if known_dim else None)
    np.testing.assert_array_equal(ds.labels, y_ref.astype(np.float32))
    assert ds.n_cols == (n_cols if known_dim else int(X.indices.max(initial=-1)) + 1)
    np.testing.assert_array_equal(dense(ds), X_ref.toarray()[:, : ds.n_cols].astype(np.float32))


def test_libsvm_serving_ignores_an_optional_label_comments_and_qid():
    body = b"1 0:1.5 4:2 # note\n\n3:1 qid:2\n  2:-1e-3\t0:7\n"
    ds = decode_libsvm(body, source="request", feature_dim=5)
    np.testing.assert_array_equal(
        dense(ds), np.array([[1.5, 0, 0, 0, 2], [0, 0, 0, 1, 0], [7, 0, -1e-3, 0, 0]], np.float32)
    )
    assert ds.indices.tolist() == [0, 4, 3, 2, 0]  # as written
    assert ds.labels is None and decode_libsvm(b"", source="r").n_rows == 0


@pytest.mark.parametrize(
    "body,message",
    [
        (b"1 0:1 9:1\n", r"line 1 key\[1\]=9 is outside \[0, 5\)"),
        (b"1 0:1\n1 0:1 x:1\n", "line 2: 'x:1' is not index:value"),
        (b"1 0:1 3\n", "line 1: '3' is not index:value"),
        (b"1 0:1:2\n", "line 1: '0:1:2' is not index:value"),
        (b"1 -1:1\n", "line 1: '-1:1' is not index:value"),
        (b"1 1.5:1\n", "line 1: '1.5:1' is not index:value"),
        (b"0:1\n", "line 1: label '0:1' is not a number"),
        (b"1 0:1\nx 0:1\n", "line 2: label 'x' is not a number"),
        (b"nan 0:1\n", "line 1 holds NaN or infinity in the label"),
        (b"1 0:nan\n", "line 1 holds NaN or infinity"),
    ],
)
def test_libsvm_errors_name_the_line(body, message):
    with pytest.raises(DataError, match=f"^train.svm: {message}"):
        decode_libsvm(body, source="train.svm", feature_dim=5, with_labels=True)


def test_a_one_based_libsvm_file_is_named_as_such_with_how_to_shift_it():
    one_based = b"1 1:0.5 5:1\n0 2:1 3:1\n"  # libFM's habit: indices 1..feature_dim, no index 0
    with pytest.raises(DataError, match=r"line 1 key\[1\]=5 is outside \[0, 5\) \(feature_dim 5\): indices are "
                                        r"0-based, .* looks 1-based .*subtract 1 from every index"):
        decode_libsvm(one_based, source="train.svm", feature_dim=5, with_labels=True)
    with pytest.raises(DataError, match=r"feature_dim must be at least the largest index \+ 1 \(10\)") as info:
        decode_libsvm(b"1 0:1 9:1\n", source="train.svm", feature_dim=5, with_labels=True)
    assert "1-based" not in str(info.value)


# --- registry --------------------------------------------------------------------------------------------------


def test_media_type_strips_parameters_and_resolves_aliases():
    assert registry.media_type("Application/JSON; charset=utf-8") == registry.JSON
    assert registry.media_type(" text/csv ;header=absent") == registry.CSV
    assert registry.media_type(None) == ""
    for alias in ("application/json-lines", "application/x-jsonlines", "application/jsonl"):
        assert registry.media_type(alias) == registry.JSONLINES
    for alias in ("application/x-libsvm", "text/x-libsvm"):
        assert registry.media_type(alias) == registry.LIBSVM
    assert registry.media_type("application/x-recordio") == "application/x-recordio"  # another format


def test_decode_dispatches_and_rejects_unknown_types():
    body = b"1,0,2\n"
    ds = registry.decode("text/csv; charset=utf-8", body, source="request", feature_dim=3)
    np.testing.assert_array_equal(dense(ds), [[1, 0, 2]])
    assert dense(registry.decode("text/x-libsvm", b"2:1\n", source="r", feature_dim=3)).tolist() == [[0, 0, 1]]
    for content_type in ("image/png", "application/x-recordio", None):
        with pytest.raises(UnsupportedFormatError, match="supported: application/json"):
            registry.decode(content_type, body, source="request")


def test_a_bad_cell_after_many_good_rows_is_named_by_line_and_column():
    good = b"0.5,1,2\n" * 2000
    with pytest.raises(DataError, match=r"^r: line 2002 column 3: 'x' is not a number$"):
        decode_csv(good + b"\n1,2,x\n" + good, source="r", with_labels=True)
    declined = b"1.00000000000000000000001,1,2\n"  # the scanner declines the first row: numpy's parser reads all
    with pytest.raises(DataError, match=r"^r: line 2001 column 2: empty cell$"):
        decode_csv(declined + good[8:] + b"1,,2\n", source="r", with_labels=True)


def test_a_bad_pair_after_many_good_lines_is_named_by_line():
    good = b"1 0:1 3:0.5\n" * 2000
    with pytest.raises(DataError, match=r"^r: line 2001: '3:0\.5x' is not index:value$"):
        decode_libsvm(good + b"1 0:1 3:0.5x\n" + good, source="r", with_labels=True)
    with pytest.raises(DataError, match=r"^r: line 2002: label 'y' is not a number$"):
        decode_libsvm(b"1 qid:2 0:1\n" + good + b"y 0:1\n", source="r", with_labels=True)
