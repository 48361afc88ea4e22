"""Prediction encoders: named float32 columns (one value per input row) -> response body.

A prediction is an ordered mapping of column name to a float32 array, e.g. ``{"score": s, "predicted_label":
l}`` for an FM classifier or ``{"score": s}`` for a regressor; every encoder keeps the column order and emits
exactly one output per input row, in input order:

- ``application/json``: ``{"predictions":[{"score":0.25,"predicted_label":0.0},...]}``
- ``application/jsonlines``: one ``{"score":0.25,"predicted_label":0.0}`` per line
- ``text/csv``: one ``0.25,0.0`` line per row, the columns in the same order as the JSON keys (no header)
- ``application/x-recordio-protobuf``: one framed ``Record`` per row, ``features`` empty and ``label`` holding
  each column as a one-value ``float32_tensor`` (what the SDK's ``RecordDeserializer`` reads)

Every JSON Lines and CSV line ends with a newline, the last one included (``for_line_assembly`` drops that
last one in batch transform, whose ``AssembleWith=Line`` appends one per response). Numbers are printed as
the shortest decimal that reads back as the same float32 (orjson's numpy path); a non-finite value prints as
``null``.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable, Iterable, Mapping

import numpy as np
import orjson

from container.errors import UnsupportedFormatError
from container.formats.recordio_framing import MAGIC
from container.formats.registry import CSV, JSON, JSONLINES, RECORDIO

Columns = Mapping[str, np.ndarray]


def encode(accept: str, columns: Columns) -> bytes:
    """The body for media type ``accept`` (no parameters); ``UnsupportedFormatError`` if none matches."""
    try:
        encoder = ENCODERS[accept]
    except KeyError:
        raise UnsupportedFormatError(accept, list(ENCODERS)) from None
    return encoder(columns)


def encode_json(columns: Columns) -> bytes:
    if not _n_rows(columns):
        return b'{"predictions":[]}'
    return b'{"predictions":[' + _join_objects(columns, b",") + b"]}"


def encode_jsonlines(columns: Columns) -> bytes:
    if not _n_rows(columns):
        return b""
    return _join_objects(columns, b"\n") + b"\n"


def encode_csv(columns: Columns) -> bytes:
    return b"".join(row + b"\n" for row in _rows(columns, [b","] * (len(columns) - 1)))


@functools.lru_cache(maxsize=32)
def min_row_bytes(accept: str, names: tuple[str, ...]) -> int:
    """The fewest bytes one row's answer takes in ``accept`` with the columns ``names`` (every value
    ``0.0``, as short as a float32 prints), separators included: a lower bound of the response size."""
    one, two = ({name: np.zeros(n, np.float32) for name in names} for n in (1, 2))
    return len(encode(accept, two)) - len(encode(accept, one))


LINE_FORMATS = (JSONLINES, CSV)


def for_line_assembly(accept: str, body: bytes) -> bytes:
    """A response body as batch transform wants it: SageMaker's ``AssembleWith=Line`` (the pairing it
    recommends for line formats) appends a newline to each response, so a line format's last one is dropped
    to keep one line per row."""
    return body[:-1] if accept in LINE_FORMATS and body.endswith(b"\n") else body


def encode_recordio(columns: Columns) -> bytes:
    """One framed Record per row, built by filling float32 slots of a fixed byte template (no protobuf calls).

    Each column becomes a ``label`` map entry ``{name: Value{float32_tensor{values: [x]}}}``; with every
    column one float, all records have the same size, so rows are a 2-D uint8 array of copies of one record.
    """
    template, offsets = _record_template(tuple(columns))
    records = np.tile(np.frombuffer(template, dtype=np.uint8), (_n_rows(columns), 1))
    for offset, values in zip(offsets, columns.values(), strict=True):
        floats = np.ascontiguousarray(values, dtype="<f4")
        records[:, offset : offset + 4] = floats.view(np.uint8).reshape(-1, 4)
    return records.tobytes()


@functools.lru_cache(maxsize=16)
def _record_template(names: tuple[str, ...]) -> tuple[bytes, tuple[int, ...]]:
    """A framed RecordIO record whose label map holds ``names`` (values 0.0), and each value's byte offset."""
    payload = bytearray()
    offsets = []
    for name in names:
        key = name.encode()
        tensor = b"\x0a\x04" + bytes(4)  # Float32Tensor.values (field 1, packed): one float
        value = b"\x12" + _short_len(tensor) + tensor  # Value.float32_tensor (field 2)
        entry = b"\x0a" + _short_len(key) + key + b"\x12" + _short_len(value) + value  # map entry: key, value
        field = b"\x12" + _short_len(entry) + entry  # Record.label (field 2)
        offsets.append(8 + len(payload) + len(field) - 4)  # 8: RecordIO header; the float ends the field
        payload += field
    padding = bytes(-len(payload) % 4)
    return struct.pack("<II", MAGIC, len(payload)) + bytes(payload) + padding, tuple(offsets)


def _short_len(data: bytes) -> bytes:
    """A protobuf length prefix that fits one varint byte (column names are short)."""
    if len(data) > 127:
        raise ValueError(f"column name too long for the fixed RecordIO layout: {len(data)} bytes")
    return bytes([len(data)])


def _join_objects(columns: Columns, separator: bytes) -> bytes:
    """``{"a":a0,"b":b0}<separator>{"a":a1,"b":b1}...`` for at least one row."""
    keys = [orjson.dumps(name) + b":" for name in columns]
    rows = _rows(columns, [b"," + key for key in keys[1:]])
    return b"{" + keys[0] + (b"}" + separator + b"{" + keys[0]).join(rows) + b"}"


def _rows(columns: Columns, separators: list[bytes]) -> Iterable[bytes]:
    """Per row, the columns' numbers with ``separators[i]`` between column ``i`` and ``i + 1``."""
    numbers = [_numbers(values) for values in columns.values()]
    rows: Iterable[bytes] = numbers[0]
    for separator, column in zip(separators, numbers[1:], strict=True):
        rows = map(separator.join, zip(rows, column, strict=True))
    return rows


def _numbers(values: np.ndarray) -> list[bytes]:
    """Each value printed as the shortest decimal that reads back as the same float32."""
    if not len(values):
        return []
    return orjson.dumps(np.ascontiguousarray(values, dtype=np.float32), option=orjson.OPT_SERIALIZE_NUMPY)[
        1:-1
    ].split(b",")


def _n_rows(columns: Columns) -> int:
    return len(next(iter(columns.values())))


ENCODERS: dict[str, Callable[[Columns], bytes]] = {
    JSON: encode_json,
    JSONLINES: encode_jsonlines,
    CSV: encode_csv,
    RECORDIO: encode_recordio,
}
