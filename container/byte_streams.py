"""The byte layers under a channel's content, read as streams: a reader that shows its first bytes before they
are consumed, gzip decompressed as it is read (bounded output per read), and Pipe mode's
``RecordWrapperType=RecordIO`` unwrapped into one stream per S3 object. Faults of these layers are
``StreamError``s naming the source (and, for the wrapper, the record index and byte offset)."""

from __future__ import annotations

import gzip
import struct
import zlib
from collections.abc import Iterator

from container.errors import DataError
from container.formats.chunking import READ_SIZE, Reader
from container.formats.recordio_framing import (
    LENGTH_MASK,
    MAGIC,
    bad_magic,
    error,
    truncated_header,
    truncated_payload,
    unexpected_flag,
)

GZIP_MAGIC = b"\x1f\x8b"


class StreamError(DataError):
    """Bytes that do not make a stream: corrupt gzip, a broken RecordIO wrapper."""


class Peekable:
    """``stream`` with ``peek``: its next bytes, still to be read."""

    def __init__(self, stream: Reader) -> None:
        self._stream = stream
        self._head = bytearray()

    def peek(self, n: int) -> bytes:
        """The next ``n`` bytes (fewer at the end of the stream), left to be read."""
        while len(self._head) < n:
            data = self._stream.read(min(n - len(self._head), READ_SIZE))
            if not data:
                break
            self._head += data
        return bytes(self._head[:n])

    def read(self, n: int) -> bytes:
        if not self._head:
            return self._stream.read(n)
        data = bytes(self._head[:n])
        del self._head[:n]
        return data


def read_exact(stream: Reader, n: int) -> bytes:
    """``n`` bytes of ``stream``, fewer only at its end."""
    out = bytearray()
    while len(out) < n:
        data = stream.read(min(n - len(out), READ_SIZE))
        if not data:
            break
        out += data
    return bytes(out)


def read_all(stream: Reader) -> bytes:
    """The rest of ``stream``."""
    out = bytearray()
    while data := stream.read(READ_SIZE):
        out += data
    return bytes(out)


class _Gunzipped:
    """The decompressed bytes of a gzip stream (members concatenated, as ``gzip.decompress`` reads them)."""

    def __init__(self, stream: Peekable, source: str) -> None:
        self._file = gzip.GzipFile(fileobj=stream, mode="rb")  # type: ignore[call-overload]  # reads never seek
        self._source = source

    def read(self, n: int) -> bytes:
        try:
            return self._file.read(n)
        except (OSError, EOFError, zlib.error) as err:
            raise StreamError(f"{self._source}: corrupt gzip data: {err}") from None


def gunzipped(stream: Peekable, source: str) -> Peekable:
    """``stream`` decompressed as it is read when it starts with gzip's magic number, else ``stream``."""
    if stream.peek(len(GZIP_MAGIC)) != GZIP_MAGIC:
        return stream
    return Peekable(_Gunzipped(stream, source))


class _WrappedObject:
    """The payload of the RecordIO record at ``offset`` (record ``index``) of ``stream``, as a stream; the parts
    of a multi-part record joined as ``recordio_framing.iter_payloads`` joins them."""

    def __init__(self, stream: Reader, source: str, index: int, offset: int) -> None:
        self._stream, self._source, self._index, self._offset = stream, source, index, offset
        self.end = offset  # the stream offset read up to
        self._length = self._left = self._padding = 0
        self._last = self._done = False
        self._inside = False
        self._header()

    def _error(self, what: str) -> StreamError:
        return StreamError(str(error(self._source, True, self._index, self._offset, what)))

    def _take(self, n: int) -> bytes:
        data = read_exact(self._stream, n)
        self.end += len(data)
        return data

    def _header(self) -> None:
        header = self._take(8)
        if len(header) < 8:
            raise self._error(truncated_header(len(header)))
        magic, lrec = struct.unpack("<II", header)
        if magic != MAGIC:
            raise self._error(bad_magic(magic))
        cflag, length = lrec >> 29, lrec & LENGTH_MASK
        self._length = self._left = length
        self._padding = -length % 4
        if cflag == 0 and not self._inside:
            self._last = True
        elif cflag == 1 and not self._inside:
            self._inside = True
        elif cflag in (2, 3) and self._inside:
            self._last = cflag == 3
        else:
            self._skip_payload()
            raise self._error(unexpected_flag(cflag, self._inside))

    def _skip_payload(self) -> None:
        while self._left:
            data = self._take(min(self._left, READ_SIZE))
            if not data:
                raise self._error(truncated_payload(self._length, self._length - self._left))
            self._left -= len(data)

    def read(self, n: int) -> bytes:
        while not self._left:
            if self._done:
                return b""
            self._take(self._padding)  # the last record's padding may be missing
            self._padding = 0
            if self._last:
                self._done = True
                return b""
            self._header()
        data = self._stream.read(min(n, self._left))
        if not data:
            raise self._error(truncated_payload(self._length, self._length - self._left))
        self._left -= len(data)
        self.end += len(data)
        return data

    def drain(self) -> None:
        """Read what the consumer left, up to the next record."""
        while self.read(READ_SIZE):
            pass


def unwrapped(stream: Peekable, source: str) -> Iterator[Peekable]:
    """Each S3 object of a ``RecordWrapperType=RecordIO`` stream, in order: the payload of one record."""
    index = offset = 0
    while stream.peek(1):
        wrapped = _WrappedObject(stream, source, index, offset)
        yield Peekable(wrapped)
        wrapped.drain()
        index, offset = index + 1, wrapped.end
