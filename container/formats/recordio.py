"""RecordIO-protobuf (``application/x-recordio-protobuf``): decoding to a ``CSR``, SDK-identical writers.

Framing, multi-part records and whole-Record parsing are ``container.formats.recordio_framing``'s (no numba);
this module adds the numba decoder and the SDK-identical writers. A body that does not start with the magic is
read as one bare ``Record`` (what batch transform sends with ``SplitType=RecordIO``).

Each payload is an ``aialgs.data.Record``:

- features: ``features["values"]``, a Float32, Float64 or Int32 tensor (cast to float32). Without ``keys``
  it is a dense row (its ``shape``, if set, must hold as many values); explicit zeros of dense rows are
  dropped from the CSR arrays. With ``keys`` it is a sparse row: ``keys[i]`` is the column of
  ``values[i]``, taken as written, and every key must be < the product of ``shape`` (required unless
  ``feature_dim`` is given). ``shape`` with no keys and no values is an all-zero row.
- ``label["values"]``: one value per record, read only when ``with_labels``.
- ``label["weight"]``: optional per-record sample weight (one finite value >= 0), read only when
  ``with_labels``; records without one get weight 1.0, and ``CSR.weights`` stays None when no record
  has one.

Errors name the source, the 0-based record index and the record's byte offset.
"""

from __future__ import annotations

import io
import math
from typing import Any, BinaryIO

import numpy as np
import scipy.sparse as sp

from algorithm.csr import CSR
from container.errors import DataError
from container.formats import _recordio_kernels as k
from container.formats._recordio_encoder import encode_rows
from container.formats.record_pb2 import Record
from container.formats.recordio_framing import (
    MAGIC_BYTES,
    NOT_A_RECORD,
    bad_magic,
    error,
    frames,
    parse,
    truncated_header,
    truncated_payload,
)

_WHICH = ("features['values']", "label['values']", "label['weight']")
_TENSOR_FIELDS = {"float32_tensor": k.F32, "float64_tensor": k.F64, "int32_tensor": k.I32, "bytes": k.BYTES}
_ENCODE_CHUNK_VALUES = 1 << 23  # values per encoder call: bounds the writers' memory


def decode_recordio(
    body: bytes | memoryview,
    *,
    source: str,
    feature_dim: int | None = None,
    with_labels: bool = False,
    first_record: int = 0,
    first_byte: int = 0,
) -> CSR:
    """Decode framed RecordIO-protobuf (or one bare Record) to a CSR; see the module docstring. A body that
    is a piece of a longer stream names its records in errors from ``first_record`` at ``first_byte``."""
    buf = np.frombuffer(body, dtype=np.uint8)
    buf.flags.writeable = False  # one compiled kernel signature whatever the buffer's owner
    framed = len(buf) == 0 or bytes(buf[:4]) == MAGIC_BYTES
    dim = -1 if feature_dim is None else int(feature_dim)
    status = np.zeros(6, np.int64)
    # Upper bounds, so one pass suffices: unwritten pages of np.empty cost no memory and resize() returns
    # the rest. A float value takes >= 4 bytes; only Int32 tensors of small values can need a second call.
    max_rows = len(buf) // k.MIN_RECORD_BYTES + 1 if framed else 1
    max_nnz = len(buf) // 4 + 1
    while True:
        data = np.empty(max_nnz, np.float32)
        indices = np.empty(max_nnz, np.int64)
        indptr = np.empty(max_rows + 1, np.int64)
        labels = np.empty(max_rows if with_labels else 0, np.float32)
        weights = np.empty_like(labels)
        n_rows, n_cols, any_weight = k.decode_records(
            buf, framed, with_labels, dim, data, indices, indptr, labels, weights, status
        )
        if status[0] != k.GROW:
            break
        max_rows, max_nnz = max_rows * 4, max_nnz * 4
    if status[0] == k.FALLBACK:
        return _decode_with_protobuf(memoryview(body).cast("B"), framed, source, feature_dim, with_labels,
                                     first_record, first_byte)
    if status[0] != k.OK:
        code, index, offset, a, b, c = (int(x) for x in status)
        if code == k.RAGGED:
            c += first_record
        raise _error(source, framed, code, index + first_record, offset + first_byte, a, b, c)
    for array, size in ((data, indptr[n_rows]), (indices, indptr[n_rows]), (indptr, n_rows + 1)):
        array.resize(size, refcheck=False)
    labels.resize(n_rows if with_labels else 0, refcheck=False)
    weights.resize(labels.shape, refcheck=False)
    return CSR(
        data=data,
        indices=indices,
        indptr=indptr,
        n_cols=int(n_cols),
        labels=labels if with_labels else None,
        weights=weights if any_weight else None,
    )


def write_numpy_to_dense_tensor(file: BinaryIO, array: np.ndarray, labels: np.ndarray | None = None) -> None:
    """Write each row of a 2-D array as a dense Record, byte-identical to the SageMaker SDK's function.

    The tensor type follows the dtype as in the SDK: int64 -> Int32, float64 -> Float64, float32 -> Float32.
    """
    if array.ndim != 2:
        raise ValueError("Array must be a Matrix")
    n_rows, n_cols = array.shape
    values = np.ascontiguousarray(array).reshape(-1)
    indptr = np.arange(n_rows + 1, dtype=np.int64) * n_cols
    _write_rows(file, indptr, np.empty(0, np.int64), False, n_cols, values, labels)


def write_spmatrix_to_sparse_tensor(
    file: BinaryIO, array: sp.spmatrix | sp.sparray, labels: np.ndarray | None = None
) -> None:
    """Write each row of a scipy sparse matrix as a sparse Record (``keys`` = column indices,
    ``shape = [n_cols]``), byte-identical to the SageMaker SDK's function."""
    if not sp.issparse(array):
        raise TypeError("Array must be sparse")
    if array.ndim != 2:
        raise ValueError("Array must be a Matrix")
    csr = array.tocsr()
    indptr = csr.indptr.astype(np.int64)
    keys = csr.indices.astype(np.int64)
    _write_rows(file, indptr, keys, True, csr.shape[1], csr.data, labels)








def warm_up() -> None:
    """Compile (or load from cache) every RecordIO kernel on tiny inputs."""
    for array in (np.eye(2, dtype=np.float32), np.eye(2), np.eye(2, dtype=int)):
        dense, sparse = io.BytesIO(), io.BytesIO()
        write_numpy_to_dense_tensor(dense, array, array[:, 0])
        write_spmatrix_to_sparse_tensor(sparse, sp.csr_matrix(array))
        decode_recordio(dense.getvalue(), source="warm-up", with_labels=True)
        decode_recordio(sparse.getvalue(), source="warm-up", feature_dim=2)
    bare = Record()
    bare.features["values"].float32_tensor.values.extend([1.0, 2.0])
    decode_recordio(bare.SerializeToString(), source="warm-up")


# --- writers -----------------------------------------------------------------------------------------------


def _tensor_kind(dtype: np.dtype) -> int:
    """The SDK's ``_resolve_type``: int64 -> Int32, float64 -> Float64, float32 -> Float32."""
    if dtype == np.dtype(int):
        return k.I32
    if dtype == np.dtype(float):
        return k.F64
    if dtype == np.dtype("float32"):
        return k.F32
    raise ValueError(f"Unsupported dtype {dtype} on array")


def _kernel_values(values: np.ndarray, kind: int) -> tuple[np.ndarray, np.ndarray]:
    """(raw little-endian bytes, int64 values) as the encoder takes them; the unused one is empty."""
    if kind == k.I32:
        ints = np.require(values, np.int64, ["C", "W"])
        if ints.size and (ints.min() < -(2**31) or ints.max() >= 2**31):
            raise ValueError("Value out of range: Int32 tensors hold 32-bit integers")
        return np.empty(0, np.uint8), ints
    return np.require(values, None, ["C", "W"]).view(np.uint8), np.empty(0, np.int64)


def _write_rows(
    file: BinaryIO,
    indptr: np.ndarray,
    keys: np.ndarray,
    sparse: bool,
    n_cols: int,
    values: np.ndarray,
    labels: np.ndarray | None,
) -> None:
    n_rows = len(indptr) - 1
    label_kind = -1
    if labels is not None:
        if labels.ndim != 1:
            raise ValueError("Labels must be a Vector")
        if len(labels) != n_rows:
            raise ValueError(f"Label shape {labels.shape} not compatible with {n_rows} rows")
        label_kind = _tensor_kind(labels.dtype)
    kind = _tensor_kind(values.dtype)
    lo = 0
    while lo < n_rows:
        hi = max(lo + 1, int(np.searchsorted(indptr, indptr[lo] + _ENCODE_CHUNK_VALUES, "right")) - 1)
        hi = min(hi, n_rows)
        start, stop = indptr[lo], indptr[hi]
        raw, ints = _kernel_values(values[start:stop], kind)
        if labels is None:
            label_raw, label_ints = np.empty(0, np.uint8), np.empty(0, np.int64)
        else:
            label_raw, label_ints = _kernel_values(labels[lo:hi], label_kind)
        rows = indptr[lo : hi + 1] - start
        chunk_keys = np.require(keys[start:stop] if sparse else keys, None, ["C", "W"])
        out = encode_rows(rows, chunk_keys, sparse, n_cols, kind, raw, ints, label_kind, label_raw, label_ints)
        file.write(out.tobytes())
        lo = hi


# --- protobuf-library path (multi-part records, rare encodings) ---------------------------------------------






class _RecordError(Exception):
    """A record-level problem: a status code and its details, located by the caller."""

    def __init__(self, code: int, a: int = 0, b: int = 0, c: int = 0) -> None:
        super().__init__(code)
        self.details = (code, a, b, c)


def _tensor(container: Any, key: str, which: int) -> tuple[int, np.ndarray, list[int], list[int]]:
    """(kind, float32 values, keys, shape) of ``container[key]``; _RecordError if absent or Bytes."""
    if key not in container:
        raise _RecordError(k.NO_TENSOR, which)
    value = container[key]
    field = value.WhichOneof("value")
    if field is None:
        raise _RecordError(k.NO_TENSOR, which)
    kind = _TENSOR_FIELDS[field]
    if kind == k.BYTES:
        raise _RecordError(k.BYTES_TENSOR, which)
    tensor = getattr(value, field)
    with np.errstate(over="ignore"):
        values = np.array(tensor.values, dtype=np.float64).astype(np.float32)
    return kind, values, list(tensor.keys), list(tensor.shape)


def _scalar(container: Any, key: str, which: int) -> float:
    _, values, keys, _ = _tensor(container, key, which)
    if len(values) != 1 or keys:
        raise _RecordError(k.NOT_SCALAR, which, len(values), len(keys))
    if not np.isfinite(values[0]):
        raise _RecordError(k.NOT_FINITE, which)
    return float(values[0])


class _RowReader:
    """The protobuf-library twin of ``fill_records``: same checks, same order, same status codes."""

    def __init__(self, feature_dim: int | None) -> None:
        self.feature_dim = feature_dim
        self.dense_width = -1
        self.dense_record = -1
        self.n_cols = feature_dim or 0

    def features(self, record: Record, index: int) -> tuple[np.ndarray, np.ndarray]:
        _, values, keys, shape = _tensor(record.features, "values", k.FEATURES)
        declared = math.prod(shape) if shape else -1
        if declared > k.MAX_WIDTH:
            raise _RecordError(k.SHAPE_TOO_LARGE)
        dim = self.feature_dim
        if keys:
            if len(keys) != len(values):
                raise _RecordError(k.KEYS_VALUES_MISMATCH, len(keys), len(values))
            if not shape and dim is None:
                raise _RecordError(k.NO_SHAPE)
            for key in keys:
                if shape and key >= declared:
                    raise _RecordError(k.KEY_GE_SHAPE, key, declared)
                if dim is not None and key >= dim:
                    raise _RecordError(k.KEY_GE_DIM, key, dim)
            columns = np.array(keys, dtype=np.int64)
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                raise _RecordError(k.FEATURE_NOT_FINITE, int(columns[bad[0]]))
            width = declared if dim is None or shape else dim
        elif not len(values) and shape:
            columns, width = np.empty(0, np.int64), declared
        else:
            width = len(values)
            if shape and declared != width:
                raise _RecordError(k.DENSE_SHAPE_MISMATCH, width, declared)
            if dim is not None and width != dim:
                raise _RecordError(k.DENSE_WIDTH_DIM, width, dim)
            if self.dense_width < 0:
                self.dense_width, self.dense_record = width, index
            elif width != self.dense_width:
                raise _RecordError(k.RAGGED, width, self.dense_width, self.dense_record)
            bad = np.flatnonzero(~np.isfinite(values))
            if bad.size:
                raise _RecordError(k.FEATURE_NOT_FINITE, int(bad[0]))
            columns = np.flatnonzero(values).astype(np.int64)
            values = values[columns]
        if dim is None:
            self.n_cols = max(self.n_cols, width)
        return values, columns


def _decode_with_protobuf(
    buf: memoryview, framed: bool, source: str, feature_dim: int | None, with_labels: bool, first_record: int = 0,
    first_byte: int = 0
) -> CSR:
    reader = _RowReader(feature_dim)
    data, indices, labels, weights = [], [], [], []
    any_weight = False
    for index, offset, parts in frames(buf, framed, source, first_record, first_byte):
        record = parse(parts)
        if record is None:
            raise error(source, framed, index, offset, NOT_A_RECORD)
        try:
            values, columns = reader.features(record, index)
            if with_labels:
                labels.append(_scalar(record.label, "values", k.LABEL))
                weight = 1.0
                if "weight" in record.label:
                    any_weight = True
                    weight = _scalar(record.label, "weight", k.WEIGHT)
                    if weight < 0:
                        raise _RecordError(k.NEGATIVE_WEIGHT)
                weights.append(weight)
        except _RecordError as fault:
            raise _error(source, framed, fault.details[0], index, offset, *fault.details[1:]) from None
        data.append(values)
        indices.append(columns)
    indptr = np.zeros(len(data) + 1, np.int64)
    np.cumsum([len(v) for v in data], out=indptr[1:])
    return CSR(
        data=np.concatenate(data or [np.empty(0, np.float32)]),
        indices=np.concatenate(indices or [np.empty(0, np.int64)]),
        indptr=indptr,
        n_cols=reader.n_cols,
        labels=np.array(labels, np.float32) if with_labels else None,
        weights=np.array(weights, np.float32) if any_weight else None,
    )


# --- errors ---------------------------------------------------------------------------------------------------


def _describe(code: int, a: int, b: int, c: int) -> str:
    """What was wrong, for a status code and its details."""
    if code in (k.KEY_GE_SHAPE, k.KEY_GE_DIM) and a < 0:
        a += 1 << 64  # a uint64 key above 2**63 arrives as a negative int64
    which = _WHICH[a] if code in (k.NO_TENSOR, k.BYTES_TENSOR, k.NOT_SCALAR, k.NOT_FINITE) else ""
    messages = {
        k.TRUNCATED_HEADER: truncated_header(a),
        k.BAD_MAGIC: bad_magic(a),
        k.TRUNCATED_PAYLOAD: truncated_payload(a, b),
        k.MALFORMED: NOT_A_RECORD,
        k.NO_TENSOR: f"no {which} tensor",
        k.BYTES_TENSOR: f"{which} is a Bytes value; only Float32, Float64 and Int32 tensors are supported",
        k.SHAPE_TOO_LARGE: f"tensor shape holds more than 2**62 ({k.MAX_WIDTH}) elements",
        k.KEYS_VALUES_MISMATCH: f"sparse tensor has {a} keys but {b} values",
        k.NO_SHAPE: "sparse tensor has keys but no shape (and no feature_dim is known)",
        k.KEY_GE_SHAPE: f"key {a} >= declared shape {b}",
        k.KEY_GE_DIM: f"key {a} >= feature_dim {b}",
        k.DENSE_SHAPE_MISMATCH: f"dense tensor has {a} values but its shape holds {b}",
        k.DENSE_WIDTH_DIM: f"dense row has {a} values, expected feature_dim {b}",
        k.RAGGED: f"dense row has {a} values but record {c} has {b}",
        k.FEATURE_NOT_FINITE: f"feature value in column {a} is NaN or infinite",
        k.NOT_SCALAR: f"{which} must be one dense value, got {b} values and {c} keys",
        k.NOT_FINITE: f"{which} is NaN or infinite",
        k.NEGATIVE_WEIGHT: "label['weight'] is negative",
    }
    return messages[code]


def _error(
    source: str, framed: bool, code: int, index: int, offset: int, a: int = 0, b: int = 0, c: int = 0
) -> DataError:
    return error(source, framed, index, offset, _describe(int(code), int(a), int(b), int(c)))
