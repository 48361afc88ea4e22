"""MXNet's NDArray list file (``mx.nd.save``, a checkpoint's ``params``) read and written with numpy alone.

Layout (little-endian): ``uint64 0x112``, ``uint64 0``, ``uint64 n`` and n arrays, then ``uint64 n_keys``
(0 or n) and each key as ``uint64 length`` + bytes. An array: ``uint32 magic`` (``0xF993FAC9``: V2, or
``0xF993FACA``: V3, dense only), ``int32 stype`` (0 dense, 1 row_sparse), for row_sparse the storage shape,
the shape (``int32 ndim`` + ``int64 dims``; ndim 0 ends the array), the context (``int32 dev_type``,
``int32 dev_id``), ``int32 type_flag``, for row_sparse ``int32 aux_type`` + the indices' shape, the data,
then the row indices. Row-sparse arrays are read back dense; the writer emits dense V2 arrays, as
``mx.nd.save`` does for dense NDArrays.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

LIST_MAGIC = 0x112
V2_MAGIC = 0xF993FAC9
V3_MAGIC = 0xF993FACA
DENSE, ROW_SPARSE, CSR = 0, 1, 2
CPU = 1
# mshadow type flags -> numpy dtypes (float16/64 and the integer types also load; callers decide what they take).
DTYPES: dict[int, np.dtype[Any]] = {flag: np.dtype(code) for flag, code in enumerate(
    ("<f4", "<f8", "<f2", "u1", "<i4", "i1", "<i8"))}
TYPE_FLAGS = {dtype: flag for flag, dtype in DTYPES.items()}
MAX_NDIM = 32


class ParamsFormatError(ValueError):
    """The bytes are not an NDArray list file this reader understands (the message says where and why)."""


class _Reader:
    def __init__(self, payload: bytes) -> None:
        self.payload = memoryview(payload)
        self.offset = 0

    def take(self, size: int, what: str) -> memoryview:
        if size < 0 or self.offset + size > len(self.payload):
            raise ParamsFormatError(f"truncated at byte {self.offset}: {what} needs {size} bytes, "
                                    f"{len(self.payload) - self.offset} left")
        chunk = self.payload[self.offset:self.offset + size]
        self.offset += size
        return chunk

    def unpack(self, fmt: str, what: str) -> tuple[int, ...]:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt), what))

    def shape(self, what: str) -> tuple[int, ...]:
        (ndim,) = self.unpack("<i", f"{what} ndim")
        if not 0 <= ndim <= MAX_NDIM:
            raise ParamsFormatError(f"{what} has ndim {ndim} at byte {self.offset - 4}")
        dims = self.unpack(f"<{ndim}q", what)
        if any(dim < 0 for dim in dims):
            raise ParamsFormatError(f"{what} {dims} has a negative dimension")
        return tuple(dims)

    def array(self, dtype: np.dtype[Any], shape: tuple[int, ...], what: str) -> np.ndarray:
        count = int(np.prod(shape, dtype=np.int64))
        chunk = self.take(count * dtype.itemsize, what)
        return np.frombuffer(chunk, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


def read(payload: bytes) -> dict[str, np.ndarray]:
    """The named arrays of an NDArray list file (row_sparse arrays densified); ``ParamsFormatError`` for a
    wrong magic, an unknown storage or type, a truncated body, trailing bytes, or a list without names."""
    reader = _Reader(payload)
    magic, _reserved = reader.unpack("<QQ", "the list header")
    if magic != LIST_MAGIC:
        raise ParamsFormatError(f"not an MXNet NDArray list file: magic {magic:#x}, expected {LIST_MAGIC:#x}")
    (count,) = reader.unpack("<Q", "the array count")
    if count > len(payload):
        raise ParamsFormatError(f"array count {count} exceeds the file's size")
    arrays = [_read_array(reader, i) for i in range(count)]
    (n_keys,) = reader.unpack("<Q", "the key count")
    if n_keys != count:
        raise ParamsFormatError(f"{n_keys} names for {count} arrays: every array needs a name")
    keys = []
    for i in range(n_keys):
        (length,) = reader.unpack("<Q", f"the length of name {i}")
        raw = bytes(reader.take(length, f"name {i}"))
        try:
            keys.append(raw.decode())
        except UnicodeDecodeError:
            raise ParamsFormatError(f"name {i} is not UTF-8: {raw[:40]!r}") from None
    if reader.offset != len(payload):
        raise ParamsFormatError(f"{len(payload) - reader.offset} unexpected bytes after the names")
    if len(set(keys)) != len(keys):
        raise ParamsFormatError(f"repeated names: {sorted(k for k in set(keys) if keys.count(k) > 1)}")
    return dict(zip(keys, arrays, strict=True))


def _read_array(reader: _Reader, index: int) -> np.ndarray:
    what = f"array {index}"
    (magic,) = reader.unpack("<I", f"{what} magic")
    if magic not in (V2_MAGIC, V3_MAGIC):
        raise ParamsFormatError(f"{what} has magic {magic:#x} at byte {reader.offset - 4}; this reader takes "
                                f"{V2_MAGIC:#x} and {V3_MAGIC:#x} (MXNet >= 1.0)")
    (stype,) = reader.unpack("<i", f"{what} storage type")
    if stype not in (DENSE, ROW_SPARSE):
        raise ParamsFormatError(f"{what} has storage type {stype}; dense (0) and row_sparse (1) are read")
    storage_shape = reader.shape(f"{what} storage shape") if stype == ROW_SPARSE else None
    shape = reader.shape(f"{what} shape")
    if not shape and magic == V2_MAGIC:
        return np.zeros((), np.float32)  # MXNet's "none" array: nothing more is stored
    reader.unpack("<ii", f"{what} context")
    (flag,) = reader.unpack("<i", f"{what} type")
    if flag not in DTYPES:
        raise ParamsFormatError(f"{what} has type flag {flag}; known: {sorted(DTYPES)}")
    dtype = DTYPES[flag]
    if storage_shape is None:
        return reader.array(dtype, shape, f"{what} data")
    (aux_flag,) = reader.unpack("<i", f"{what} index type")
    index_shape = reader.shape(f"{what} index shape")
    if (aux_flag not in DTYPES or len(storage_shape) != len(shape) or storage_shape[1:] != shape[1:]
            or index_shape != storage_shape[:1]):
        raise ParamsFormatError(f"{what} is row_sparse with storage {storage_shape}, index {index_shape} of type "
                                f"{aux_flag}: inconsistent with its shape {shape}")
    rows = reader.array(dtype, storage_shape, f"{what} data")
    rows_at = reader.array(DTYPES[aux_flag], index_shape, f"{what} row indices").astype(np.int64)
    if rows_at.size and (rows_at.min() < 0 or rows_at.max() >= shape[0]):
        raise ParamsFormatError(f"{what} has a row index outside [0, {shape[0]})")
    dense = np.zeros(shape, dtype)
    dense[rows_at] = rows
    return dense


def write(arrays: Mapping[str, np.ndarray]) -> bytes:
    """An NDArray list file of dense arrays on the CPU, as ``mx.nd.save(path, arrays)`` writes it."""
    parts = [struct.pack("<QQQ", LIST_MAGIC, 0, len(arrays))]
    for name, array in arrays.items():
        data = np.ascontiguousarray(array)
        dtype = data.dtype.newbyteorder("<")
        if dtype not in TYPE_FLAGS or data.ndim == 0:
            raise ValueError(f"array {name!r}: {data.dtype} of {data.ndim} dimensions cannot be written "
                             f"(types {sorted(str(t) for t in TYPE_FLAGS)}, at least one dimension)")
        parts.append(struct.pack(f"<Iii{data.ndim}qiii", V2_MAGIC, DENSE, data.ndim, *data.shape, CPU, 0,
                                 TYPE_FLAGS[dtype]))
        parts.append(data.astype(dtype, copy=False).tobytes())
    parts.append(struct.pack("<Q", len(arrays)))
    for name in arrays:
        encoded = name.encode()
        parts.append(struct.pack("<Q", len(encoded)) + encoded)
    return b"".join(parts)
