"""Whole records and whole lines cut from a binary stream, a byte budget at a time, so a decoder made for whole
bodies reads a stream of any length with bounded memory. Each ``Chunk`` says where it starts in the stream (byte
offset, and record index or line number), so the decoder names the stream's positions in its errors.

The stream is anything with ``read(n) -> bytes`` that returns at most ``n`` bytes and ``b""`` only at its end
(a file, a FIFO, a gzip reader): short reads are normal, and a record or line split across reads is joined.
"""

from __future__ import annotations

import io
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from container.errors import DataError
from container.formats import _chunk_kernels as k
from container.formats.recordio_framing import (
    MAGIC_BYTES,
    NO_END_PART,
    bad_magic,
    error,
    truncated_header,
    truncated_payload,
    unexpected_flag,
)

READ_SIZE = 1 << 22  # bytes asked of the stream per read
MAX_UNIT_BYTES = 1 << 30  # the longest record or line read (a stream without line ends is not read whole)


class Reader(Protocol):
    def read(self, n: int, /) -> bytes: ...


@dataclass(frozen=True)
class Chunk:
    """``data``, which starts ``offset`` bytes into its stream, at record index (RecordIO) or line number
    (text, 1-based) ``first``."""

    data: memoryview
    offset: int
    first: int


class _Chunker(ABC):
    """The bytes read and not yet cut, and where they start."""

    def __init__(self, stream: Reader, first: int) -> None:
        self._stream = stream
        self._pending = bytearray()
        self._offset = 0
        self._first = first
        self._eof = False

    def _fill(self, size: int) -> None:
        """Read until ``size`` bytes are pending or the stream ends."""
        while not self._eof and len(self._pending) < size:
            data = self._stream.read(min(size - len(self._pending), READ_SIZE))
            if data:
                self._pending += data
            else:
                self._eof = True

    def _grow(self) -> None:
        """Read as much again as is pending (a record or line is longer); ``_too_long`` past MAX_UNIT_BYTES."""
        if len(self._pending) > MAX_UNIT_BYTES:
            raise self._too_long()
        self._fill(min(2 * len(self._pending), MAX_UNIT_BYTES + 1))

    @abstractmethod
    def _too_long(self) -> DataError:
        """The error for a record or line longer than MAX_UNIT_BYTES."""

    def _cut(self, end: int, items: int) -> Chunk:
        """The first ``end`` pending bytes, holding ``items`` records or line ends, as a chunk (the chunk takes
        the pending buffer; what follows ``end``, a part of one record or line, is copied out)."""
        data, self._pending = self._pending, self._pending[end:]
        del data[end:]
        chunk = Chunk(memoryview(data), self._offset, self._first)
        self._offset += end
        self._first += items
        return chunk


class RecordChunker(_Chunker):
    """Framed RecordIO cut between whole records (multi-part records kept whole). Framing faults (a wrong
    magic, a truncated or unfinished record, a misplaced multi-part flag) are ``DataError``s naming ``source``,
    the record index and its byte offset in the stream, as the whole-body decoder names them. A stream that does
    not start with the magic is a bare Record: one chunk of the whole stream."""

    def __init__(self, stream: Reader, source: str) -> None:
        super().__init__(stream, 0)
        self._source = source
        self._framed = True
        self._scan = np.zeros(6, np.int64)

    def next(self, limit: int) -> Chunk | None:
        """The next whole records from about ``limit`` bytes on (at least one record), None at the end."""
        self._fill(max(limit, 4))
        if not self._pending:
            return None
        if self._offset == 0 and not self._pending.startswith(MAGIC_BYTES):
            self._framed = False
            while not self._eof:  # a bare Record is read whole
                self._grow()
            return self._cut(len(self._pending), 1)
        while True:
            buf = np.frombuffer(self._pending, np.uint8)
            k.whole_records(buf, limit, self._eof, self._scan)
            del buf  # the bytearray cannot grow while a view of it is exported
            end, count, code, at, a, b = (int(x) for x in self._scan)
            if end > 0:
                return self._cut(end, count)
            if code != k.MORE:
                raise error(self._source, True, self._first, self._offset + at, _describe(code, a, b))
            self._grow()

    def _too_long(self) -> DataError:
        return error(self._source, self._framed, self._first, self._offset,
                     f"record longer than {MAX_UNIT_BYTES} bytes, the most one record may take (is the data "
                     "RecordIO-protobuf?)")


def _describe(code: int, a: int, b: int) -> str:
    if code == k.TRUNCATED_HEADER:
        return truncated_header(a)
    if code == k.BAD_MAGIC:
        return bad_magic(a)
    if code == k.TRUNCATED_PAYLOAD:
        return truncated_payload(a, b)
    if code == k.BAD_FLAG:
        return unexpected_flag(a, bool(b))
    return NO_END_PART


class LineChunker(_Chunker):
    """Text cut after a line end (``\\n``); the last line of a stream may have none."""

    def __init__(self, stream: Reader, source: str) -> None:
        super().__init__(stream, 1)
        self._source = source

    def next(self, limit: int) -> Chunk | None:
        """The next whole lines from about ``limit`` bytes on (at least one line), None at the end."""
        self._fill(max(limit, 1))
        searched = 0
        while True:
            end = self._pending.rfind(b"\n", searched) + 1
            if end or self._eof:
                break
            searched = len(self._pending)
            self._grow()
        if not self._pending:
            return None
        end = end or len(self._pending)
        return self._cut(end, self._pending.count(b"\n", 0, end))

    def _too_long(self) -> DataError:
        return DataError(f"{self._source}: line {self._first} (byte offset {self._offset}) has no line end within "
                         f"{MAX_UNIT_BYTES} bytes, the longest line read (is the data text?)")


def warm_up() -> None:
    """Compile (or load from cache) the RecordIO header scanner on a buffer like the chunker's."""
    RecordChunker(io.BytesIO(MAGIC_BYTES + bytes(4) + MAGIC_BYTES + bytes(4)), "warm-up").next(8)
