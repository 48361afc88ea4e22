"""The JSON fast path against the checking path (``_Rows``): on random instances, valid or not, it returns
either nothing or exactly the CSR the checking path builds, and it is taken by the common shapes."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from container.errors import DataError
from container.formats.json_requests import _Rows, _Scanned, decode_json, decode_jsonlines, fast_dataset

WIDTH = 30
NUMBER = st.one_of(
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.integers(-5, 5),
    st.floats(-1e6, 1e6),
)
ODD_NUMBER = st.one_of(st.booleans(), st.just(2**63), st.just(2**64), st.just(1e39), st.just("1"), st.none(),
                       st.just([1]))
KEY = st.integers(0, WIDTH - 1)
ODD_KEY = st.one_of(st.integers(-2, WIDTH + 12), st.just(1.0), st.booleans(), st.just(2**63), st.just("3"))


def maybe_odd(draw, usual, odd):
    return draw(odd) if draw(st.integers(0, 9)) == 0 else draw(usual)


@st.composite
def sparse_instance(draw):
    n = draw(st.integers(0, 6))
    keys = [maybe_odd(draw, KEY, ODD_KEY) for _ in range(n)]
    values = [maybe_odd(draw, NUMBER, ODD_NUMBER) for _ in range(n + (draw(st.integers(0, 9)) == 0))]
    tensor = {"keys": keys, "values": values}
    shape = draw(st.sampled_from([[WIDTH], [WIDTH], [WIDTH + 5], None, [float(WIDTH)], [True], [5, 6], "x", [-1]]))
    if shape is not None:
        tensor["shape"] = shape
    instance = {"data": {"features": tensor}}
    if draw(st.integers(0, 9)) == 0:
        instance[draw(st.sampled_from(["features", "configuration"]))] = [1.0] * WIDTH
    return instance


@st.composite
def dense_row(draw):
    width = draw(st.sampled_from([WIDTH, WIDTH, WIDTH - 1]))
    row = [maybe_odd(draw, NUMBER, ODD_NUMBER) for _ in range(width)]
    return {"features": row} if draw(st.booleans()) else row


def checked(items, feature_dim):
    rows = _Rows("r")
    for i, item in enumerate(items):
        rows.add(item, f"instances[{i}]")
    return rows.dataset(feature_dim)


def assert_scanned_rows_are_the_parsed_ones(body, lines, feature_dim, parse):
    """The rows the scanner reads (all, or those before the one it declines) are the checking path's, and a key
    out of range among them is an error for both."""
    try:
        items = parse(body)
    except orjson.JSONDecodeError:
        return  # the decoders answer that the body is not JSON
    try:
        scanned = _Scanned(body, lines, feature_dim, "r")
    except DataError:
        with pytest.raises(DataError):
            checked(items, feature_dim)
        return
    if scanned.rows:
        assert_same(scanned.dataset.head(scanned.rows), checked(items[:scanned.rows], feature_dim))


def assert_same(a, b):
    for name in ("data", "indices", "indptr"):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and x.tobytes() == y.tobytes(), name
    assert a.n_cols == b.n_cols and a.labels is None and b.labels is None


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.lists(sparse_instance(), max_size=5), st.lists(dense_row(), max_size=5)),
       st.sampled_from([None, WIDTH]))
def test_the_fast_path_gives_the_checking_paths_dataset_or_nothing(items, feature_dim):
    fast = fast_dataset(items, feature_dim)
    try:
        expected = checked(items, feature_dim)
    except DataError:
        assert fast is None
        return
    if fast is not None:
        assert_same(fast, expected)


def test_the_common_shapes_take_the_fast_path():
    rng = np.random.default_rng(0)
    sparse = [{"data": {"features": {"keys": sorted(rng.choice(WIDTH, 4, replace=False).tolist()),
                                     "values": rng.normal(size=4).tolist(), "shape": [WIDTH]}}} for _ in range(5)]
    dense = rng.normal(size=(3, WIDTH)).round(2).tolist()
    for items, feature_dim in ((sparse, WIDTH), (sparse, None), (dense, WIDTH), (dense, None),
                               ([{"features": row} for row in dense], WIDTH)):
        fast = fast_dataset(items, feature_dim)
        assert fast is not None
        assert_same(fast, checked(items, feature_dim))
    body = orjson.dumps({"instances": sparse})
    assert_same(decode_json(body, source="r", feature_dim=WIDTH), checked(sparse, WIDTH))
    lines = b"\n".join(orjson.dumps(item) for item in sparse)
    assert_same(decode_jsonlines(lines, source="r", feature_dim=WIDTH), checked(sparse, WIDTH))


# --- the byte scanner: JSON text straight to arrays ---------------------------------------------------------

JSON_NUMBER = st.one_of(
    st.integers(-(10**6), 10**6).map(str),
    st.floats(allow_nan=False, allow_infinity=False, width=32).map(repr),
    st.floats(-1e30, 1e30).map(lambda v: f"{v:e}"),
    st.sampled_from(["-0", "0.0", "-0.0", "1E5", "1e-5", "2.5E+3"]),
)
ODD_JSON_NUMBER = st.sampled_from(["1e400", "12345678901234567890", "0.1e-30", "true", "1.5e+22", "123456789e-30"])
JSON_KEY = st.one_of(KEY.map(str), st.sampled_from(["-1", "1.0", "1e1", "99", "007", str(2**63)]))
SPACE = st.sampled_from(["", " ", "\n  ", "\t", "\r\n"])


@st.composite
def instance_text(draw, newlines=True, shape=(str(WIDTH),)):
    """One sparse instance as JSON text, with random spacing, member order, numbers and rare faults."""
    space = draw(SPACE) if newlines else draw(st.sampled_from(["", " ", "\t"]))
    def rare() -> bool:
        return draw(st.integers(0, 59)) == 0

    n = draw(st.integers(0 if rare() else 1, 5))
    keys = [draw(JSON_KEY) if rare() else draw(KEY.map(str)) for _ in range(n)]
    values = [draw(ODD_JSON_NUMBER) if rare() else draw(JSON_NUMBER) for _ in range(n + rare())]
    members = {"keys": keys, "values": values}
    if rare():
        shape = draw(st.sampled_from([[str(WIDTH + 5)], None, ["30.0"], ["5", "6"], ["-1"]]))
    if shape is not None:
        members["shape"] = list(shape)
    order = draw(st.permutations(list(members)))
    body = f",{space}".join(f'"{name}"{space}:{space}[{space}{f",{space}".join(members[name])}{space}]'
                            for name in order)
    extra = draw(st.sampled_from([', "configuration": {}', ', "keys": [1]'])) if rare() else ""
    return f'{{{space}"data":{space}{{"features": {{{space}{body}{extra}{space}}}}}}}'


@settings(max_examples=300, deadline=None)
@given(st.data(), st.sampled_from([None, WIDTH]), SPACE)
def test_the_json_scanner_gives_the_parsed_bodys_dataset_or_nothing(data, feature_dim, space):
    shape = data.draw(st.sampled_from([(str(WIDTH),), (str(WIDTH + 5),), None]))
    instances = data.draw(st.lists(instance_text(shape=shape), min_size=1, max_size=4))
    body = f'{{{space}"instances"{space}:{space}[{f",{space}".join(instances)}]{space}}}'.encode()
    assert_scanned_rows_are_the_parsed_ones(body, False, feature_dim, lambda b: orjson.loads(b)["instances"])


@settings(max_examples=200, deadline=None)
@given(st.lists(instance_text(newlines=False), min_size=1, max_size=4), st.sampled_from([None, WIDTH]),
       st.sampled_from(["\n", "\r\n", "\n\n  \n"]))
def test_the_jsonlines_scanner_gives_the_parsed_bodys_dataset_or_nothing(instances, feature_dim, separator):
    body = separator.join(instances).encode()
    assert_scanned_rows_are_the_parsed_ones(
        body, True, feature_dim, lambda b: [orjson.loads(line) for line in b.split(b"\n") if line.strip()])


def test_the_scanner_reads_the_common_bodies_and_declines_the_rest():
    instance = '{"data": {"features": {"keys": [0, 7, 29], "shape": [30], "values": [1.0, -0.5, 2e-3]}}}'
    for body, lines in ((f'{{"instances": [{instance}, {instance}]}}', False), (f"{instance}\n{instance}\n", True)):
        scanned = _Scanned(body.encode(), lines, WIDTH, "r")
        assert scanned.complete and scanned.dataset.indptr.tolist() == [0, 3, 6]
        assert scanned.dataset.data.tolist() == np.array([1.0, -0.5, 2e-3] * 2, np.float32).tolist()
    zero = _Scanned(b'{"instances": [{"data": {"features": {"keys": [-0], "values": [-0]}}}]}', False, WIDTH, "r")
    assert zero.dataset.data.tobytes() == np.float32(0.0).tobytes()  # -0 is the integer 0, as orjson reads it
    for declined in (instance.replace('"keys"', '"k\\u0065ys"'), instance.replace("[30]", "[30.0]"),
                     instance.replace("1.0", "true"), instance + " x"):
        scanned = _Scanned(f'{{"instances": [{instance}, {declined}]}}'.encode(), False, WIDTH, "r")
        assert not scanned.complete and scanned.rows == 1, declined
    with pytest.raises(DataError, match=r"instances\[1\]\.data\.features\.keys\[2\]=30 >= shape 30"):
        _Scanned(f'{{"instances": [{instance}, {instance.replace("29]", "30]")}]}}'.encode(), False, WIDTH, "r")
    with pytest.raises(DataError, match=r"line 4: data\.features\.keys\[2\]=30 >= shape 30"):
        _Scanned(f'{instance}\n \n\n{instance.replace("29]", "30]")}'.encode(), True, WIDTH, "r")
