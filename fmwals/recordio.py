"""RecordIO-protobuf on the client side: the SageMaker SDK's ``write_numpy_to_dense_tensor``,
``write_spmatrix_to_sparse_tensor`` and ``read_records``, with the SDK's bytes and return types.

The writers run the container's numba encoder when numba is installed (``pip install .[container]``: tens of
times faster) and the protobuf library otherwise, as the SDK does; both write the same bytes. Reading and
framing are the container's ``container.formats.recordio_framing``, which needs only the protobuf library, so
a client installed without the container's dependencies still sends and reads RecordIO.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from typing import Any, BinaryIO

import numpy as np

from container.formats.record_pb2 import Record
from container.formats.recordio_framing import frame_records, read_records

__all__ = ["read_records", "write_numpy_to_dense_tensor", "write_spmatrix_to_sparse_tensor"]
NUMBA_INSTALLED = importlib.util.find_spec("numba") is not None
# The SDK's ``_resolve_type``: the tensor field each array dtype is written to.
_TENSOR_FIELDS = {np.dtype(int): "int32_tensor", np.dtype(float): "float64_tensor",
                  np.dtype("float32"): "float32_tensor"}


def _tensor_field(dtype: np.dtype) -> str:
    try:
        return _TENSOR_FIELDS[np.dtype(dtype)]
    except KeyError:
        raise ValueError(f"Unsupported dtype {dtype} on array") from None


def _check(array: Any, labels: np.ndarray | None) -> None:
    """The SDK's argument checks, with its messages."""
    if array.ndim != 2:
        raise ValueError("Array must be a Matrix")
    if labels is not None:
        if labels.ndim != 1:
            raise ValueError("Labels must be a Vector")
        if labels.shape[0] != array.shape[0]:
            raise ValueError(f"Label shape {labels.shape} not compatible with {array.shape[0]} rows")








def _write(file: BinaryIO, rows: Iterable[tuple[np.ndarray, np.ndarray | None]], field: str,
           labels: np.ndarray | None, n_cols: int | None) -> None:
    """One Record per (values, keys or None) row, as the SDK's writers build them."""
    label_field = None if labels is None else _tensor_field(labels.dtype)
    record = Record()
    for index, (values, keys) in enumerate(rows):
        record.Clear()
        tensor = getattr(record.features["values"], field)
        tensor.values.extend(values.tolist())
        if keys is not None:
            tensor.keys.extend(keys.tolist())
        if labels is not None and label_field is not None:
            getattr(record.label["values"], label_field).values.extend([labels[index].item()])
        if n_cols is not None:
            tensor.shape.extend([n_cols])
        file.write(frame_records([record.SerializeToString()]))


def write_numpy_to_dense_tensor(file: BinaryIO, array: np.ndarray, labels: np.ndarray | None = None) -> None:
    """Write each row of a 2-D array as a dense Record (the tensor type follows the dtype: int64 -> Int32,
    float64 -> Float64, float32 -> Float32), byte-identical to the SageMaker SDK's function."""
    if NUMBA_INSTALLED:
        from container.formats import recordio

        recordio.write_numpy_to_dense_tensor(file, array, labels)
        return
    _check(array, labels)
    field = _tensor_field(array.dtype)
    _write(file, ((row, None) for row in array), field, labels, None)


def write_spmatrix_to_sparse_tensor(file: BinaryIO, array: Any, labels: np.ndarray | None = None) -> None:
    """Write each row of a scipy sparse matrix as a sparse Record (``keys`` = column indices,
    ``shape = [n_cols]``), byte-identical to the SageMaker SDK's function."""
    if NUMBA_INSTALLED:
        from container.formats import recordio

        recordio.write_spmatrix_to_sparse_tensor(file, array, labels)
        return
    if not hasattr(array, "tocsr"):
        raise TypeError("Array must be sparse")
    _check(array, labels)
    csr = array.tocsr()
    field = _tensor_field(csr.dtype)
    rows = ((csr.data[csr.indptr[i]:csr.indptr[i + 1]], csr.indices[csr.indptr[i]:csr.indptr[i + 1]])
            for i in range(csr.shape[0]))
    _write(file, rows, field, labels, int(csr.shape[1]))
