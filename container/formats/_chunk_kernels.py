"""Numba scanner of RecordIO framing: where the whole records at the start of a buffer end, so a stream can be
cut between records. It reads the 8-byte headers only (magic, flags, length); the payloads are the decoder's.

``whole_records`` writes ``out`` (int64[6]): end (the offset just past the last whole record taken), count (whole
records before end), code, the faulty record's offset, a, b. The codes and their details mirror
``recordio_framing.frames``, which names them.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from container.formats.recordio_framing import LENGTH_MASK, MAGIC

OK = 0  # end is the first record boundary at or past the limit, or the end of the stream
MORE = 1  # the buffer ends inside a record: read more before cutting past end
TRUNCATED_HEADER = 2  # a: bytes left
BAD_MAGIC = 3  # a: the word found
TRUNCATED_PAYLOAD = 4  # a: declared length, b: bytes left
BAD_FLAG = 5  # a: cflag, b: 1 inside a multi-part record, else 0
NO_END_PART = 6


@njit(cache=True)
def _word(buf: np.ndarray, p: int) -> int:
    return int(buf[p]) | (int(buf[p + 1]) << 8) | (int(buf[p + 2]) << 16) | (int(buf[p + 3]) << 24)


@njit(cache=True)
def whole_records(buf: np.ndarray, limit: int, at_eof: bool, out: np.ndarray) -> None:
    """Walk the records of ``buf`` (which starts at a record) up to the first record boundary at or past
    ``limit``; ``at_eof``: nothing follows ``buf``, so a short record is truncated rather than unfinished
    and the last record's padding may be missing."""
    n = len(buf)
    p = 0
    start = 0
    records = 0
    inside = False
    out[:] = 0
    while True:
        if not inside:
            start = p
            out[0] = p
            out[1] = records
            if p >= limit or p == n:
                out[2] = OK if at_eof or p >= limit else MORE
                return
        elif p == n:
            out[2] = NO_END_PART if at_eof else MORE
            out[3] = start
            return
        if n - p < 8:
            out[2] = TRUNCATED_HEADER if at_eof else MORE
            out[3], out[4] = start, n - p
            return
        magic = _word(buf, p)
        if magic != MAGIC:
            out[2], out[3], out[4] = BAD_MAGIC, start, magic
            return
        lrec = _word(buf, p + 4)
        cflag, length = lrec >> 29, lrec & LENGTH_MASK
        if length > n - p - 8:
            out[2] = TRUNCATED_PAYLOAD if at_eof else MORE
            out[3], out[4], out[5] = start, length, n - p - 8
            return
        if cflag == 0 and not inside:
            records += 1
        elif cflag == 1 and not inside:
            inside = True
        elif (cflag == 2 or cflag == 3) and inside:
            if cflag == 3:
                inside = False
                records += 1
        else:
            out[2], out[3], out[4], out[5] = BAD_FLAG, start, cflag, int(inside)
            return
        padded = p + 8 + ((length + 3) & ~3)
        if padded > n and not at_eof:
            out[2] = MORE
            return
        p = min(n, padded)
