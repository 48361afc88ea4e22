"""RecordIO-protobuf: SDK-identical writers, the numba decoder against the protobuf library, and errors."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sagemaker.amazon import common as sdk

from algorithm.csr import CSR
from container.errors import DataError
from container.formats import recordio, recordio_framing
from container.formats.record_pb2 import Record
from container.formats.recordio import decode_recordio, write_numpy_to_dense_tensor, write_spmatrix_to_sparse_tensor
from container.formats.recordio_framing import MAGIC_BYTES, frame_records, iter_payloads, read_records

DENSE_VECTOR = (
    "0a23d7ce2c0000000a160a0676616c756573120c120a0a080000803f0000004012120a0676616c756573120812060a040000803f"
)
SPARSE_VECTOR = (
    "0a23d7ce330000000a1d0a0676616c756573121312110a08000040400000a040120201041a010512120a0676616c7565731208"
    "12060a040000000000"
)
HYPOTHESIS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def written(writer, *args) -> bytes:
    out = io.BytesIO()
    writer(out, *args)
    return out.getvalue()


def dense(ds: CSR) -> np.ndarray:
    return ds.to_scipy().toarray()


def same(a: CSR, b: CSR) -> bool:
    arrays = ("data", "indices", "indptr", "labels", "weights")
    return a.n_cols == b.n_cols and all(
        (getattr(a, n) is None and getattr(b, n) is None)
        or (getattr(a, n) is not None and getattr(b, n) is not None and np.array_equal(getattr(a, n), getattr(b, n)))
        for n in arrays
    )


def with_protobuf(body: bytes, **kwargs) -> CSR:
    """The protobuf-library path the fast decoder must agree with."""
    framed = len(body) == 0 or body[:4] == MAGIC_BYTES
    return recordio._decode_with_protobuf(
        memoryview(body), framed, kwargs.get("source", "s"), kwargs.get("feature_dim"), kwargs.get("with_labels", False)
    )


def outcome(decode, body: bytes, **kwargs) -> CSR | str:
    try:
        return decode(body, **kwargs)
    except DataError as err:
        return f"DataError: {err}"


def assert_agree(body: bytes, *, same_message: bool = True, **kwargs) -> CSR | str:
    kwargs.setdefault("source", "s")
    fast, slow = outcome(decode_recordio, body, **kwargs), outcome(with_protobuf, body, **kwargs)
    if isinstance(fast, str) or isinstance(slow, str):
        assert isinstance(fast, str) and isinstance(slow, str), (fast, slow)
        if same_message:
            assert fast == slow
    else:
        assert same(fast, slow), (fast, slow)
    return fast


# --- writers ---------------------------------------------------------------------------------------------------


def test_contract_test_vectors():
    dense_body = written(write_numpy_to_dense_tensor, np.array([[1.0, 2.0]], np.float32), np.array([1.0], np.float32))
    sparse_body = written(
        write_spmatrix_to_sparse_tensor, sp.csr_matrix(np.array([[0, 3, 0, 0, 5]], np.float32)), np.zeros(1, np.float32)
    )
    assert dense_body.hex() == DENSE_VECTOR and sparse_body.hex() == SPARSE_VECTOR
    ds = decode_recordio(bytes.fromhex(SPARSE_VECTOR), source="v", with_labels=True)
    np.testing.assert_array_equal(dense(ds), [[0, 3, 0, 0, 5]])
    assert ds.n_cols == 5 and ds.labels.tolist() == [0.0]
    ds = decode_recordio(bytes.fromhex(DENSE_VECTOR), source="v", with_labels=True)
    np.testing.assert_array_equal(dense(ds), [[1, 2]])
    assert ds.labels.tolist() == [1.0]


def sample_matrix(dtype, seed=0, shape=(40, 70)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    matrix = (rng.random(shape) < 0.1) * rng.integers(-(2**31), 2**31, shape)
    if dtype != np.int64:
        matrix = matrix * rng.standard_normal(shape) / 1e6
    matrix = matrix.astype(dtype)
    matrix[3] = 0  # an all-zero row
    return matrix


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
@pytest.mark.parametrize("label_dtype", [None, np.float32, np.float64, np.int64])
def test_writers_are_byte_identical_to_the_sdk(dtype, label_dtype):
    matrix = sample_matrix(dtype)
    labels = (
        None if label_dtype is None else np.arange(-20, 20).astype(label_dtype) / (1 if label_dtype == np.int64 else 3)
    )
    for ours, theirs, data in (
        (write_numpy_to_dense_tensor, sdk.write_numpy_to_dense_tensor, matrix),
        (write_spmatrix_to_sparse_tensor, sdk.write_spmatrix_to_sparse_tensor, sp.csr_matrix(matrix)),
    ):
        body = written(ours, data, labels)
        assert body == written(theirs, data, labels)
        ds = decode_recordio(body, source="t", with_labels=labels is not None)
        np.testing.assert_array_equal(dense(ds), matrix.astype(np.float32))
        if labels is not None:
            np.testing.assert_array_equal(ds.labels, labels.astype(np.float32))


def test_sparse_writer_keeps_explicit_zeros_and_unsorted_columns_like_the_sdk():
    matrix = sp.csr_matrix((np.array([0.0, 2.0, 1.0], np.float32), np.array([3, 1, 0]), np.array([0, 2, 3])), (2, 4))
    body = written(write_spmatrix_to_sparse_tensor, matrix)
    assert body == written(sdk.write_spmatrix_to_sparse_tensor, matrix)
    ds = decode_recordio(body, source="t")
    assert ds.indices.tolist() == [3, 1, 0] and ds.data.tolist() == [0.0, 2.0, 1.0]


def test_writers_round_trip_through_the_sdk_reader_and_ours():
    matrix = sample_matrix(np.float32, seed=4)
    labels = np.arange(40, dtype=np.float32)
    body = written(write_spmatrix_to_sparse_tensor, sp.csr_matrix(matrix), labels)
    for records in (sdk.read_records(io.BytesIO(body)), read_records(io.BytesIO(body))):
        assert len(records) == 40
        for row, record in enumerate(records):
            tensor = record.features["values"].float32_tensor
            rebuilt = np.zeros(70, np.float32)
            rebuilt[np.array(tensor.keys, dtype=np.int64)] = tensor.values
            np.testing.assert_array_equal(rebuilt, matrix[row])
            assert list(tensor.shape) == [70] and record.label["values"].float32_tensor.values[0] == row


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_sdk_written_files_decode_to_the_matrix_they_came_from(dtype):
    matrix = sample_matrix(dtype, seed=2)
    for writer, data in (
        (sdk.write_numpy_to_dense_tensor, matrix),
        (sdk.write_spmatrix_to_sparse_tensor, sp.csr_matrix(matrix)),
    ):
        ds = decode_recordio(written(writer, data, np.ones(40, dtype)), source="sdk", with_labels=True)
        np.testing.assert_array_equal(dense(ds), matrix.astype(np.float32))
        assert ds.n_cols == 70 and ds.labels.dtype == np.float32 and ds.weights is None


def test_writer_input_checks_follow_the_sdk():
    with pytest.raises(ValueError, match="Unsupported dtype"):
        written(write_numpy_to_dense_tensor, np.ones((2, 2), np.int32))
    with pytest.raises(ValueError, match="Matrix"):
        written(write_numpy_to_dense_tensor, np.ones(3))
    with pytest.raises(TypeError, match="sparse"):
        written(write_spmatrix_to_sparse_tensor, np.ones((2, 2)))
    with pytest.raises(ValueError, match="Label shape"):
        written(write_numpy_to_dense_tensor, np.ones((2, 2)), np.ones(3))
    with pytest.raises(ValueError, match="out of range"):
        written(write_numpy_to_dense_tensor, np.array([[2**40]]))


def test_large_writes_are_chunked_and_still_identical(monkeypatch):
    monkeypatch.setattr(recordio, "_ENCODE_CHUNK_VALUES", 7)
    matrix = sp.csr_matrix(sample_matrix(np.float32, seed=5))
    labels = np.arange(40, dtype=np.float64)
    assert written(write_spmatrix_to_sparse_tensor, matrix, labels) == written(
        sdk.write_spmatrix_to_sparse_tensor, matrix, labels
    )


def test_frame_records_and_iter_payloads():
    payloads = [b"", b"a", b"abcd", b"abcde"]
    body = frame_records(payloads)
    assert len(body) == 8 * 4 + 0 + 4 + 4 + 8
    assert list(iter_payloads(body, source="s")) == payloads


# --- decoding ----------------------------------------------------------------------------------------------------


def record(values, keys=None, shape=None, label=None, weight=None, kind="float32_tensor") -> bytes:
    rec = Record()
    tensor = getattr(rec.features["values"], kind)
    tensor.values.extend(values)
    tensor.keys.extend(keys or [])
    tensor.shape.extend(shape or [])
    if label is not None:
        rec.label["values"].float32_tensor.values.append(label)
    if weight is not None:
        rec.label["weight"].float32_tensor.values.append(weight)
    return rec.SerializeToString()


def test_bare_record_body_is_one_row():
    body = record([1.0, 0.0, 2.0])
    assert body[:4] != MAGIC_BYTES
    ds = decode_recordio(body, source="request", feature_dim=3)
    np.testing.assert_array_equal(dense(ds), [[1, 0, 2]])
    with pytest.raises(DataError, match=r"bare Record.*not a valid"):
        decode_recordio(b"hello world", source="request")


def test_float64_and_int32_tensors_are_cast_to_float32():
    body = frame_records([record([1.5, -2.0], kind="float64_tensor"), record([-7, 3], kind="int32_tensor")])
    np.testing.assert_array_equal(dense(decode_recordio(body, source="s")), [[1.5, -2], [-7, 3]])


def test_all_zero_sparse_row_and_empty_body():
    ds = decode_recordio(frame_records([record([], shape=[4]), record([1.0], keys=[2], shape=[4])]), source="s")
    np.testing.assert_array_equal(dense(ds), [[0, 0, 0, 0], [0, 0, 1, 0]])
    empty = decode_recordio(b"", source="s", feature_dim=6, with_labels=True)
    assert empty.n_rows == 0 and empty.n_cols == 6 and empty.labels.size == 0


def test_weights_come_from_the_weight_label_key():
    body = frame_records([record([1.0], label=1.0, weight=2.5), record([2.0], label=0.0)])
    ds = decode_recordio(body, source="s", with_labels=True)
    assert ds.weights.tolist() == [2.5, 1.0] and ds.labels.tolist() == [1.0, 0.0]
    assert decode_recordio(frame_records([record([1.0], label=1.0)]), source="s", with_labels=True).weights is None
    assert decode_recordio(body, source="s").labels is None


def test_keys_without_shape_need_feature_dim():
    body = frame_records([record([1.0], keys=[3])])
    assert dense(decode_recordio(body, source="s", feature_dim=5)).tolist() == [[0, 0, 0, 1, 0]]
    with pytest.raises(DataError, match="no shape"):
        decode_recordio(body, source="s")


def test_int32_tensors_of_tiny_values_grow_the_buffers():
    body = frame_records([record([1] * 300, kind="int32_tensor")] * 3)
    ds = decode_recordio(body, source="s")
    assert ds.nnz == 900 and ds.n_cols == 300


def split_into_parts(payload: bytes, cuts: list[int], joiner: bytes = b"") -> bytes:
    """A multi-part record: MLIO style (parts concatenate) or DMLC style (joiner = magic, dropped at cuts)."""
    pieces, start = [], 0
    for cut in [*cuts, len(payload)]:
        pieces.append(payload[start:cut])
        start = cut + len(joiner)
    out = b""
    for i, piece in enumerate(pieces):
        cflag = 1 if i == 0 else (3 if i == len(pieces) - 1 else 2)
        header = struct.pack("<II", recordio_framing.MAGIC, (cflag << 29) | len(piece))
        out += header + piece + b"\0" * (-len(piece) % 4)
    return out


def test_multipart_records_mlio_and_dmlc_styles():
    payload = record([1.0, 2.0, 3.0], label=1.0)
    mlio = frame_records([record([9.0, 9.0, 9.0], label=0.0)]) + split_into_parts(payload, [3, 10, 11])
    ds = decode_recordio(mlio, source="s", with_labels=True)
    np.testing.assert_array_equal(dense(ds), [[9, 9, 9], [1, 2, 3]])
    assert ds.labels.tolist() == [0.0, 1.0]
    # DMLC splits where the magic occurs at a 4-aligned offset and drops it; the reader puts it back.
    with_magic = record([float(np.frombuffer(MAGIC_BYTES, np.float32)[0]), 5.0])
    at = with_magic.find(MAGIC_BYTES)
    ds = decode_recordio(split_into_parts(with_magic, [at], MAGIC_BYTES), source="s")
    np.testing.assert_array_equal(ds.data, np.frombuffer(with_magic[at : at + 8], np.float32))


@pytest.mark.parametrize(
    "body,kwargs,message",
    [
        (frame_records([record([1.0])])[:-6], {}, r"record 0 \(byte offset 0\): truncated record"),
        (frame_records([record([1.0])] * 2)[:-20], {}, r"record 1 \(byte offset 28\): truncated"),
        (frame_records([record([1.0])]) + b"\x01\x02\x03", {}, "truncated record header"),
        (frame_records([record([1.0])]) + b"\x00" * 8, {}, r"record 1 .*wrong magic 0x00000000"),
        (frame_records([record([1.0], keys=[7], shape=[5])]), {}, "key 7 >= declared shape 5"),
        (frame_records([record([1.0], keys=[7], shape=[50])]), {"feature_dim": 5}, "key 7 >= feature_dim 5"),
        (frame_records([record([1.0, float("nan")])]), {}, "column 1 is NaN or infinite"),
        (frame_records([record([1e300], kind="float64_tensor")]), {}, "NaN or infinite"),
        (frame_records([record([1.0], label=float("inf"))]), {"with_labels": True}, r"label\['values'\] is NaN"),
        (frame_records([record([1.0])]), {"with_labels": True}, r"no label\['values'\] tensor"),
        (frame_records([record([1.0], label=1.0, weight=-1.0)]), {"with_labels": True}, "weight.*negative"),
        (frame_records([record([1.0, 2.0])]), {"feature_dim": 3}, "dense row has 2 values, expected feature_dim 3"),
        (frame_records([record([1.0, 2.0]), record([1.0])]), {}, "record 1 .*has 1 values but record 0 has 2"),
        (frame_records([record([1.0], keys=[1, 2], shape=[3])]), {}, "2 keys but 1 values"),
        (frame_records([record([1.0, 2.0], shape=[3])]), {}, "2 values but its shape holds 3"),
        (frame_records([Record().SerializeToString()]), {}, r"no features\['values'\] tensor"),
        (frame_records([b"\x0a\x02\x0a"]), {}, "not a valid aialgs.data.Record"),
        (split_into_parts(record([1.0]), [2])[:12], {}, "no end part"),
    ],
)
def test_errors_name_source_record_and_offset(body, kwargs, message):
    with pytest.raises(DataError, match=f"^src: .*{message}"):
        decode_recordio(body, source="src", **kwargs)
    assert_agree(body, same_message=False, **kwargs)


def test_bytes_tensors_are_rejected():
    rec = Record()
    rec.features["values"].bytes.value.append(b"abc")
    with pytest.raises(DataError, match="Bytes value"):
        decode_recordio(frame_records([rec.SerializeToString()]), source="s")


def test_warm_up_runs():
    recordio.warm_up()


# --- the fast path against the protobuf library on generated wire bytes ------------------------------------------


def varint(v: int) -> bytes:
    v &= (1 << 64) - 1
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def field(number: int, wire_type: int, payload: bytes) -> bytes:
    body = varint(len(payload)) + payload if wire_type == 2 else payload
    return varint(number << 3 | wire_type) + body


ELEMENT = {  # tensor kind -> (value field, non-packed wire type, encoder)
    2: (5, lambda v: struct.pack("<f", v)),
    3: (1, lambda v: struct.pack("<d", v)),
    7: (0, lambda v: varint(int(v))),
}


UNKNOWN_FIELD_NUMBERS = st.integers(10, 40)


@st.composite
def unknown_fields(draw, numbers=UNKNOWN_FIELD_NUMBERS) -> bytes:
    out = b""
    for _ in range(draw(st.integers(0, 2))):
        wire_type = draw(st.sampled_from([0, 1, 2, 5]))
        payload = {0: varint(draw(st.integers(0, 2**64 - 1))), 1: b"\x01" * 8, 5: b"\x02" * 4}.get(wire_type, b"xyz")
        out += field(draw(numbers), wire_type, payload)
    return out


@st.composite
def repeated(draw, number: int, items: list, element_wire: int, encode) -> list[bytes]:
    """``items`` as one or more pieces, each packed or not (protobuf concatenates them in order)."""
    pieces, i = [], 0
    while i < len(items):
        n = draw(st.integers(1, len(items) - i))
        chunk = items[i : i + n]
        if draw(st.booleans()):
            pieces.append(field(number, 2, b"".join(encode(v) for v in chunk)))
        else:
            pieces += [field(number, element_wire, encode(v)) for v in chunk]
        i += n
    return pieces


def interleave(draw, groups: list[list[bytes]]) -> bytes:
    """Merge lists of fields keeping each list's order (repeated fields keep their relative order)."""
    out, queues = b"", [list(g) for g in groups if g]
    while queues:
        queue = queues[draw(st.integers(0, len(queues) - 1))]
        out += queue.pop(0)
        queues = [q for q in queues if q]
    return out


@st.composite
def tensor(draw, kind: int, n_cols: int) -> bytes:
    element_wire, encode = ELEMENT[kind]
    numbers = st.integers(-1000, 1000) if kind == 7 else st.floats(-1e6, 1e6, width=32)
    shape_choice = draw(st.sampled_from(["dense", "sparse", "zero", "dense_shape"]))
    values: list = []
    keys: list[int] = []
    shape: list[int] = []
    if shape_choice in ("dense", "dense_shape"):
        values = draw(st.lists(numbers, min_size=n_cols, max_size=n_cols))
        shape = [n_cols] if shape_choice == "dense_shape" else []
    elif shape_choice == "sparse":
        keys = draw(st.lists(st.integers(0, n_cols - 1), min_size=1, max_size=6))
        values = draw(st.lists(numbers, min_size=len(keys), max_size=len(keys)))
        shape = [n_cols]
    else:
        shape = [n_cols]
    groups = [
        draw(repeated(1, values, element_wire, encode)),
        draw(repeated(2, keys, 0, varint)),
        draw(repeated(3, shape, 0, varint)),
        [draw(unknown_fields(st.integers(1, 12)))],
    ]
    return interleave(draw, groups)


@st.composite
def entry(draw, key: bytes, value: bytes) -> bytes:
    fields = [field(1, 2, key), field(2, 2, value)]
    if draw(st.integers(0, 9)) == 0:
        fields.append(draw(unknown_fields()))  # protobuf then drops the entry from the map
    return b"".join(fields if draw(st.booleans()) else fields[::-1])


@st.composite
def wire_record(draw, n_cols: int, with_label: bool) -> bytes:
    kind = draw(st.sampled_from([2, 3, 7]))
    features = draw(entry(b"values", field(kind, 2, draw(tensor(kind, n_cols))) + draw(unknown_fields())))
    entries = [field(1, 2, features)]
    if draw(st.booleans()):
        entries.append(field(1, 2, draw(entry(b"other", field(2, 2, b"")))))
    if with_label:
        label_kind = draw(st.sampled_from([2, 3, 7]))
        _, encode = ELEMENT[label_kind]
        label = field(label_kind, 2, field(1, 2, encode(draw(st.integers(0, 1)))))
        entries.append(field(2, 2, draw(entry(b"values", label))))
        if draw(st.booleans()):
            weight = field(2, 2, field(1, 2, struct.pack("<f", draw(st.floats(0, 10, width=32)))))
            entries.append(field(2, 2, draw(entry(b"weight", weight))))
    extras = [field(n, 2, b"meta") for n in draw(st.lists(st.sampled_from([3, 4, 5]), max_size=2))]
    order = draw(st.permutations(entries + extras + [draw(unknown_fields())]))
    return b"".join(order)


@st.composite
def wire_body(draw) -> tuple[bytes, bool]:
    n_cols = draw(st.integers(1, 6))
    with_labels = draw(st.booleans())
    records = draw(st.lists(wire_record(n_cols, with_labels), min_size=1, max_size=5))
    if len(records) == 1 and draw(st.booleans()):
        return records[0], with_labels  # a bare Record request body
    return frame_records(records), with_labels


@HYPOTHESIS
@given(wire_body(), st.sampled_from([None, 6, 3]))
def test_fast_path_agrees_with_protobuf_on_generated_records(body_and_labels, feature_dim):
    body, with_labels = body_and_labels
    assert_agree(body, with_labels=with_labels, feature_dim=feature_dim)
    assert_agree(body, with_labels=False)


@HYPOTHESIS
@given(
    st.sampled_from(["sdk_sparse", "sdk_dense", "wire"]),
    st.lists(
        st.tuples(st.integers(0, 10**6), st.integers(0, 255), st.sampled_from(["set", "cut", "insert"])),
        min_size=1,
        max_size=3,
    ),
    st.data(),
)
def test_corrupted_bytes_never_crash_and_agree_with_protobuf(base, edits, data):
    if base == "wire":
        body = bytearray(data.draw(wire_body())[0])
    else:
        matrix = sample_matrix(np.float32, seed=1, shape=(4, 9))
        writer = write_spmatrix_to_sparse_tensor if base == "sdk_sparse" else write_numpy_to_dense_tensor
        body = bytearray(
            written(writer, sp.csr_matrix(matrix) if base == "sdk_sparse" else matrix, np.ones(4, np.float32))
        )
    for position, byte, how in edits:
        at = position % (len(body) + 1)
        if how == "set" and at < len(body):
            body[at] = byte
        elif how == "cut":
            del body[at:]
        else:
            body[at:at] = bytes([byte])
    assert_agree(bytes(body), same_message=False, with_labels=True)
    assert_agree(bytes(body), same_message=False, feature_dim=9)


def test_rare_encodings_fall_back_to_the_protobuf_library():
    def f32(*values: float) -> bytes:  # Value { float32_tensor { values } }
        return field(2, 2, field(1, 2, struct.pack(f"<{len(values)}f", *values)))

    def features(value: bytes) -> bytes:  # Record.features entry {"values": value}
        return field(1, 2, field(1, 2, b"values") + field(2, 2, value))

    group = field(9, 3, b"") + field(9, 4, b"")  # an unknown group: upb skips it, the kernel defers
    pieces = features(f32(3.0) + f32(4.0))  # the same oneof member twice: protobuf merges them
    replaced = features(f32(1.0, 1.0)) + features(field(2, 2, field(3, 2, varint(2))))  # last entry wins
    body = frame_records([record([5.0, 0.0]) + group, pieces, replaced])
    ds = assert_agree(body, feature_dim=2)
    np.testing.assert_array_equal(dense(ds), [[5, 0], [3, 4], [0, 0]])
