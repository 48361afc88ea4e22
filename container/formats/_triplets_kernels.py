"""Numba kernels of the CSV triplet reader: one pass over the raw bytes that splits lines and fields, copies
the two id fields (unquoted) into one buffer and parses the value and weight fields; then the hashing that
groups equal ids without making a Python string per line; and the counting sort's placement of entries in
the on-disk matrices (``container.wals_ondisk``).

The tokenizer reads what Python's ``csv.reader(skipinitialspace=True)`` reads, for the lines it accepts:
fields split at commas, spaces at the start of a field dropped, a field that starts with a quote runs to the
closing quote (``""`` is a quote) which must be followed by a comma or the end of the line; lines end at
``\\n`` (a ``\\r`` right before it, or at the end of the data, belongs to the line end). Anything else (a quote
inside an unquoted field, text after a closing quote, a quote left open at the end of the line, a ``\\r``
elsewhere, a NUL byte) returns ``FALLBACK`` and the caller reads the body with the csv module instead.

A number is parsed here when it is ``[+-]digits[.digits][(e|E)[+-]digits]`` with at most 18 digits
(leading zeros included) and an exact fast-path conversion (mantissa <= 2**53 and |exponent| <= 22: one
correctly rounded IEEE operation, so the result equals Python's ``float``), then rounded to float32 as
``np.float32(float(s))`` does. Other texts (``" 1"``, ``1_0``, ``nan``, ``1e300``, quoted with ``""``) are
flagged for the caller, which converts them with Python's ``float``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from container.formats._text_kernels import parse_number

OK = 0
FALLBACK = 1

# Bits of the per-line ``flags``.
VALUE_PYTHON = 1  # the value field needs Python's float
WEIGHT_PYTHON = 2

QUOTE, COMMA, SPACE, CR, LF, NUL = 34, 44, 32, 13, 10, 0
CLASSES = np.zeros(256, np.uint8)  # 0: field text; 1-3: a field's end; 4-5: the csv module's job
CLASSES[[COMMA, LF, CR, QUOTE, NUL]] = [1, 2, 3, 4, 5]


@njit(cache=True, nogil=True, inline="always")
def _number(buf: np.ndarray, start: int, stop: int) -> tuple[bool, float]:
    """(parsed, value) of buf[start:stop] by the text decoders' exact parser; parsed False means: let Python's
    float decide."""
    parsed, value, after = parse_number(buf, start)
    return parsed and after == stop, value


@njit(cache=True, nogil=True)
def scan(buf: np.ndarray, line_start: np.ndarray, width: np.ndarray, id_bounds: np.ndarray, idbuf: np.ndarray,
         values: np.ndarray, weights: np.ndarray, flags: np.ndarray, classes: np.ndarray
         ) -> tuple[int, int]:
    """Tokenize every line of ``buf``. Per line i: ``line_start[i]`` (byte offset), ``width[i]`` (fields; 0
    for an empty line), the row id in ``idbuf[id_bounds[2i]:id_bounds[2i+1]]`` and the column id in
    ``idbuf[id_bounds[2i+1]:id_bounds[2i+2]]`` (quotes undone; empty when absent), ``values[i]``,
    ``weights[i]`` (1 without a 4th field) and ``flags[i]``. Returns (status, lines read)."""
    n = buf.size
    pos = 0
    line = 0
    out = 0  # write position in idbuf
    id_bounds[0] = 0
    while pos < n:
        line_start[line] = pos
        fields = 0
        weights[line] = 1.0
        values[line] = 0.0
        flags[line] = 0
        row_end = out
        col_end = out
        ended = False
        if buf[pos] == LF or (buf[pos] == CR and (pos + 1 == n or buf[pos + 1] == LF)):
            ended = True  # an empty line: no fields
            pos += 1 if buf[pos] == LF else (2 if pos + 1 < n else 1)
        while not ended:
            while pos < n and buf[pos] == SPACE:
                pos += 1
            start = pos
            escaped = False
            copy = fields < 2
            if pos < n and buf[pos] == QUOTE:
                pos += 1
                start = pos
                closed = False
                while pos < n:
                    c = buf[pos]
                    if c == QUOTE:
                        if pos + 1 < n and buf[pos + 1] == QUOTE:
                            escaped = True
                            if copy:
                                idbuf[out] = QUOTE
                                out += 1
                            pos += 2
                            continue
                        closed = True
                        break
                    if classes[c] >= 2:  # a line end or NUL inside quotes
                        return FALLBACK, line
                    if copy:
                        idbuf[out] = c
                        out += 1
                    pos += 1
                if not closed:
                    return FALLBACK, line
                stop = pos
                pos += 1  # the closing quote
                if pos < n and buf[pos] != COMMA and buf[pos] != LF and buf[pos] != CR:
                    return FALLBACK, line
            else:
                while pos < n and classes[buf[np.uint64(pos)]] == 0:
                    pos += 1
                if pos < n and classes[buf[np.uint64(pos)]] >= 4:  # a quote or NUL inside the field
                    return FALLBACK, line
                stop = pos
                if copy:
                    for q in range(start, stop):
                        idbuf[np.uint64(out)] = buf[np.uint64(q)]
                        out += 1
            if fields == 0:
                row_end = out
            elif fields == 1:
                col_end = out
            elif fields == 2 or fields == 3:
                parsed, number = (False, 0.0) if escaped else _number(buf, start, stop)
                if fields == 2:
                    values[line] = np.float32(number)
                    if not parsed:
                        flags[line] |= VALUE_PYTHON
                else:
                    weights[line] = np.float32(number)
                    if not parsed:
                        flags[line] |= WEIGHT_PYTHON
            fields += 1
            if pos >= n:
                ended = True
            elif buf[pos] == COMMA:
                pos += 1  # at the end of the data, the next pass reads one more (empty) field
            elif buf[pos] == LF:
                pos += 1
                ended = True
            elif pos + 1 == n or buf[pos + 1] == LF:  # CR LF, or CR at the end
                pos += 2
                ended = True
            else:  # a lone CR inside the line
                return FALLBACK, line
        if fields < 2:
            col_end = row_end
        width[line] = fields
        id_bounds[2 * line + 1] = row_end
        id_bounds[2 * line + 2] = col_end
        out = col_end
        line += 1
    return OK, line


@njit(cache=True, nogil=True)
def parse_ints(idbuf: np.ndarray, starts: np.ndarray, stops: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int64 of each ``idbuf[starts[i]:stops[i]]`` that is ``-?digits`` (at most 18 digits), and a mask of
    the others (for Python's int)."""
    n = starts.size
    result = np.zeros(n, np.int64)
    other = np.zeros(n, np.bool_)
    for i in range(n):
        p, stop = starts[i], stops[i]
        negative = p < stop and idbuf[p] == 45
        if negative:
            p += 1
        if p == stop or stop - p > 18:
            other[i] = True
            continue
        value = 0
        for q in range(p, stop):
            c = idbuf[q]
            if c < 48 or c > 57:
                other[i] = True
                break
            value = value * 10 + (c - 48)
        result[i] = -value if negative else value
    return result, other


@njit(cache=True, nogil=True)
def _hash(buf: np.ndarray, start: int, stop: int) -> np.uint64:
    """64-bit FNV-1a of buf[start:stop], then a murmur3 finalizer."""
    h = np.uint64(14695981039346656037)
    for q in range(start, stop):
        h = (h ^ np.uint64(buf[np.uint64(q)])) * np.uint64(1099511628211)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    return h ^ (h >> np.uint64(33))


@njit(cache=True, nogil=True)
def _group_until_full(idbuf: np.ndarray, starts: np.ndarray, stops: np.ndarray, keep: np.uint64, i: int,
                      groups: int, group: np.ndarray, table: np.ndarray, ends: np.ndarray, arena: np.ndarray
                      ) -> tuple[int, int]:
    """Group slices i, i+1, ... until the table is half full; returns (next slice, groups). Slot s of the
    table is (table[2s], table[2s+1]) = (the hash's bits, group + 1), (0, 0) when empty: a probe reads one
    cache line."""
    mask = table.size // 2 - 1
    while i < starts.size:
        a, b = starts[i], stops[i]
        h = np.int64(_hash(idbuf, a, b) & keep)
        slot = h & mask
        found = -1
        while table[2 * slot + 1] != 0:
            g = table[2 * slot + 1] - 1
            if table[2 * slot] == h and ends[g + 1] - ends[g] == b - a:
                offset = ends[g] - a
                same = True
                for q in range(a, b):
                    if arena[np.uint64(q + offset)] != idbuf[np.uint64(q)]:
                        same = False
                        break
                if same:
                    found = g
                    break
            slot = (slot + 1) & mask
        if found < 0:
            found = groups
            groups += 1
            end = ends[found]
            for q in range(a, b):
                arena[np.uint64(end)] = idbuf[np.uint64(q)]
                end += 1
            ends[found + 1] = end
            table[2 * slot] = h
            table[2 * slot + 1] = found + 1
        group[i] = found
        i += 1
        if 4 * groups > table.size:
            break
    return i, groups


@njit(cache=True, nogil=True)
def factorize(idbuf: np.ndarray, starts: np.ndarray, stops: np.ndarray, mask_bits: int
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Group equal byte strings ``idbuf[starts[i]:stops[i]]``: (group of each i, numbered by first
    occurrence; the distinct strings concatenated; their end offsets in it). An open-addressing hash table
    that doubles when half full (so it stays as small as the number of distinct ids); equal hashes are
    confirmed byte by byte. ``mask_bits`` > 0 keeps only that many bits of each hash (tests force
    collisions with it)."""
    n = starts.size
    group = np.empty(n, np.int64)
    ends = np.zeros(n + 1, np.int64)  # group g is arena[ends[g]:ends[g + 1]]
    arena = np.empty(max(1, (stops - starts).sum()), np.uint8)
    keep = np.uint64(0xFFFFFFFFFFFFFFFF) if mask_bits <= 0 else np.uint64((1 << mask_bits) - 1)
    table = np.zeros(2 * 1024, np.int64)
    i, groups = 0, 0
    while i < n:
        i, groups = _group_until_full(idbuf, starts, stops, keep, i, groups, group, table, ends, arena)
        if 4 * groups > table.size:
            old = table
            table = np.zeros(2 * old.size, np.int64)
            mask = table.size // 2 - 1
            for s in range(old.size // 2):
                if old[2 * s + 1] != 0:
                    slot = old[2 * s] & mask
                    while table[2 * slot + 1] != 0:
                        slot = (slot + 1) & mask
                    table[2 * slot] = old[2 * s]
                    table[2 * slot + 1] = old[2 * s + 1]
    return group, arena[:ends[groups]], ends[1:groups + 1].copy()


@njit(cache=True, nogil=True)
def padded(arena: np.ndarray, ends: np.ndarray, width: int) -> np.ndarray:
    """The strings ``arena[ends[g-1]:ends[g]]`` as rows of a (groups, width) zero-padded byte matrix."""
    out = np.zeros((ends.size, width), np.uint8)
    start = 0
    for g in range(ends.size):
        for q in range(start, ends[g]):
            out[g, q - start] = arena[q]
        start = ends[g]
    return out


@njit(cache=True, nogil=True)
def scatter(keys: np.ndarray, cursor: np.ndarray, ints: np.ndarray, floats: np.ndarray, extra: np.ndarray,
            out_ints: np.ndarray, out_floats: np.ndarray, out_extra: np.ndarray) -> None:
    """Entry i goes to position ``cursor[keys[i]]`` (then advanced) of the outputs: a counting sort's
    placement, stable (entries of one key keep their order). ``extra`` may be empty (then not moved)."""
    moved = extra.size > 0
    for i in range(keys.size):
        key = keys[i]
        position = cursor[key]
        cursor[key] = position + 1
        out_ints[position] = ints[i]
        out_floats[position] = floats[i]
        if moved:
            out_extra[position] = extra[i]
