"""gzip decompressed in bounded chunks, the total checked against a byte limit while reading: a small file that
inflates past the memory a job may use (a gzip bomb) fails with the reason, not with the kernel's OOM kill."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Iterator
from typing import BinaryIO

from container.errors import DataError

MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20


class TooLargeError(DataError):
    """Data larger than the memory a job may use for it."""


def iter_gunzip(stream: BinaryIO, source: str, limit: int, chunk: int = CHUNK) -> Iterator[bytes]:
    """The decompressed bytes of the gzip ``stream`` (every member, as ``gzip`` reads them), ``chunk`` bytes at a
    time; ``TooLargeError`` as soon as they pass ``limit`` bytes, ``DataError`` for corrupt data (both naming
    ``source``)."""
    total = 0
    try:
        with gzip.GzipFile(fileobj=stream, mode="rb") as inflating:
            while block := inflating.read(chunk):
                total += len(block)
                if total > limit:
                    raise TooLargeError(f"{source}: decompresses to more than {limit:,} bytes, more than this job "
                                        "can hold in memory (a gzip file this large must be split, or the job "
                                        "given an instance with more memory)")
                yield block
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{source}: corrupt gzip data: {err}") from None


def gunzip(stream: BinaryIO, source: str, limit: int) -> bytes:
    """All the decompressed bytes of the gzip ``stream`` (``iter_gunzip``), at most ``limit`` of them."""
    return b"".join(iter_gunzip(stream, source, limit))
