"""RecordIO framing and whole-Record parsing with the protobuf library: no numba, so the client reads and
frames RecordIO with the same code as the container.

Each record is ``uint32 magic 0xCED7230A`` (little-endian), ``uint32 lrec`` (``cflag = lrec >> 29``,
``length = lrec & (2**29 - 1)``), the payload, then zero padding to 4 bytes. Multi-part records (cflag 1
start, 2 middle, 3 end) are joined as MLIO does (parts concatenated); if that does not parse, the 4 magic
bytes are re-inserted between parts as DMLC does. Errors are ``DataError`` naming the source, the 0-based
record index and the record's byte offset.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import BinaryIO

from google.protobuf.message import DecodeError

from container.errors import DataError
from container.formats.record_pb2 import Record

MAGIC = 0xCED7230A
MAGIC_BYTES = struct.pack("<I", MAGIC)  # b"\x0a\x23\xd7\xce"
LENGTH_MASK = (1 << 29) - 1
NOT_A_RECORD = "not a valid aialgs.data.Record protobuf"


def truncated_header(left: int) -> str:
    return f"truncated record header ({left} bytes left, need 8)"


def bad_magic(word: int) -> str:
    return f"wrong magic 0x{word:08x}, expected 0x{MAGIC:08x} (is this RecordIO-protobuf?)"


def truncated_payload(declared: int, left: int) -> str:
    return f"truncated record: header says {declared} bytes but only {left} remain"


def unexpected_flag(cflag: int, inside: bool) -> str:
    return f"unexpected multi-part flag cflag={cflag} ({'inside' if inside else 'outside'} a multi-part record)"


NO_END_PART = "multi-part record has no end part (cflag=3)"


def error(source: str, framed: bool, index: int, offset: int, what: str) -> DataError:
    """A ``DataError`` locating ``what`` at record ``index`` (byte ``offset``) of ``source``."""
    if not framed:
        where = "body (a bare Record: it does not start with the RecordIO magic 0a 23 d7 ce)"
    else:
        where = f"record {index} (byte offset {offset})"
    return DataError(f"{source}: {where}: {what}")


def frames(
    buf: memoryview, framed: bool, source: str, first_record: int = 0, first_byte: int = 0
) -> Iterator[tuple[int, int, list[bytes]]]:
    """(record index, byte offset, payload parts) for each record, multi-part records gathered; an unframed
    body is one record. A body that is a piece of a longer stream counts its records from ``first_record``
    at byte ``first_byte``."""
    if not framed:
        yield first_record, first_byte, [bytes(buf)]
        return
    n = len(buf)
    p = start = 0
    index = first_record
    parts: list[bytes] = []
    while p < n:
        if not parts:
            start = p
        at = start + first_byte
        if n - p < 8:
            raise error(source, framed, index, at, truncated_header(n - p))
        magic, lrec = struct.unpack_from("<II", buf, p)
        if magic != MAGIC:
            raise error(source, framed, index, at, bad_magic(magic))
        cflag, length = lrec >> 29, lrec & LENGTH_MASK
        if length > n - p - 8:
            raise error(source, framed, index, at, truncated_payload(length, n - p - 8))
        part = bytes(buf[p + 8 : p + 8 + length])
        if cflag == 0 and not parts:
            yield index, at, [part]
            index += 1
        elif cflag == 1 and not parts:
            parts = [part]
        elif cflag in (2, 3) and parts:
            parts.append(part)
            if cflag == 3:
                yield index, at, parts
                parts = []
                index += 1
        else:
            raise error(source, framed, index, at, unexpected_flag(cflag, bool(parts)))
        p = min(n, p + 8 + ((length + 3) & ~3))
    if parts:
        raise error(source, framed, index, start + first_byte, NO_END_PART)


def parse(parts: list[bytes]) -> Record | None:
    """The Record in the joined parts (MLIO join, then DMLC join with magic re-inserted); None if invalid."""
    joins = [b"".join(parts)] + ([MAGIC_BYTES.join(parts)] if len(parts) > 1 else [])
    for payload in joins:
        record = Record()
        try:
            record.ParseFromString(payload)
        except DecodeError:
            continue
        return record
    return None


def read_records(file: BinaryIO) -> list[Record]:
    """Every Record of a framed RecordIO-protobuf stream, like the SageMaker SDK's ``read_records``.

    Unlike the SDK this joins multi-part records and raises DataError (not AssertionError) on a bad magic.
    """
    source = str(getattr(file, "name", "stream"))
    records = []
    for index, offset, parts in frames(memoryview(file.read()).cast("B"), True, source):
        record = parse(parts)
        if record is None:
            raise error(source, True, index, offset, NOT_A_RECORD)
        records.append(record)
    return records


def frame_records(payloads: Iterable[bytes]) -> bytes:
    """Frame serialized Records as single-part RecordIO records (magic, length, payload, zero padding)."""
    out = bytearray()
    for payload in payloads:
        out += struct.pack("<II", MAGIC, len(payload))
        out += payload
        out += b"\x00" * (-len(payload) % 4)
    return bytes(out)


def iter_payloads(body: bytes | memoryview, *, source: str) -> Iterator[bytes]:
    """The payload of each framed record (multi-part records joined without magic), e.g. to unwrap
    Pipe mode's ``RecordWrapperType=RecordIO``, where each payload is a whole S3 object."""
    for _, _, parts in frames(memoryview(body).cast("B"), True, source):
        yield b"".join(parts)
