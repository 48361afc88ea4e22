"""The client's RecordIO: the SDK's bytes with numba (the container's encoder) and without (the protobuf
library), and the SDK's Records read back with the protobuf library alone."""

from __future__ import annotations

import io
import struct

import numpy as np
import pytest
import scipy.sparse as sp
from sagemaker.amazon import common as sdk

from container.errors import DataError
from container.formats.recordio_framing import MAGIC
from fmwals import recordio


@pytest.fixture(params=[True, False], ids=["numba", "protobuf"])
def writer(request, monkeypatch):
    monkeypatch.setattr(recordio, "NUMBA_INSTALLED", request.param)
    return recordio


def _bytes(write, *args):
    buffer = io.BytesIO()
    write(buffer, *args)
    return buffer.getvalue()


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int64])
def test_dense_writer_writes_the_sdk_bytes(writer, dtype):
    x = (np.random.default_rng(0).random((5, 4)) * 10).astype(dtype)
    labels = np.array([0, 1, 0, 1, 1], dtype=dtype)
    for args in ((x,), (x, labels)):
        assert _bytes(writer.write_numpy_to_dense_tensor, *args) == _bytes(sdk.write_numpy_to_dense_tensor, *args)


def test_sparse_writer_writes_the_sdk_bytes(writer):
    x = sp.random(6, 9, density=0.3, format="csr", dtype=np.float32, random_state=2)
    labels = np.arange(6, dtype=np.float32)
    for args in ((x,), (x, labels)):
        assert _bytes(writer.write_spmatrix_to_sparse_tensor, *args) == _bytes(
            sdk.write_spmatrix_to_sparse_tensor, *args)


def test_writers_reject_what_the_sdk_rejects(writer):
    with pytest.raises(ValueError, match="Array must be a Matrix"):
        writer.write_numpy_to_dense_tensor(io.BytesIO(), np.zeros(3, np.float32))
    with pytest.raises(ValueError, match="Unsupported dtype"):
        writer.write_numpy_to_dense_tensor(io.BytesIO(), np.zeros((2, 2), np.int8))
    with pytest.raises(TypeError, match="Array must be sparse"):
        writer.write_spmatrix_to_sparse_tensor(io.BytesIO(), np.zeros((2, 2), np.float32))


def test_read_records_returns_the_sdk_records():
    body = _bytes(sdk.write_numpy_to_dense_tensor, np.eye(3, dtype=np.float32), np.ones(3, np.float32))
    ours = recordio.read_records(io.BytesIO(body))
    assert ours == sdk.read_records(io.BytesIO(body))
    assert list(ours[1].features["values"].float32_tensor.values) == [0.0, 1.0, 0.0]


def test_multi_part_records_are_joined_and_bad_framing_is_named():
    payload = _bytes(sdk.write_numpy_to_dense_tensor, np.ones((1, 3), np.float32))[8:]
    first, rest = payload[:5], payload[5:]
    framed = b"".join(
        struct.pack("<II", MAGIC, (flag << 29) | len(part)) + part + b"\0" * (-len(part) % 4)
        for flag, part in ((1, first), (3, rest)))
    assert recordio.read_records(io.BytesIO(framed)) == sdk.read_records(io.BytesIO(framed[:0] + _bytes(
        sdk.write_numpy_to_dense_tensor, np.ones((1, 3), np.float32))))
    with pytest.raises(DataError, match=r"record 0 \(byte offset 0\): wrong magic 0x64636261"):
        recordio.read_records(io.BytesIO(b"abcdefgh"))
    with pytest.raises(DataError, match="multi-part record has no end part"):
        recordio.read_records(io.BytesIO(framed[:8 + 8]))
