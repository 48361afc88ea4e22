"""WALS input decoders (CSV and one-hot RecordIO triplets, id,weight CSV), id maps, the container artifact."""

import io

import numpy as np
import pytest
import scipy.sparse as sp

from algorithm import artifact
from algorithm.wals import WALS
from container.errors import DataError
from container.formats.recordio import frame_records, read_records, write_spmatrix_to_sparse_tensor
from container.formats.triplets import (
    Triplets,
    concatenate,
    decode_id_weights_csv,
    decode_triplets_csv,
    decode_triplets_recordio,
)
from container.wals_model import IdMap, WALSModel, load, load_servable


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
    assert data.rows.tolist() == ["u1", "u2", "u,3"]
    assert data.cols.tolist() == ["i2", "i1", "i1"]  # the space after a comma is dropped
    np.testing.assert_array_equal(data.values, np.float32([5, 3, 1.5]))
    np.testing.assert_array_equal(data.weights, np.float32([2, 1, 0]))


def test_csv_without_header_or_weights():
    data = _csv("1,2,3\n4,5,6\n")
    assert data.rows.tolist() == ["1", "4"] and data.weights is None
    assert len(_csv("row,col,value\n")) == 0


def test_csv_declared_sizes_make_ids_indices():
    data = _csv("0,2,1\n3,0,1\n", num_rows=4, num_cols=3)
    assert data.rows.dtype == np.int64 and data.rows.tolist() == [0, 3] and data.cols.tolist() == [2, 0]


def test_csv_chunks_number_lines_across_chunks(monkeypatch):
    monkeypatch.setattr("container.formats.triplets.CHUNK_LINES", 2)
    with pytest.raises(DataError, match="line 5: value 'x'"):
        _csv("a,b,1\na,b,2\na,b,3\na,b,4\na,b,x\n")
    assert len(_csv("r,c,v\na,b,1\n\na,b,2\na,b,3\n")) == 3


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


def test_concatenate_fills_missing_weights():
    a = Triplets(np.array(["a"]), np.array(["b"]), np.float32([1]))
    b = Triplets(np.array(["cc"]), np.array(["d"]), np.float32([2]), np.float32([3]))
    joined = concatenate([a, b])
    assert joined.rows.tolist() == ["a", "cc"] and joined.weights.tolist() == [1.0, 3.0]


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
    back = load(tmp_path)
    assert back.row_ids.ids.tolist() == ["u1", "u2"] and back.col_ids.ids.tolist() == [4, 7, 9]
    assert back.seen_cols(0).tolist() == [0, 2] and back.seen_cols(1).tolist() == [1]
    np.testing.assert_array_equal(back.wals.row_factors_, model.wals.row_factors_)
    assert isinstance(artifact.load(tmp_path), WALS)  # the Python API still reads it as a bare WALS
    assert isinstance(load_servable(tmp_path), WALSModel)


def test_bare_wals_artifact_gets_index_ids(tmp_path):
    wals = _wals_model().wals
    artifact.save(tmp_path, wals)
    back = load(tmp_path)
    assert back.row_ids.ids.tolist() == [0, 1] and back.col_ids.ids.tolist() == [0, 1, 2]
    assert back.seen.nnz == 0


def test_model_shapes_must_agree():
    model = _wals_model()
    with pytest.raises(ValueError, match="must match"):
        WALSModel(model.wals, IdMap(np.array(["u1"])), model.col_ids, model.seen)
