"""gzip read in bounded chunks: the limit is checked while inflating, before the data is all in memory."""

import gzip
import io
import zlib

import pytest

from container.bounded_gzip import TooLargeError, gunzip, iter_gunzip
from container.errors import DataError


def _bomb(size: int) -> bytes:
    """``size`` zero bytes, gzip-compressed (about 1000:1)."""
    deflate = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = bytes(1 << 20)
    parts = [deflate.compress(block) for _ in range(size >> 20)]
    return b"".join(parts) + deflate.flush()


def test_within_the_limit_every_member_is_read():
    body = gzip.compress(b"1,2\n") + gzip.compress(b"3,4\n")  # two members, as `cat a.gz b.gz` makes
    assert gunzip(io.BytesIO(body), "rows.csv.gz", limit=8) == b"1,2\n3,4\n"


def test_a_bomb_stops_at_the_limit_before_inflating_the_rest():
    bomb = _bomb(256 << 20)
    assert len(bomb) < 300_000
    read = []
    with pytest.raises(TooLargeError, match=r"bomb\.gz: decompresses to more than 4,194,304 bytes"):
        for block in iter_gunzip(io.BytesIO(bomb), "bomb.gz", limit=4 << 20, chunk=1 << 20):
            read.append(len(block))
    assert sum(read) == 4 << 20  # four chunks yielded, the fifth one passed the limit


@pytest.mark.parametrize("body", [gzip.compress(b"1,2\n" * 100)[:-9], b"\x1f\x8b\x08\x00garbage",
                                  gzip.compress(b"x")[:12]])
def test_corrupt_data_names_the_source(body):
    with pytest.raises(DataError, match=r"^part\.gz: corrupt gzip data") as caught:
        gunzip(io.BytesIO(body), "part.gz", limit=1 << 20)
    assert not isinstance(caught.value, TooLargeError)


@pytest.mark.parametrize("body", [gzip.compress(b"a" * 5000, mtime=0) * 3 + bytes(512),
                                  gzip.compress(bytes(range(256)) * 9000), b""])
def test_the_same_bytes_as_gzip_decompress_in_small_chunks(body):
    assert b"".join(iter_gunzip(io.BytesIO(body), "x.gz", limit=1 << 30, chunk=1000)) == gzip.decompress(body)
