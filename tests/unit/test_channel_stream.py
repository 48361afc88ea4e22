"""Streaming decode: every training format read as blocks from a stream that returns a few bytes per read gives
exactly the rows, and the errors, of the whole-body decoders (``read_channel``)."""

from __future__ import annotations

import gzip
import io
import struct

import numpy as np
import pytest
import scipy.sparse as sp

from algorithm.csr import CSR, concatenate
from container.channel_stream import stream_blocks
from container.channels import read_channel
from container.config import ChannelConfig
from container.errors import DataError
from container.formats.record_pb2 import Record
from container.formats.recordio import write_numpy_to_dense_tensor, write_spmatrix_to_sparse_tensor
from container.formats.recordio_framing import MAGIC
from container.paths import SageMakerPaths

FEATURE_DIM = 6
READ_SIZES = [1, 3, 7, 4099]
BLOCK_BYTES = [64, 1000, 1 << 20]


class Trickle:
    """A stream that returns at most ``n`` bytes per read, as a FIFO may."""

    def __init__(self, data: bytes, n: int) -> None:
        self._buffer = io.BytesIO(data)
        self._n = n

    def read(self, size: int) -> bytes:
        return self._buffer.read(min(size, self._n))


@pytest.fixture
def paths(tmp_path):
    return SageMakerPaths(tmp_path)


def _matrix(rows=120, seed=0):
    rng = np.random.default_rng(seed)
    features = rng.integers(0, 3, (rows, FEATURE_DIM)).astype(np.float32) * rng.standard_normal((rows, 1))
    return features.astype(np.float32), rng.integers(0, 2, rows).astype(np.float32)


def _dense_recordio():
    features, labels = _matrix()
    out = io.BytesIO()
    write_numpy_to_dense_tensor(out, features, labels)
    return out.getvalue()


def _sparse_recordio():
    features, labels = _matrix(seed=1)
    out = io.BytesIO()
    write_spmatrix_to_sparse_tensor(out, sp.csr_matrix(features), labels)
    return out.getvalue()


def _record(values, label, weight=None):
    record = Record()
    record.features["values"].float32_tensor.values.extend(values)
    record.label["values"].float32_tensor.values.append(label)
    if weight is not None:
        record.label["weight"].float32_tensor.values.append(weight)
    return record.SerializeToString()


def _frame(payload, cflag=0):
    return struct.pack("<II", MAGIC, (cflag << 29) | len(payload)) + payload + b"\x00" * (-len(payload) % 4)


def _multipart_recordio():
    """Single-part records, some weighted, around a record split in three parts (the protobuf path)."""
    rows = [_frame(_record([i, 0, 1, 0, 2, i % 3], i % 2, 0.5 if i % 4 == 0 else None)) for i in range(30)]
    payload = _record([1, 2, 3, 4, 5, 6], 1, 2.0)
    split = [payload[:5], payload[5:17], payload[17:]]
    rows.insert(11, _frame(split[0], 1) + _frame(split[1], 2) + _frame(split[2], 3))
    return b"".join(rows)


def _csv():
    features, labels = _matrix(seed=2)
    lines = [",".join(f"{v:.6g}" for v in [label, *row]) for label, row in zip(labels, features, strict=True)]
    lines[5] = ""  # a blank line
    lines[9] += "\r"  # a CRLF line end
    return ("\ufeff" + "\n".join(lines)).encode()  # a BOM, no final line end


def _libsvm():
    features, labels = _matrix(seed=3)
    lines = []
    for i, (label, row) in enumerate(zip(labels, features, strict=True)):
        pairs = " ".join(f"{c}:{v:.6g}" for c, v in enumerate(row) if v)
        lines.append(f"{label:g} qid:{i} {pairs}" + (" # a comment" if i % 7 == 0 else ""))
    return ("\n".join(lines) + "\n").encode()


FORMATS = {
    "recordio-dense": ("application/x-recordio-protobuf", _dense_recordio),
    "recordio-sparse": ("application/x-recordio-protobuf", _sparse_recordio),
    "recordio-multipart": ("application/x-recordio-protobuf", _multipart_recordio),
    "csv": ("text/csv", _csv),
    "libsvm": ("text/libsvm", _libsvm),
    "csv-gzip": ("text/csv", lambda: gzip.compress(_csv()[:500]) + gzip.compress(_csv()[500:])),
    "recordio-gzip-sniffed": (None, lambda: gzip.compress(_sparse_recordio())),
}


def _whole(paths, body, content_type, name="part-0"):
    """The whole-body decoders' rows, or their error, and the source name they use."""
    directory = paths.channel_dir("train")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_bytes(body)
    try:
        return read_channel(paths, ChannelConfig("train", content_type=content_type), feature_dim=FEATURE_DIM), \
            str(directory / name)
    except DataError as err:
        return err, str(directory / name)


def _streamed(body, source, config, read_size, block_bytes):
    blocks = list(stream_blocks(Trickle(body, read_size), source, config, feature_dim=FEATURE_DIM,
                                block_bytes=block_bytes))
    return blocks


def _assert_same_rows(blocks: list[CSR], whole: CSR) -> None:
    for block in blocks:
        assert block.n_cols == FEATURE_DIM and block.n_rows > 0 and block.labels is not None
    weights = [b.weights if b.weights is not None else np.ones(b.n_rows, np.float32) for b in blocks]
    joined = concatenate(blocks)
    np.testing.assert_array_equal(joined.indptr, whole.indptr)
    np.testing.assert_array_equal(joined.indices, whole.indices)
    np.testing.assert_array_equal(joined.data, whole.data)
    np.testing.assert_array_equal(joined.labels, whole.labels)
    if whole.weights is None:
        assert all(b.weights is None for b in blocks)
    else:
        np.testing.assert_array_equal(np.concatenate(weights), whole.weights)


@pytest.mark.parametrize("name", list(FORMATS))
@pytest.mark.parametrize("read_size", READ_SIZES)
@pytest.mark.parametrize("block_bytes", BLOCK_BYTES)
def test_blocks_hold_exactly_the_whole_body_rows(paths, name, read_size, block_bytes):
    content_type, make = FORMATS[name]
    body = make()
    whole, source = _whole(paths, body, content_type)
    assert isinstance(whole, CSR) and whole.n_rows > 20
    blocks = _streamed(body, source, ChannelConfig("train", content_type=content_type), read_size, block_bytes)
    _assert_same_rows(blocks, whole)
    if block_bytes == 64:
        assert len(blocks) > 10  # cut into many blocks, records and lines split across reads
