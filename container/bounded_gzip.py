"""gzip decompressed in bounded chunks, the total checked against a byte limit while reading: a small file that
inflates past the memory a job may use (a gzip bomb) fails with the reason, not with the kernel's OOM kill."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import BinaryIO

from container.errors import DataError

MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20
GZIP_WBITS = 16 + zlib.MAX_WBITS  # a gzip header and trailer around the deflate stream


class TooLargeError(DataError):
    """Data larger than the memory a job may use for it."""


def iter_gunzip(stream: BinaryIO, source: str, limit: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """The decompressed bytes of the gzip ``stream``, at most ``chunk`` bytes at a time, every member (``cat a.gz
    b.gz``) and no trailing NUL padding, as ``gzip.decompress`` reads them; ``TooLargeError`` as soon as they
    pass ``limit`` bytes, ``DataError`` for corrupt or truncated data (both naming ``source``). zlib checks each
    member's CRC and length."""
    total, ended = 0, False
    inflater, fed = zlib.decompressobj(GZIP_WBITS), False
    pending = b""
    try:
        while True:
            if not pending and not ended:
                pending = stream.read(chunk)
                ended = not pending
            if not fed:  # between members: NUL padding, then the next member or the end
                pending = pending.lstrip(b"\x00")
                if not pending:
                    if ended:
                        return
                    continue
                fed = True
            block = inflater.decompress(pending, chunk)  # with nothing pending: what zlib still holds
            pending = inflater.unconsumed_tail
            total += len(block)
            if total > limit:
                raise TooLargeError(f"{source}: decompresses to more than {limit:,} bytes, more than this job "
                                    "can hold in memory (a gzip file this large must be split, or the job given "
                                    "an instance with more memory)")
            if block:
                yield block
            if inflater.eof:
                pending = inflater.unused_data  # what follows this member
                inflater, fed = zlib.decompressobj(GZIP_WBITS), False
            elif ended and not pending and not block:
                raise DataError(f"{source}: corrupt gzip data: it ends before the end of its compressed stream "
                                "(truncated)")
    except zlib.error as err:
        raise DataError(f"{source}: corrupt gzip data: {err}") from None


def gunzip(stream: BinaryIO, source: str, limit: int) -> bytes:
    """All the decompressed bytes of the gzip ``stream`` (``iter_gunzip``), at most ``limit`` of them."""
    return b"".join(iter_gunzip(stream, source, limit))
