"""The numba scanners of libsvm and CSV bodies against the checking paths they stand in for: whenever a
scanner reads a body, it gives exactly what Python's ``float``/numpy's parser and the libsvm splitter give."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from container.errors import DataError
from container.formats._text import parse_floats
from container.formats._text_kernels import scan_csv
from container.formats.csv import _parsed as csv_parsed
from container.formats.csv import _scanned as csv_scanned
from container.formats.csv import decode_csv
from container.formats.libsvm import _scanned, _split, decode_libsvm

DIGITS = st.text("0123456789", max_size=20)
NUMBERS = st.builds(
    lambda sign, whole, fraction, exponent: sign + whole + fraction + exponent,
    st.sampled_from(["", "+", "-"]),
    DIGITS,
    st.one_of(st.just(""), st.builds(lambda d: "." + d, DIGITS)),
    st.one_of(st.just(""), st.builds(lambda e, s, d: e + s + d, st.sampled_from("eE"), st.sampled_from(["", "+", "-"]),
                                     st.text("0123456789", max_size=4))),
)
ODD = st.sampled_from(["nan", "inf", "-Infinity", "1_0", "0x10", ".", "e5", "1e", "--1", "1.2.3", "", " ", "1e400"])
PLAIN = st.one_of(
    st.integers(-(10**9), 10**9).map(str),
    st.floats(width=32, allow_nan=False, allow_infinity=False).map(repr),
    st.floats(-3e38, 3e38).map(lambda v: f"{v:.6g}"),
    st.floats(-1e6, 1e6).map(lambda v: f"{v:e}"),
)


def scan_one(token: str) -> float | None:
    labels = np.empty(1)
    ok, rows, _ = scan_csv(np.frombuffer(token.encode(), np.uint8), 1, True, labels, np.empty(0),
                           np.empty(0, np.int64), np.empty(1, np.int64))
    return float(labels[0]) if ok and rows == 1 else None


def same_double(a: float, b: float) -> bool:
    return a == b and math.copysign(1, a) == math.copysign(1, b)


@settings(max_examples=400, deadline=None)
@given(st.one_of(NUMBERS, ODD, PLAIN))
def test_a_number_the_scanner_reads_is_the_double_float_and_numpy_read(token):
    value = scan_one(token)
    if value is not None:
        assert same_double(value, float(token)), token
        assert same_double(value, float(parse_floats(token.encode(), 1, ",")[0])), token


@pytest.mark.parametrize("token", ["1", "0", "-0", "0.5", "-3.25e-4", "+7E+3", "1.", ".5", "123456789012345", "9e22"])
def test_common_spellings_take_the_scanner(token):
    assert scan_one(token) is not None


@pytest.mark.parametrize("token", ["nan", "inf", "1e23", "1e-23", "12345678901234567890", "1_0", "0x10", "1e"])
def test_other_spellings_are_declined(token):
    assert scan_one(token) is None


def assert_same_dataset(a, b):
    for name in ("data", "indices", "indptr", "labels"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name
    assert a.n_cols == b.n_cols


SPACES = st.sampled_from([" ", "  ", "\t", " \r"])


@st.composite
def libsvm_bodies(draw):
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["row", "row", "row", "blank", "comment"]))
        if kind == "blank":
            lines.append(draw(st.sampled_from(["", "  ", "\r"])))
            continue
        if kind == "comment":
            lines.append("# a comment 1:2")
            continue
        tokens = [draw(st.one_of(NUMBERS, PLAIN))] if draw(st.booleans()) else []
        for _ in range(draw(st.integers(0, 5))):
            tokens.append(f"{draw(st.integers(0, 40))}:{draw(st.one_of(NUMBERS, PLAIN))}")
        line = draw(SPACES).join(tokens)
        if draw(st.booleans()):
            line += draw(st.sampled_from([" # note", "#x", "\r", " "]))
        lines.append(line)
    return "\n".join(lines).encode()


@settings(max_examples=300, deadline=None)
@given(libsvm_bodies(), st.booleans(), st.sampled_from([None, 30, 41]))
def test_libsvm_scanner_agrees_with_the_splitter(body, with_labels, feature_dim):
    scanned, stop = _scanned(body, with_labels)
    split = _split(body[:stop], "r", with_labels)
    assert_same_dataset(scanned.dataset("r", None), split.dataset("r", None))
    assert scanned.lines.tolist() == split.lines.tolist()


def test_libsvm_scanner_reads_the_common_bodies():
    body = b"1 0:1 5:0.25 17:-3e-2\n\n0 3:1.5 # comment\r\n-1\n2 4:7\n"
    scanned, stop = _scanned(body, True)
    assert stop == len(body)
    assert_same_dataset(scanned.dataset("r", 20), _split(body, "r", True).dataset("r", 20))
    dataset = scanned.dataset("r", 20)
    assert dataset.labels.tolist() == [1, 0, -1, 2] and dataset.indptr.tolist() == [0, 3, 4, 4, 5]
    assert scanned.lines.tolist() == [1, 3, 4, 5]
    assert _scanned(b"0:1 1:2\n3:4", False)[0].dataset("r", None).n_cols == 4
    for declined in (b"1 qid:3 0:1", b"1 0:nan", b"0x1:1", b"1.0:2", b"-1:2", b"1:2:3"):
        assert _scanned(b"0:1\n\n" + declined, False)[1] == 5, declined
    assert decode_libsvm(b"1.0:2", source="r").indices.tolist() == [1]  # the splitter reads what it declines


def test_libsvm_rows_after_a_declined_line_keep_their_line_numbers():
    body = b"1 0:1\n\n0 1:1e-40\n1 2:2\n\n1 9:1\n"
    with pytest.raises(DataError, match=r"r: line 6 key\[0\]=9 is outside \[0, 5\)"):
        decode_libsvm(body, source="r", feature_dim=5, with_labels=True)
    dataset = decode_libsvm(body, source="r", with_labels=True)
    assert dataset.indices.tolist() == [0, 1, 2, 9] and dataset.labels.tolist() == [1, 0, 1, 1]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.one_of(PLAIN, st.just("0"), st.just("-0.0")), min_size=3, max_size=3), min_size=1,
                max_size=6), SPACES, st.booleans(), st.booleans())
def test_csv_scanner_agrees_with_numpy(rows, space, blank_lines, with_labels):
    text = ("\n\n" if blank_lines else "\n").join(space.join(["", ",", ""]).join(row) for row in rows).encode()
    lines = [line for line in text.split(b"\n") if line.strip()]
    scanned = csv_scanned(text, len(lines), 3, with_labels)
    if scanned.n_rows == len(lines):
        assert_same_dataset(scanned, csv_parsed("r", lines, list(range(len(lines))), 3, with_labels))


def test_csv_scanner_reads_the_common_bodies():
    text = b"1,0,2.5\r\n\n -1 , 0.0,0\n3,-0,1e-3\n"
    scanned = csv_scanned(text, 3, 3, True)
    assert scanned.n_rows == 3 and scanned.labels.tolist() == [1, -1, 3] and scanned.indptr.tolist() == [0, 1, 1, 2]
    lines = [line for line in text.split(b"\n") if line.strip()]
    assert_same_dataset(scanned, csv_parsed("r", lines, [1, 3, 4], 3, True))
    assert csv_scanned(b"1,nan,2", 1, 3, False).n_rows == 0 and csv_scanned(b"1,,2", 1, 3, False).n_rows == 0
    assert csv_scanned(b"1,2,3\n1,nan,2", 2, 3, False).n_rows == 1


def test_csv_falls_back_for_numbers_beyond_the_scanner():
    ds = decode_csv(b"1e30,nan_free,3".replace(b"nan_free", b"2") + b"\n12345678901234567890,0,1e-40", source="r")
    np.testing.assert_array_equal(ds.to_scipy().toarray(), np.array([[1e30, 2, 3], [12345678901234567890, 0, 1e-40]],
                                                                   np.float32))
