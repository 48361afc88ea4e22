"""Numba kernel that writes rows as framed RecordIO-protobuf Records, byte for byte what the SDK writes.

The SDK's writers (``sagemaker.amazon.common``) build one ``Record`` per row: ``features["values"]`` holds a
tensor with ``values`` (and, for sparse rows, ``keys`` and ``shape = [n_cols]``); ``label["values"]`` holds
one value. protobuf serializes fields in field-number order and omits empty packed fields, which this kernel
reproduces without building a message per row.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from container.formats._recordio_kernels import F32, F64, I32
from container.formats.recordio_framing import MAGIC

_TENSOR_TAG = (0x12, 0x1A, 0x3A)  # Value.float32_tensor = 2, float64_tensor = 3, int32_tensor = 7
_KEY = np.frombuffer(b"\x0a\x06values", dtype=np.uint8)  # map entry key field: "values"
_NO_LABEL = -1


@njit(cache=True)
def _varint_size(v):
    if v < 0:
        return 10  # a negative int32 is sign-extended to 64 bits
    n = 1
    while v >= 0x80:
        v >>= 7
        n += 1
    return n


@njit(cache=True)
def _put_varint(out, p, v):
    if v < 0:
        for _ in range(9):
            out[p] = (v & 0x7F) | 0x80
            v = (v >> 7) & ((1 << 57) - 1)
            p += 1
        out[p] = 1
        return p + 1
    while v >= 0x80:
        out[p] = (v & 0x7F) | 0x80
        v >>= 7
        p += 1
    out[p] = v
    return p + 1


@njit(cache=True)
def _values_size(kind, ints, lo, hi):
    if kind == F32:
        return 4 * (hi - lo)
    if kind == F64:
        return 8 * (hi - lo)
    size = 0
    for j in range(lo, hi):
        size += _varint_size(ints[j])
    return size


@njit(cache=True)
def _field_size(payload):
    """Size of a length-delimited field (one-byte tag) holding ``payload`` bytes."""
    return 1 + _varint_size(payload) + payload


@njit(cache=True)
def _tensor_size(kind, ints, keys, lo, hi, sparse, shape_size):
    size = 0
    if hi > lo:
        size += _field_size(_values_size(kind, ints, lo, hi))
        if sparse:
            key_size = 0
            for j in range(lo, hi):
                key_size += _varint_size(keys[j])
            size += _field_size(key_size)
    if sparse:
        size += _field_size(shape_size)
    return size


@njit(cache=True)
def _put_values(out, p, kind, raw, ints, lo, hi):
    if kind == I32:
        for j in range(lo, hi):
            p = _put_varint(out, p, ints[j])
        return p
    width = 4 if kind == F32 else 8
    out[p : p + width * (hi - lo)] = raw[width * lo : width * hi]
    return p + width * (hi - lo)


@njit(cache=True)
def _put_entry(out, p, map_field, kind, tensor_size):
    """Write a map entry header: ``map_field {key: "values" value {<kind>_tensor {`` (tensor bytes follow)."""
    tensor_field = _field_size(tensor_size)
    entry = len(_KEY) + _field_size(tensor_field)
    out[p] = map_field
    p = _put_varint(out, p + 1, entry)
    out[p : p + len(_KEY)] = _KEY
    p += len(_KEY)
    out[p] = 0x12
    p = _put_varint(out, p + 1, tensor_field)
    out[p] = _TENSOR_TAG[kind]
    return _put_varint(out, p + 1, tensor_size)


@njit(cache=True)
def _entry_size(tensor_size):
    return _field_size(len(_KEY) + _field_size(_field_size(tensor_size)))


@njit(cache=True)
def encode_rows(indptr, keys, sparse, n_cols, kind, raw, ints, label_kind, label_raw, label_ints):
    """Framed Records for rows ``indptr[i]:indptr[i+1]`` of the values (``raw`` little-endian bytes for
    F32/F64, ``ints`` for I32) with column ``keys`` when ``sparse``; ``label_kind`` < 0 writes no label."""
    n_rows = len(indptr) - 1
    shape_size = _varint_size(n_cols)
    sizes = np.empty(n_rows, np.int64)
    total = 0
    for i in range(n_rows):
        lo = indptr[i]
        hi = indptr[i + 1]
        payload = _entry_size(_tensor_size(kind, ints, keys, lo, hi, sparse, shape_size))
        if label_kind != _NO_LABEL:
            payload += _entry_size(_field_size(_values_size(label_kind, label_ints, i, i + 1)))
        sizes[i] = payload
        total += 8 + ((payload + 3) & ~3)
    out = np.zeros(total, np.uint8)
    p = 0
    for i in range(n_rows):
        lo = indptr[i]
        hi = indptr[i + 1]
        end = p + 8 + ((sizes[i] + 3) & ~3)
        for k in range(4):
            out[p + k] = (MAGIC >> (8 * k)) & 0xFF
            out[p + 4 + k] = (sizes[i] >> (8 * k)) & 0xFF
        p += 8
        p = _put_entry(out, p, 0x0A, kind, _tensor_size(kind, ints, keys, lo, hi, sparse, shape_size))
        if hi > lo:
            out[p] = 0x0A
            p = _put_varint(out, p + 1, _values_size(kind, ints, lo, hi))
            p = _put_values(out, p, kind, raw, ints, lo, hi)
            if sparse:
                key_size = 0
                for j in range(lo, hi):
                    key_size += _varint_size(keys[j])
                out[p] = 0x12
                p = _put_varint(out, p + 1, key_size)
                for j in range(lo, hi):
                    p = _put_varint(out, p, keys[j])
        if sparse:
            out[p] = 0x1A
            p = _put_varint(out, p + 1, shape_size)
            p = _put_varint(out, p, n_cols)
        if label_kind != _NO_LABEL:
            value_size = _values_size(label_kind, label_ints, i, i + 1)
            p = _put_entry(out, p, 0x12, label_kind, _field_size(value_size))
            out[p] = 0x0A
            p = _put_varint(out, p + 1, value_size)
            p = _put_values(out, p, label_kind, label_raw, label_ints, i, i + 1)
        p = end
    return out
