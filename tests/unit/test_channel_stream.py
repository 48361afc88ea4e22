"""Streaming decode: every training format read as blocks from a stream that returns a few bytes per read gives
exactly the rows, and the errors, of the whole-body decoders (``read_channel``)."""

from __future__ import annotations

import gzip
import io
import os
import struct
import threading

import numpy as np
import pytest
import scipy.sparse as sp

from algorithm.csr import CSR, concatenate
from container.channel_stream import iter_channel_blocks, stream_blocks
from container.channels import read_channel
from container.config import ChannelConfig
from container.errors import ChannelError, DataError
from container.formats.csv import decode_csv
from container.formats.record_pb2 import Record
from container.formats.recordio import decode_recordio, write_numpy_to_dense_tensor, write_spmatrix_to_sparse_tensor
from container.formats.recordio_framing import MAGIC, frame_records
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
    joined = concatenate(blocks)
    for name in ("indptr", "indices", "data", "labels", "weights"):
        np.testing.assert_array_equal(getattr(joined, name), getattr(whole, name))


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


def _replace_record(body: bytes, index: int, payload: bytes) -> bytes:
    """``body`` (single-part records) with record ``index`` framed from ``payload`` instead."""
    p = 0
    for _ in range(index):
        p += 8 + ((struct.unpack_from("<I", body, p + 4)[0] + 3) & ~3)
    end = p + 8 + ((struct.unpack_from("<I", body, p + 4)[0] + 3) & ~3)
    return body[:p] + _frame(payload) + body[end:]


def _recordio_faults():
    body = _dense_recordio()
    return {
        "bad magic": body[:400] + b"\x00\x00\x00\x00" + body[404:],
        "truncated payload": body[:-10],
        "truncated header": body + _frame(b"x")[:5],
        "NaN feature": _replace_record(body, 77, _record([1, float("nan"), 0, 0, 0, 0], 1)),
        "wide row": _replace_record(body, 50, _record([1] * (FEATURE_DIM + 1), 1)),
        "negative weight": _replace_record(body, 90, _record([1] * FEATURE_DIM, 1, -1.0)),
        "no end part": body + _frame(b"\x0a\x00", 1),
        "misplaced part": body + _frame(_record([1] * FEATURE_DIM, 1), 2),
        "bad record": _replace_record(body, 60, b"\xff\xff\xff"),
    }


def _text_faults():
    csv = _csv().decode().split("\n")
    libsvm = _libsvm().decode().split("\n")

    def edit(lines, at, line):
        return "\n".join([*lines[:at], line, *lines[at + 1:]]).encode()

    return {
        "csv bad cell": ("text/csv", edit(csv, 70, "1,2,x,4,5,6,7")),
        "csv short line": ("text/csv", edit(csv, 40, "1,2,3")),
        "csv NaN": ("text/csv", edit(csv, 99, "1,2,nan,4,5,6,7")),
        "csv header-like line inside": ("text/csv", edit(csv, 30, "label,a,b,c,d,e,f")),
        "csv header": ("text/csv", edit(csv, 0, "label,a,b,c,d,e,f")),
        "libsvm bad pair": ("text/libsvm", edit(libsvm, 66, "1 0:1 two:2")),
        "libsvm bad label": ("text/libsvm", edit(libsvm, 88, "yes 0:1")),
        "libsvm NaN": ("text/libsvm", edit(libsvm, 101, "1 0:nan")),
    }


FAULTS = {name: ("application/x-recordio-protobuf", body) for name, body in _recordio_faults().items()}
FAULTS |= _text_faults()


@pytest.mark.parametrize("name", list(FAULTS))
@pytest.mark.parametrize(("read_size", "block_bytes"), [(1, 64), (7, 1000), (4099, 1 << 20), (13, 300)])
def test_errors_name_the_same_record_line_and_offset_as_the_whole_body(paths, name, read_size, block_bytes):
    content_type, body = FAULTS[name]
    whole, source = _whole(paths, body, content_type)
    assert isinstance(whole, DataError)
    with pytest.raises(DataError) as raised:
        _streamed(body, source, ChannelConfig("train", content_type=content_type), read_size, block_bytes)
    assert str(raised.value) == str(whole)
    assert source in str(whole) and any(w in str(whole) for w in ("line ", "record ", "byte offset"))


def test_libsvm_index_beyond_feature_dim_names_line_and_key(paths):
    lines = _libsvm().decode().split("\n")
    lines[50] = f"1 2:1 {FEATURE_DIM + 3}:1"
    body = "\n".join(lines).encode()
    with pytest.raises(DataError, match=rf"part-0: line 51 key\[1\]={FEATURE_DIM + 3} is outside \[0, {FEATURE_DIM}\)"):
        _streamed(body, "part-0", ChannelConfig("train", content_type="text/libsvm"), 5, 200)


def _wrapped(objects, split_at=None):
    """Pipe mode's RecordWrapperType=RecordIO: one record per object; object ``split_at`` in three parts."""
    out = b""
    for i, obj in enumerate(objects):
        if i == split_at:
            out += _frame(obj[:3], 1) + _frame(obj[3:40], 2) + _frame(obj[40:], 3)
        else:
            out += frame_records([obj])
    return out


WRAPPED = {
    "recordio objects, one gzipped, one in parts": (
        "application/x-recordio-protobuf", [_dense_recordio(), gzip.compress(_sparse_recordio()), b" \n",
                                            _multipart_recordio()], 3),
    "csv objects": ("text/csv", [_csv(), b"", b"\n".join(_csv().split(b"\n")[10:20]), gzip.compress(_csv())], 0),
    "undeclared mixed objects": (None, [_libsvm(), _dense_recordio(), _csv()], 1),
}


@pytest.mark.parametrize("name", list(WRAPPED))
@pytest.mark.parametrize(("read_size", "block_bytes"), [(1, 64), (5, 700), (4099, 1 << 20)])
def test_record_wrapped_pipe_streams_each_object(paths, name, read_size, block_bytes):
    content_type, objects, split_at = WRAPPED[name]
    body = _wrapped(objects, split_at)
    config = ChannelConfig("train", content_type=content_type, input_mode="Pipe", record_wrapper="RecordIO")
    paths.input_data.mkdir(parents=True)
    fifo = paths.pipe_path("train", 0)
    fifo.write_bytes(body)  # a regular file stands in for the FIFO here (read the same way)
    whole = read_channel(paths, config, feature_dim=FEATURE_DIM)
    _assert_same_rows(_streamed(body, str(fifo), config, read_size, block_bytes), whole)


@pytest.mark.parametrize(("cut", "message"), [
    (lambda body: body[:-7], r"record 1 \(byte offset \d+\): truncated record: header says \d+ bytes but only"),
    (lambda body: body + b"\x0a\x23", r"record 2 \(byte offset \d+\): truncated record header \(2 bytes left"),
    (lambda body: body[:20] + b"\x00" * 4 + body[24:], r"record 0 \(byte offset 0\): .*"),
])
def test_broken_wrapper_names_the_record_and_offset_as_the_whole_body(paths, cut, message):
    body = cut(_wrapped([_dense_recordio(), _dense_recordio()]))
    config = ChannelConfig("train", input_mode="Pipe", record_wrapper="RecordIO")
    paths.input_data.mkdir(parents=True)
    fifo = paths.pipe_path("train", 0)
    fifo.write_bytes(body)
    with pytest.raises(DataError, match=message) as whole:
        read_channel(paths, config, feature_dim=FEATURE_DIM)
    for read_size in (1, 9, 1 << 16):
        with pytest.raises(DataError) as streamed:
            _streamed(body, str(fifo), config, read_size, 500)
        assert str(streamed.value) == str(whole.value)


def test_corrupt_gzip_names_the_file_without_format_advice(paths):
    body = gzip.compress(_csv())
    for broken in (body[:-12], body[:40] + bytes(40) + body[80:]):
        whole, source = _whole(paths, broken, None)
        with pytest.raises(DataError, match=r"part-0: corrupt gzip data") as streamed:
            _streamed(broken, source, ChannelConfig("train"), 3, 1000)
        assert str(streamed.value) == str(whole)


def test_file_mode_streams_every_file_in_order_with_its_name(paths, caplog):
    directory = paths.channel_dir("train")
    (directory / "b").mkdir(parents=True)
    (directory / "a.csv").write_bytes(_csv())
    (directory / "b" / "c.gz").write_bytes(gzip.compress(_libsvm()))
    (directory / "b" / "d").write_bytes(_dense_recordio())
    (directory / "blank").write_bytes(b" \n\n")
    (directory / ".hidden").write_bytes(b"garbage")
    whole = read_channel(paths, ChannelConfig("train"), feature_dim=FEATURE_DIM)
    with caplog.at_level("INFO"):
        pairs = list(iter_channel_blocks(paths, ChannelConfig("train"), feature_dim=FEATURE_DIM, block_bytes=2000))
    assert [s.rsplit("/", 1)[1] for s in dict.fromkeys(s for s, _ in pairs)] == ["a.csv", "c.gz", "d"]
    _assert_same_rows([block for _, block in pairs], whole)
    assert "reading" in caplog.text and "as text/libsvm, as its first bytes show" in caplog.text


def test_blocks_stay_near_block_bytes(paths):
    features, labels = _matrix(rows=20000, seed=4)
    out = io.BytesIO()
    write_spmatrix_to_sparse_tensor(out, sp.csr_matrix(features), labels)
    config = ChannelConfig("train", content_type="application/x-recordio-protobuf")
    for block_bytes in (1 << 14, 1 << 16):
        blocks = _streamed(out.getvalue(), "s", config, 1 << 16, block_bytes)
        assert len(blocks) > 8
        assert max(b.nbytes for b in blocks) <= 1.25 * block_bytes
        assert np.median([b.nbytes for b in blocks]) >= 0.75 * block_bytes


def test_an_empty_channel_is_named(paths):
    paths.channel_dir("train").mkdir(parents=True)
    (paths.channel_dir("train") / "blank.csv").write_bytes(b"\n\n")
    with pytest.raises(ChannelError, match=r"Channel 'train' has no data \(File mode"):
        list(iter_channel_blocks(paths, ChannelConfig("train"), feature_dim=FEATURE_DIM))


def _fifo_writer(path, chunks):
    """A writer thread: opens the FIFO, writes ``chunks`` one by one, closes it."""

    def write():
        with open(path, "wb") as fifo:
            for chunk in chunks:
                fifo.write(chunk)
                fifo.flush()

    thread = threading.Thread(target=write, daemon=True)
    thread.start()
    return thread


def test_pipe_mode_streams_the_fifo_of_each_epoch(paths):
    paths.input_data.mkdir(parents=True)
    config = ChannelConfig("train", input_mode="Pipe", content_type="application/x-recordio-protobuf")
    bodies = [_dense_recordio(), _sparse_recordio()]
    for epoch, body in enumerate(bodies):
        fifo = paths.pipe_path("train", epoch)
        os.mkfifo(fifo)
        writer = _fifo_writer(fifo, [body[i:i + 777] for i in range(0, len(body), 777)])
        pairs = list(iter_channel_blocks(paths, config, feature_dim=FEATURE_DIM, epoch=epoch, block_bytes=500))
        writer.join(timeout=10)
        assert {source for source, _ in pairs} == {str(fifo)} and len(pairs) > 3
        whole = concatenate([block for _, block in pairs])
        _assert_same_rows([whole], decode_recordio(body, source="s", feature_dim=FEATURE_DIM, with_labels=True))


@pytest.mark.parametrize(("content_type", "body", "message"), [
    ("application/x-recordio-protobuf", _dense_recordio()[:-3],
     r"record 119 \(byte offset \d+\): truncated record: header says 60 bytes but only 57 remain"),
    ("application/x-recordio-protobuf", _dense_recordio() + b"\x0a\x23\xd7",
     r"record 120 \(byte offset \d+\): truncated record header \(3 bytes left, need 8\)"),
    ("text/csv", _csv()[:-4], r"line 120 has \d feature values, expected feature_dim=6"),
])
def test_a_fifo_closed_early_is_named_with_the_offset(paths, content_type, body, message):
    paths.input_data.mkdir(parents=True)
    fifo = paths.pipe_path("train", 0)
    os.mkfifo(fifo)
    writer = _fifo_writer(fifo, [body[:1000], body[1000:]])
    config = ChannelConfig("train", input_mode="Pipe", content_type=content_type)
    blocks = iter_channel_blocks(paths, config, feature_dim=FEATURE_DIM, block_bytes=2000)
    with pytest.raises(DataError, match=f"^{fifo}: {message}"):
        for _ in blocks:
            pass
    writer.join(timeout=10)
    assert not writer.is_alive()


def test_an_empty_fifo_is_named_with_its_epoch(paths):
    paths.input_data.mkdir(parents=True)
    fifo = paths.pipe_path("train", 2)
    os.mkfifo(fifo)
    writer = _fifo_writer(fifo, [])
    with pytest.raises(ChannelError, match=rf"has no data \(Pipe mode, looked in {fifo}\)"):
        list(iter_channel_blocks(paths, ChannelConfig("train", input_mode="Pipe"), feature_dim=FEATURE_DIM,
                                 epoch=2))
    writer.join(timeout=10)


@pytest.mark.parametrize(("declared", "body"), [
    ("text/csv", _libsvm()),
    ("text/libsvm", _csv()),
    (None, b"1,2,3,4,5,6,7\n" * 50 + b"1,2,x,4,5,6,7\n"),
])
def test_the_content_type_at_fault_is_named_as_the_whole_body_names_it(paths, declared, body):
    whole, source = _whole(paths, body, declared)
    assert isinstance(whole, DataError) and "ContentType" in str(whole)
    with pytest.raises(DataError) as streamed:
        _streamed(body, source, ChannelConfig("train", content_type=declared), 5, 300)
    assert str(streamed.value) == str(whole)


@pytest.mark.parametrize(("content_type", "body", "message"), [
    ("text/csv", b"1,2,3,4,5,6,7\n" * 10 + b"1" * 5000,
     r"line 11 \(byte offset 140\) has no line end within 1000 bytes"),
    ("application/x-recordio-protobuf", bytes(5000), r"body \(a bare Record.*\): record longer than 1000 bytes"),
    ("application/x-recordio-protobuf", _dense_recordio()[:136] + _frame(bytes(3000)),
     r"record 2 \(byte offset 136\): record longer than 1000 bytes"),
])
def test_a_record_or_line_longer_than_the_limit_is_refused_not_read_whole(monkeypatch, content_type, body, message):
    from container.formats import chunking

    monkeypatch.setattr(chunking, "MAX_UNIT_BYTES", 1000)
    with pytest.raises(DataError, match=f"^s: {message}"):
        _streamed(body, "s", ChannelConfig("train", content_type=content_type), 7, 200)


def test_a_record_wrapped_fifo_streams_its_objects(paths):
    paths.input_data.mkdir(parents=True)
    fifo = paths.pipe_path("train", 0)
    os.mkfifo(fifo)
    objects = [gzip.compress(_sparse_recordio()), _multipart_recordio(), _dense_recordio()]
    body = _wrapped(objects, 1)
    writer = _fifo_writer(fifo, [body[i:i + 333] for i in range(0, len(body), 333)])
    config = ChannelConfig("train", input_mode="Pipe", record_wrapper="RecordIO")
    blocks = [block for _, block in iter_channel_blocks(paths, config, feature_dim=FEATURE_DIM, block_bytes=700)]
    writer.join(timeout=10)
    expected = [decode_recordio(gzip.decompress(objects[0]), source="s", feature_dim=FEATURE_DIM, with_labels=True),
                *(decode_recordio(o, source="s", feature_dim=FEATURE_DIM, with_labels=True) for o in objects[1:])]
    assert len(blocks) > len(objects)
    _assert_same_rows(blocks, concatenate(expected))


def test_a_source_whose_blank_prefix_outruns_the_blank_check_is_decoded_not_skipped(monkeypatch):
    from container import channel_stream

    monkeypatch.setattr(channel_stream, "BLANK_PEEK_BYTES", 1 << 17)
    body = b"\n" * (1 << 18) + _csv().removeprefix("\ufeff".encode())
    blocks = _streamed(body, "s", ChannelConfig("train", content_type="text/csv"), 4099, 1 << 20)
    _assert_same_rows(blocks, decode_csv(_csv(), source="s", feature_dim=FEATURE_DIM, with_labels=True))
    assert not _streamed(b" \n" * (1 << 16), "s", ChannelConfig("train", content_type="text/csv"), 4099, 1 << 20)


@pytest.mark.parametrize("tail", [b"\x00" * 7, b"junk"])
def test_what_follows_a_gzip_member_is_read_as_gzip_decompress_reads_it(paths, tail):
    body = gzip.compress(_csv()) + tail
    whole, source = _whole(paths, body, "text/csv")
    config = ChannelConfig("train", content_type="text/csv")
    if isinstance(whole, DataError):
        with pytest.raises(DataError) as streamed:
            _streamed(body, source, config, 3, 500)
        assert str(streamed.value) == str(whole) and "corrupt gzip data" in str(whole)
    else:
        _assert_same_rows(_streamed(body, source, config, 3, 500), whole)


@pytest.mark.parametrize("name", ["recordio-sparse", "recordio-multipart", "csv", "libsvm"])
@pytest.mark.parametrize(("first", "step"), [(0, 2), (1, 2), (2, 3), (0, 1)])
def test_every_nth_row_read_block_by_block_is_the_whole_channels(paths, name, first, step):
    """A host's share of a FullyReplicated channel (``read_every_nth``): the rows of the whole read from ``first``
    every ``step``, however the blocks fall (two files, blocks of a few rows), weights as the whole read's."""
    from container.channel_stream import read_every_nth

    content_type, body = FORMATS[name]
    for part in ("part-0", "part-1"):  # two files: the rows go on across them
        _whole(paths, body(), content_type, part)
    config = ChannelConfig("train", content_type=content_type)
    whole = read_channel(paths, config, feature_dim=FEATURE_DIM)
    for block_bytes in (1 << 10, 64 << 20):
        rows = read_every_nth(paths, config, feature_dim=FEATURE_DIM, first=first, step=step, block_bytes=block_bytes)
        expected = whole.to_scipy()[first::step]
        assert rows.n_rows == expected.shape[0] and (rows.to_scipy() != expected).nnz == 0
        np.testing.assert_array_equal(rows.labels, whole.labels[first::step])
        if whole.weights is None:
            assert rows.weights is None
        else:
            np.testing.assert_array_equal(rows.weights, whole.weights[first::step])
