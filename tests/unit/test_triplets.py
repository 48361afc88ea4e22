"""WALS input decoders (CSV and one-hot RecordIO triplets, id,weight CSV), id maps, the container artifact."""

import io

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from algorithm import artifact
from algorithm.wals import WALS
from algorithm.wals_model import IdMap, WALSModel
from container.errors import DataError
from container.formats.recordio import write_spmatrix_to_sparse_tensor
from container.formats.recordio_framing import frame_records, read_records
from container.formats.triplets import (
    Triplets,
    _Lines,
    concatenate,
    decode_id_weights_csv,
    decode_triplets_csv,
    decode_triplets_csv_simple,
    decode_triplets_recordio,
)


def _csv(text: str, **kw) -> Triplets:
    return decode_triplets_csv(text.encode(), source="f.csv", **kw)


def _one_hot(rows, cols, values, num_rows, num_cols, weights=None) -> bytes:
    """What an FM user writes: one record per entry, keys [row, num_rows + col], label = value."""
    n = len(rows)
    keys = np.ravel(np.column_stack([rows, np.add(cols, num_rows)]))
    X = sp.csr_matrix((np.ones(2 * n, np.float32), (np.repeat(np.arange(n), 2), keys)),
                      shape=(n, num_rows + num_cols))
    buf = io.BytesIO()
    write_spmatrix_to_sparse_tensor(buf, X, np.asarray(values, np.float32))
    if weights is None:
        return buf.getvalue()
    records = read_records(io.BytesIO(buf.getvalue()))
    for record, weight in zip(records, weights, strict=True):
        record.label["weight"].float32_tensor.values.append(weight)
    return frame_records(r.SerializeToString() for r in records)


def test_csv_string_ids_header_blank_lines_and_weights():
    data = _csv("user,item,rating,weight\nu1,i2,5,2\n\n  \nu2, i1,3\n\"u,3\",i1,1.5,0\n")
    assert data.row_ids().tolist() == ["u1", "u2", "u,3"]
    assert data.col_ids().tolist() == ["i2", "i1", "i1"]  # the space after a comma is dropped
    assert data.row_names.tolist() == ["u,3", "u1", "u2"] and data.rows.tolist() == [1, 2, 0]
    np.testing.assert_array_equal(data.values, np.float32([5, 3, 1.5]))
    np.testing.assert_array_equal(data.weights, np.float32([2, 1, 0]))


def test_csv_without_header_or_weights():
    data = _csv("1,2,3\n4,5,6\n")
    assert data.row_ids().tolist() == ["1", "4"] and data.weights is None
    assert len(_csv("row,col,value\n")) == 0


def test_csv_declared_sizes_make_ids_indices():
    data = _csv("0,2,1\n3,0,1\n", num_rows=4, num_cols=3)
    assert data.rows.dtype == np.int64 and data.rows.tolist() == [0, 3] and data.cols.tolist() == [2, 0]
    assert data.row_names is None and data.row_ids() is data.rows


def test_simple_reader_numbers_lines_across_chunks(monkeypatch):
    monkeypatch.setattr("container.formats.triplets.CHUNK_LINES", 2)
    with pytest.raises(DataError, match="line 5: value 'x'"):
        decode_triplets_csv_simple(b"a,b,1\na,b,2\na,b,3\na,b,4\na,b,x\n", source="f.csv")
    data = decode_triplets_csv_simple(b"r,c,v\na,b,1\n\nc,b,2,3\na,d,3\n", source="f.csv")
    assert data.row_ids().tolist() == ["a", "c", "a"] and data.weights.tolist() == [1, 3, 1]


@pytest.mark.parametrize("text,kw,message", [
    ("u1,i1\n", {}, "line 1 has 2 fields; expected row,col,value"),
    ("u1,i1,1\nu2,i2,1,1,1\n", {}, "line 2 has 5 fields"),
    ("u1,i1,1\nu2,i2,x\n", {}, "line 2: value 'x' is not a number"),
    ("u1,i1,1\nu2,i2,nan\n", {}, "line 2: value 'nan' must be finite"),
    ("u1,i1,1\nu2,i2,inf\n", {}, "line 2: value 'inf' must be finite"),
    ("u1,i1,1,-1\n", {}, "line 1: weight '-1' must be finite and >= 0"),
    ("u1,i1,-1\n", {"nonnegative_values": True}, "line 1: value '-1' must be finite and >= 0"),
    (",i1,1\n", {}, "line 1: the row id is empty"),
    ("0,0,1\nu1,0,1\n", {"num_rows": 5}, "line 2: row id 'u1' is not an integer"),
    ("0,0,1\n5,0,1\n", {"num_rows": 5}, r"line 2: row id 5 is outside \[0, 5\) \(num_rows=5\)"),
    ("0,0,1\n0,-1,1\n", {"num_cols": 3}, r"line 2: col id -1 is outside \[0, 3\)"),
    ("u1,i1,1\n\"u2,i1,1\n", {}, "line 2 has 1 fields"),  # an unclosed quote swallows the line
])
def test_csv_errors_name_file_and_line(text, kw, message):
    with pytest.raises(DataError, match=rf"f\.csv: {message}"):
        _csv(text, **kw)


def test_csv_not_utf8():
    with pytest.raises(DataError, match=r"f\.csv: not UTF-8"):
        decode_triplets_csv(b"\xff,a,1\n", source="f.csv")


def test_recordio_one_hot_layout():
    body = _one_hot([0, 2, 1], [1, 0, 3], [5.0, 1.0, 2.0], num_rows=3, num_cols=4)
    data = decode_triplets_recordio(body, source="r", num_rows=3)
    assert data.rows.tolist() == [0, 2, 1] and data.cols.tolist() == [1, 0, 3]
    np.testing.assert_array_equal(data.values, np.float32([5, 1, 2]))
    assert data.weights is None


def test_recordio_weights():
    body = _one_hot([0, 1], [1, 0], [5.0, 1.0], num_rows=2, num_cols=2, weights=[2.0, 0.5])
    np.testing.assert_array_equal(decode_triplets_recordio(body, source="r", num_rows=2).weights,
                                  np.float32([2, 0.5]))


@pytest.mark.parametrize("kw,message", [
    ({"num_rows": 5}, r"record 0 has keys \[0, 4\]; the one-hot layout needs one row key < num_rows=5"),
    ({"num_rows": 1, "num_cols": 3}, "r: .*record 0"),  # column 3 is key 4, beyond num_rows + num_cols
])
def test_recordio_layout_errors(kw, message):
    body = _one_hot([0], [3], [1.0], num_rows=1, num_cols=4)
    with pytest.raises(DataError, match=message):
        decode_triplets_recordio(body, source="r", **kw)


def test_recordio_key_count_and_nonfinite_label():
    buf = io.BytesIO()
    write_spmatrix_to_sparse_tensor(buf, sp.csr_matrix(np.float32([[1, 1, 1]])), np.float32([1]))
    with pytest.raises(DataError, match="record 0 has 3 feature keys"):
        decode_triplets_recordio(buf.getvalue(), source="r", num_rows=1)
    with pytest.raises(DataError, match=r"r: record 1 .*label\['values'\] is NaN or infinite"):
        decode_triplets_recordio(_one_hot([0, 1], [0, 0], [1.0, np.nan], 2, 1), source="r", num_rows=2)
    with pytest.raises(DataError, match=r"r: record 0: label \(value\) -1.0 must be >= 0"):
        decode_triplets_recordio(_one_hot([0], [0], [-1.0], 1, 1), source="r", num_rows=1,
                                 nonnegative_values=True)


def test_id_weights_csv():
    ids, weights = decode_id_weights_csv(b"id,weight\nu1,2\n\nu2,0.5\n", source="w", what="row")
    assert ids.tolist() == ["u1", "u2"] and weights.tolist() == [2.0, 0.5]
    with pytest.raises(DataError, match="w: line 2: weight '-2' must be finite and >= 0"):
        decode_id_weights_csv(b"u1,1\nu2,-2\n", source="w", what="row")
    with pytest.raises(DataError, match=r"w: line 1: col id 9 is outside \[0, 3\)"):
        decode_id_weights_csv(b"9,1\n", source="w", what="col", declared=3)


def test_concatenate_merges_names_and_fills_missing_weights():
    a = _csv("u2,i1,1\nu1,i1,2\n")
    b = _csv("u3,i9,3,2\nu2,i1,4,0.5\n")
    joined = concatenate([a, b])
    assert joined.row_names.tolist() == ["u1", "u2", "u3"] and joined.col_names.tolist() == ["i1", "i9"]
    assert joined.row_ids().tolist() == ["u2", "u1", "u3", "u2"]
    assert joined.col_ids().tolist() == ["i1", "i1", "i9", "i1"]
    assert joined.weights.tolist() == [1, 1, 2, 0.5]
    ints = concatenate([Triplets(np.array([2]), np.array([0]), np.float32([1])),
                        Triplets(np.array([0]), np.array([1]), np.float32([2]))])
    assert ints.rows.tolist() == [2, 0] and ints.row_names is None and ints.weights is None


def test_id_map_integers_sorted_numerically():
    ids, index = IdMap.from_ids(np.array(["10", "9", "-1", "10"]))
    assert ids.kind == "int" and ids.ids.tolist() == [-1, 9, 10] and index.tolist() == [2, 1, 0, 2]
    assert ids.find(9) == 1 and ids.find("9") == 1 and ids.find("09") is None and ids.find(True) is None
    assert ids.index(np.array(["10", "x", "07"])).tolist() == [2, -1, -1]
    assert ids.index(np.array([9, 11])).tolist() == [1, -1]
    assert ids.to_list(np.array([0, 2])) == [-1, 10]


def test_id_map_non_canonical_integers_stay_strings():
    ids, index = IdMap.from_ids(np.array(["7", "007", "b"]))
    assert ids.kind == "str" and ids.ids.tolist() == ["007", "7", "b"] and index.tolist() == [1, 0, 2]
    assert ids.find(7) == 1 and ids.find("7") == 1 and ids.find(None) is None
    assert ids.index(np.array([7, 8])).tolist() == [1, -1]
    assert IdMap(np.zeros(0, str)).index(np.array(["a"])).tolist() == [-1]


def _wals_model() -> WALSModel:
    R = sp.csr_matrix(np.float32([[1, 0, 2], [0, 3, 0]]))
    wals = WALS(embedding_dimension=2, max_sweeps=2, num_threads=1).fit(R)
    return WALSModel(wals, IdMap(np.array(["u1", "u2"])), IdMap(np.array([4, 7, 9])), R)


def test_artifact_round_trip_without_pickle(tmp_path):
    model = _wals_model()
    artifact.save(tmp_path, model)
    with np.load(tmp_path / "model.npz", allow_pickle=False) as npz:
        assert npz["row_ids"].tolist() == ["u1", "u2"] and npz["col_ids"].dtype == np.int64
        assert npz["seen_indices"].tolist() == [0, 2, 1]
    back = artifact.load(tmp_path)
    assert back.row_ids.ids.tolist() == ["u1", "u2"] and back.col_ids.ids.tolist() == [4, 7, 9]
    assert back.seen_cols(0).tolist() == [0, 2] and back.seen_cols(1).tolist() == [1]
    np.testing.assert_array_equal(back.wals.row_factors_, model.wals.row_factors_)
    assert isinstance(back.wals, WALS)
    assert isinstance(back, WALSModel)


def test_bare_wals_artifact_gets_index_ids(tmp_path):
    wals = _wals_model().wals
    artifact.save(tmp_path, wals)
    back = artifact.load(tmp_path)
    assert back.row_ids.ids.tolist() == [0, 1] and back.col_ids.ids.tolist() == [0, 1, 2]
    assert back.seen.nnz == 0


def test_model_shapes_must_agree():
    model = _wals_model()
    with pytest.raises(ValueError, match="must match"):
        WALSModel(model.wals, IdMap(np.array(["u1"])), model.col_ids, model.seen)


# ----------------------------------------------------------------------------- fast reader vs csv module

ID_TEXTS = ["u1", "u2", "7", "-3", "007", "+7", "10", "", " ", "a b", "é", "x,y", 'q"t', "\t", "99999999999999999999"]
NUMBER_TEXTS = ["5", "3.5", "-1", "0", "-0", "1e3", "2.5E-3", ".5", "5.", "+4", "1_0", " 2", "2 ", "nan", "inf", "-inf",
                "1e39", "1e-50", "x", "", "0x1", "123456789012345678", "1234567890123456789012", "0.1", "3.4028235e38",
                "1.00000005960464477539062500001", "٣"]


@st.composite
def csv_bodies(draw) -> tuple[bytes, dict]:
    """Small CSV bodies mixing valid lines with every kind of oddity the reader must treat as the csv module."""
    clean = draw(st.booleans())  # only texts both readers accept: most bodies then parse
    ids = [t for t in ID_TEXTS if t.strip() and not (clean and "9999" in t)] if clean else ID_TEXTS
    numbers = ["5", "3.5", "0", "-0", "1e3", "2.5E-3", ".5", "+4", "1_0", " 2", "0.1", "٣", "1e-50",
               "123456789012345678", "1.00000005960464477539062500001"] if clean else NUMBER_TEXTS
    lines = []
    if draw(st.booleans()):
        lines.append(draw(st.sampled_from(["row,col,value", "user,item,rating,weight", "a,b", "  ", ""])))
    for _ in range(draw(st.integers(0, 7))):
        kind = draw(st.sampled_from(["entry"] * 3 + ([] if clean else ["blank", "raw"])))
        if kind == "blank":
            lines.append(draw(st.sampled_from(["", "   ", "\t", " , "])))
            continue
        if kind == "raw":
            lines.append(draw(st.text(alphabet='ab1,." \r\t-', max_size=12)))
            continue
        fields = [draw(st.sampled_from(ids)), draw(st.sampled_from(ids)), draw(st.sampled_from(numbers))]
        fields += [draw(st.sampled_from(numbers))] * draw(st.integers(0, 1))
        quoted = []
        for field in fields:
            if '"' in field or "," in field or draw(st.integers(0, 4)) == 0:
                field = '"' + field.replace('"', '""') + '"'
            quoted.append(draw(st.sampled_from(["", " "])) + field)
        lines.append(",".join(quoted))
    ends = [draw(st.sampled_from(["\n", "\n", "\r\n"])) for _ in lines]
    body = "".join(line + end for line, end in zip(lines, ends, strict=True))
    if draw(st.booleans()) and body:
        body = body[:-1]  # no line end at the end
    kw = {}
    if draw(st.integers(0, 3)) == 0:
        kw = {"num_rows": 12, "num_cols": 12}
    if draw(st.booleans()):
        kw["nonnegative_values"] = True
    prefix = "\ufeff" if draw(st.integers(0, 5)) == 0 else ""
    return (prefix + body).encode(), kw


def _outcome(decode, body: bytes, kw: dict):
    try:
        data = decode(body, source="f.csv", **kw)
    except DataError as err:
        return str(err)
    return data


def _assert_same(fast: Triplets, simple: Triplets) -> None:
    for a, b in ((fast.row_ids(), simple.row_ids()), (fast.col_ids(), simple.col_ids()),
                 (fast.row_names, simple.row_names), (fast.col_names, simple.col_names)):
        assert (a is None) == (b is None)
        if a is not None:
            assert a.dtype.kind == b.dtype.kind and a.tolist() == b.tolist()
    np.testing.assert_array_equal(fast.values, simple.values, strict=True)
    assert (fast.weights is None) == (simple.weights is None)
    if fast.weights is not None:
        np.testing.assert_array_equal(fast.weights, simple.weights, strict=True)


@settings(max_examples=600, deadline=None)
@given(csv_bodies())
def test_fast_reader_matches_the_csv_module_reader(case):
    body, kw = case
    fast, simple = _outcome(decode_triplets_csv, body, kw), _outcome(decode_triplets_csv_simple, body, kw)
    if isinstance(simple, Triplets):
        assert isinstance(fast, Triplets), fast
        _assert_same(fast, simple)
        return
    assert isinstance(fast, str), f"fast reader accepted what the csv module reader rejects: {simple}"
    # The fast reader names the lowest bad line: the csv module reader's error on the shortest failing prefix.
    lines = body.split(b"\n")
    prefixes = (b"\n".join(lines[:k]) for k in range(1, len(lines) + 1))
    first = next(m for m in (_outcome(decode_triplets_csv_simple, p, kw) for p in prefixes) if isinstance(m, str))
    assert fast in (simple, first)


@pytest.mark.parametrize("body", [b'u1,i1,1\n"u2"x,i1,1\n', b"u1,i1,1\nu2,i1,1\ru3,i1,1\n", b'u1,i"1,1\n',
                                  b'u1,"i1\n",1\n', b"u1,i1,1\x00\n"])
def test_bodies_the_tokenizer_leaves_to_the_csv_module(body):
    assert not _Lines(body).ok
    fast, simple = _outcome(decode_triplets_csv, body, {}), _outcome(decode_triplets_csv_simple, body, {})
    if isinstance(simple, Triplets):
        _assert_same(fast, simple)
    else:
        assert fast == simple


def test_fast_reader_quotes_line_ends_and_python_numbers():
    body = '\ufeffid,item,v,w\r\n "Smith, J.","say ""hi""",1_0\r\nü,"7", 2 ,3\n\n'.encode()
    with pytest.raises(DataError, match="line 5: value 'nan2' is not a number"):
        decode_triplets_csv(body + "ü,7,nan2,1".encode(), source="f.csv")
    data = decode_triplets_csv(body, source="f.csv")
    assert _Lines(body[3:]).ok
    assert data.row_ids().tolist() == ["Smith, J.", "ü"] and data.col_ids().tolist() == ['say "hi"', "7"]
    assert data.values.tolist() == [10, 2] and data.weights.tolist() == [1, 3]


def test_fast_reader_reports_the_lowest_bad_line():
    with pytest.raises(DataError, match="line 3: value 'x' is not a number"):
        decode_triplets_csv(b"a,b,1\na,b,1\na,b,x\na,b\n", source="f.csv")
    with pytest.raises(DataError, match="line 2: the col id is empty"):
        decode_triplets_csv(b"a,b,1\na,,x\n", source="f.csv")
    with pytest.raises(DataError, match=r"line 2: row id 9 is outside \[0, 3\)"):
        decode_triplets_csv(b"0,0,1\n9,x,1\n1,1,nan\n", source="f.csv", num_rows=3)


@pytest.mark.parametrize("bits", [1, 0])
def test_equal_ids_are_grouped_by_their_bytes_even_when_hashes_collide(monkeypatch, bits):
    monkeypatch.setattr("container.formats.triplets.HASH_BITS", bits)
    rng = np.random.default_rng(0)
    ids = np.array([f"id{i}" for i in rng.integers(0, 3000, 20000)])  # grows the table and the arena
    body = "".join(f"{r},{c},1\n" for r, c in zip(ids, ids[::-1], strict=True)).encode()
    data = decode_triplets_csv(body, source="f.csv")
    assert data.row_ids().tolist() == ids.tolist() and data.col_ids().tolist() == ids[::-1].tolist()
    assert data.row_names.tolist() == sorted(set(ids.tolist()))


def test_names_sorted_as_strings_whatever_their_length_or_script():
    long = "z" * 3000
    ids = [long, "b", "é", "a", "ab", "\u4e2d", "é", long] + [f"id{i}" for i in range(400)]
    body = "".join(f"{r},c,1\n" for r in ids).encode()
    data = decode_triplets_csv(body, source="f.csv")  # a long id: decoded one by one
    assert data.row_names.tolist() == sorted(set(ids)) and data.row_ids().tolist() == ids
    ascii_ids = [i for i in ids if i.isascii() and i != long]
    data = decode_triplets_csv("".join(f"{r},c,1\n" for r in ascii_ids).encode(), source="f.csv")
    assert data.row_names.tolist() == sorted(set(ascii_ids)) and data.row_ids().tolist() == ascii_ids
