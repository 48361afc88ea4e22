"""numba scanners for the common text bodies: libsvm pairs, CSV rows and sparse JSON / JSON Lines instances.

Each scanner accepts a strict subset of what its format's checking path (libsvm.py, csv.py, the orjson path
of json_requests.py) accepts and returns ``ok=False`` at anything else, the caller then running the checking
path on the whole body, which decodes what the scanner declined or names the fault.

Numbers are ``[+-]digits[.digits][(e|E)[+-]digits]`` (digits on either side of the point; JSON's stricter
grammar for JSON) whose at most 18 significant digits, read as an integer m without its trailing zeros, give
m <= 2**53 and a power of ten e within +-22: then ``m * 10**e`` (or ``m / 10**-e``) is one correctly rounded
float64 operation on two exact operands (Clinger's fast path), the same double as the checking paths'
``strtod``/orjson. Any other number makes the scanner decline.
"""

from __future__ import annotations

import numba
import numpy as np

_POW10 = np.array([10.0**i for i in range(23)])
_MAX_MANTISSA = 2**53
_NEWLINE, _HASH, _COLON, _COMMA = 10, 35, 58, 44


@numba.njit(cache=True, nogil=True, inline="always")
def _is_space(c: int) -> bool:
    return c == 32 or (9 <= c <= 13 and c != _NEWLINE)  # bytes.split()'s whitespace but "\n"


@numba.njit(cache=True, nogil=True, inline="always")
def _ends_token(c: int) -> bool:
    return c == 32 or 9 <= c <= 13 or c == _HASH


@numba.njit(cache=True, nogil=True)
def parse_number(buf: np.ndarray, pos: int) -> tuple[bool, float, int]:
    """(ok, value, position after the number) of the number at ``pos``."""
    n = buf.size
    negative = False
    if pos < n and (buf[pos] == 43 or buf[pos] == 45):  # + -
        negative = buf[pos] == 45
        pos += 1
    mantissa = 0
    significant = 0  # digits from the first non-zero one
    digits = 0
    fraction = 0  # digits after the point
    point = False
    while pos < n:
        c = buf[pos]
        if 48 <= c <= 57:
            mantissa = mantissa * 10 + (c - 48)
            digits += 1
            significant += mantissa != 0
            fraction += point
            if significant > 18:  # beyond int64; trailing zeros are not stripped yet
                return False, 0.0, pos
        elif c == 46 and not point:  # .
            point = True
        else:
            break
        pos += 1
    if digits == 0:
        return False, 0.0, pos
    exponent = -fraction
    while mantissa != 0 and mantissa % 10 == 0:  # 1.50 is 15e-1, 1000 is 1e3
        mantissa //= 10
        exponent += 1
    if mantissa > _MAX_MANTISSA:
        return False, 0.0, pos
    if pos < n and (buf[pos] == 101 or buf[pos] == 69):  # e E
        pos += 1
        exponent_negative = False
        if pos < n and (buf[pos] == 43 or buf[pos] == 45):
            exponent_negative = buf[pos] == 45
            pos += 1
        written = 0
        exponent_digits = 0
        while pos < n and 48 <= buf[pos] <= 57:
            written = written * 10 + (buf[pos] - 48)
            exponent_digits += 1
            if written > 1000:
                return False, 0.0, pos
            pos += 1
        if exponent_digits == 0:
            return False, 0.0, pos
        exponent += -written if exponent_negative else written
    value = float(mantissa)
    if mantissa != 0:
        if exponent > 22 or exponent < -22:
            return False, 0.0, pos
        value = value * _POW10[exponent] if exponent >= 0 else value / _POW10[-exponent]
    return True, -value if negative else value, pos


@numba.njit(cache=True, nogil=True)
def scan_libsvm(
    buf: np.ndarray, with_labels: bool, indices: np.ndarray, values: np.ndarray, labels: np.ndarray,
    counts: np.ndarray, lines: np.ndarray,
) -> tuple[bool, int, int, int]:
    """(ok, rows, pairs, stop) of a libsvm body: per non-blank line, ``counts[row]`` pairs into ``indices`` and
    ``values``, its 1-based line number into ``lines[row]`` and, with ``with_labels``, ``labels[row]``; without
    it, a first token with no ``:`` is skipped. ``# comments`` are skipped. Declines ``qid:``, indices that are
    not plain digits below 2**53, and numbers outside the fast path: then ``rows`` complete rows were read,
    ``stop`` is the byte offset where the declined line starts, and the caller reads the rest. Arrays must hold
    a row per line and a pair per ``:``."""
    n = buf.size
    pos = 0
    rows = 0
    pairs = 0
    line = 1
    while pos < n:
        line_start = pos
        first = True
        row_pairs = 0
        while pos < n and buf[pos] != _NEWLINE:
            c = buf[pos]
            if _is_space(c):
                pos += 1
                continue
            if c == _HASH:
                while pos < n and buf[pos] != _NEWLINE:
                    pos += 1
                break
            if first:
                first = False
                if with_labels:
                    ok, label, pos = parse_number(buf, pos)
                    if not ok or (pos < n and not _ends_token(buf[pos])):
                        return False, rows, pairs - row_pairs, line_start
                    labels[rows] = label
                    continue
                end = pos
                while end < n and not _ends_token(buf[end]) and buf[end] != _COLON:
                    end += 1
                if end == n or buf[end] != _COLON:  # a label: ignored
                    pos = end
                    continue
            index = 0
            start = pos
            while pos < n and 48 <= buf[pos] <= 57:
                index = index * 10 + (buf[pos] - 48)
                if index >= _MAX_MANTISSA:
                    return False, rows, pairs - row_pairs, line_start
                pos += 1
            if pos in (start, n) or buf[pos] != _COLON:
                return False, rows, pairs - row_pairs, line_start
            ok, value, pos = parse_number(buf, pos + 1)
            if not ok or (pos < n and not _ends_token(buf[pos])):
                return False, rows, pairs - row_pairs, line_start
            indices[pairs] = index
            values[pairs] = value
            pairs += 1
            row_pairs += 1
        if not first:
            counts[rows] = row_pairs
            lines[rows] = line
            rows += 1
        pos += 1  # past the newline
        line += 1
    return True, rows, pairs, n


@numba.njit(cache=True, nogil=True)
def scan_csv(
    buf: np.ndarray, width: int, with_labels: bool, labels: np.ndarray, data: np.ndarray, indices: np.ndarray,
    counts: np.ndarray,
) -> tuple[bool, int, int]:
    """(ok, rows, nonzeros) of a CSV body whose non-blank lines all hold ``width`` comma-separated numbers
    (spaces around them allowed): with ``with_labels`` the first into ``labels[row]``, the others' non-zero
    values as CSR (``data``, ``indices`` counted from the first feature column, ``counts[row]``). Arrays must
    hold a row per line and ``width`` values per row."""
    n = buf.size
    pos = 0
    rows = 0
    filled = 0
    first_feature = 1 if with_labels else 0
    while pos < n:
        line_start = pos
        while pos < n and _is_space(buf[pos]):
            pos += 1
        if pos == n or buf[pos] == _NEWLINE:  # blank line
            pos += 1
            continue
        if rows == counts.size:
            return False, rows, filled
        pos = line_start
        row_start = filled
        for column in range(width):
            while pos < n and _is_space(buf[pos]):
                pos += 1
            if pos + 1 < n and buf[pos] == 48 and buf[pos + 1] == _COMMA:  # a bare 0, most cells of dense rows
                value = 0.0
                pos += 1
            else:
                ok, value, pos = parse_number(buf, pos)
                if not ok:
                    return False, rows, filled
                while pos < n and _is_space(buf[pos]):
                    pos += 1
            if column == width - 1:
                if pos < n and buf[pos] != _NEWLINE:
                    return False, rows, filled
            elif pos == n or buf[pos] != _COMMA:
                return False, rows, filled
            pos += 1
            if column < first_feature:
                labels[rows] = value
            elif value != 0.0:  # the fast path's numbers are zero or at least 1e-22 in magnitude: so in float32
                if filled == data.size:
                    return False, rows, filled
                data[filled] = value
                indices[filled] = column - first_feature
                filled += 1
        counts[rows] = filled - row_start
        rows += 1
    return True, rows, filled


# --- JSON: the sparse instances of JSON and JSON Lines request bodies --------------------------------------

_INSTANCES, _DATA, _FEATURES, _KEYS, _VALUES, _SHAPE = (
    np.frombuffer(name, np.uint8).copy() for name in (b"instances", b"data", b"features", b"keys", b"values", b"shape")
)


@numba.njit(cache=True, nogil=True, inline="always")
def _json_space(buf: np.ndarray, pos: int, newlines: bool) -> int:
    """The position after JSON whitespace (without newlines for JSON Lines)."""
    n = buf.size
    while pos < n and (buf[pos] == 32 or buf[pos] == 9 or buf[pos] == 13 or (newlines and buf[pos] == _NEWLINE)):
        pos += 1
    return pos


@numba.njit(cache=True, nogil=True, inline="always")
def _json_name(buf: np.ndarray, pos: int, name: np.ndarray) -> int:
    """The position after the string ``"name"`` at ``pos`` (no escapes), or -1."""
    end = pos + name.size + 2
    if end > buf.size or buf[pos] != 34 or buf[end - 1] != 34:
        return -1
    for i in range(name.size):
        if buf[pos + 1 + i] != name[i]:
            return -1
    return end


@numba.njit(cache=True, nogil=True, inline="always")
def _json_number(buf: np.ndarray, pos: int) -> tuple[bool, float, bool, int]:
    """(ok, value, is_integer, position after) of a JSON number (RFC 8259 grammar) within the fast path.
    An integer (no fraction, no exponent) of zero is +0.0 even when written -0, as ``int`` reads it."""
    n = buf.size
    start = pos + (pos < n and buf[pos] == 45)
    if start >= n or not 48 <= buf[start] <= 57:
        return False, 0.0, False, pos
    if buf[start] == 48 and start + 1 < n and 48 <= buf[start + 1] <= 57:  # a leading zero
        return False, 0.0, False, pos
    end = start
    integer = True
    while end < n and 48 <= buf[end] <= 57:
        end += 1
    if end < n and buf[end] == 46:
        integer = False
        end += 1
        if end >= n or not 48 <= buf[end] <= 57:
            return False, 0.0, False, pos
        while end < n and 48 <= buf[end] <= 57:
            end += 1
    if end < n and (buf[end] == 101 or buf[end] == 69):
        integer = False
        end += 1
        if end < n and (buf[end] == 43 or buf[end] == 45):
            end += 1
        if end >= n or not 48 <= buf[end] <= 57:
            return False, 0.0, False, pos
        while end < n and 48 <= buf[end] <= 57:
            end += 1
    ok, value, after = parse_number(buf, pos)
    if not ok or after != end:
        return False, 0.0, False, pos
    return True, (value + 0.0 if integer else value), integer, end


@numba.njit(cache=True, nogil=True)
def _json_list(buf: np.ndarray, pos: int, newlines: bool, out: np.ndarray, filled: int,
               integers: bool) -> tuple[int, int]:
    """(position after, count) of a list of numbers written into ``out`` from ``filled`` (only integers
    when ``integers``); position -1 to decline."""
    n = buf.size
    if pos >= n or buf[pos] != 91:  # [
        return -1, 0
    pos = _json_space(buf, pos + 1, newlines)
    count = 0
    if pos < n and buf[pos] == 93:  # ]
        return pos + 1, 0
    while True:
        ok, value, integer, pos = _json_number(buf, pos)
        if not ok or (integers and not integer) or filled + count >= out.size:
            return -1, 0
        out[filled + count] = value
        count += 1
        pos = _json_space(buf, pos, newlines)
        if pos < n and buf[pos] == 44:  # ,
            pos = _json_space(buf, pos + 1, newlines)
        elif pos < n and buf[pos] == 93:
            return pos + 1, count
        else:
            return -1, 0


@numba.njit(cache=True, nogil=True)
def _json_open(buf: np.ndarray, pos: int, newlines: bool, name: np.ndarray) -> int:
    """The position after ``{ "name" :`` and whitespace, or -1."""
    if pos >= buf.size or buf[pos] != 123:  # {
        return -1
    pos = _json_name(buf, _json_space(buf, pos + 1, newlines), name)
    if pos < 0:
        return -1
    pos = _json_space(buf, pos, newlines)
    if pos >= buf.size or buf[pos] != _COLON:
        return -1
    return _json_space(buf, pos + 1, newlines)


@numba.njit(cache=True, nogil=True)
def _json_close(buf: np.ndarray, pos: int, newlines: bool) -> int:
    """The position after whitespace and ``}``, or -1."""
    if pos < 0:
        return -1
    pos = _json_space(buf, pos, newlines)
    return pos + 1 if pos < buf.size and buf[pos] == 125 else -1


@numba.njit(cache=True, nogil=True)
def _json_instance(
    buf: np.ndarray, pos: int, newlines: bool, keys: np.ndarray, values: np.ndarray, filled: int,
    shape: np.ndarray,
) -> tuple[int, int]:
    """(position after, pairs) of ``{"data": {"features": {"keys": [...], "values": [...], "shape": [d]}}}``
    (members in any order, shape optional); the shape, or -1, into ``shape[0]``. Position -1 to decline."""
    n = buf.size
    pos = _json_open(buf, pos, newlines, _DATA)
    if pos >= 0:
        pos = _json_open(buf, pos, newlines, _FEATURES)
    if pos < 0 or pos >= n or buf[pos] != 123:
        return -1, 0
    pos = _json_space(buf, pos + 1, newlines)
    seen = 0
    n_keys = n_values = 0
    shape[0] = -1
    while True:
        member = 0
        after = _json_name(buf, pos, _KEYS)
        if after < 0:
            member = 1
            after = _json_name(buf, pos, _VALUES)
        if after < 0:
            member = 2
            after = _json_name(buf, pos, _SHAPE)
        if after < 0 or seen & (1 << member):
            return -1, 0
        seen |= 1 << member
        pos = _json_space(buf, after, newlines)
        if pos >= n or buf[pos] != _COLON:
            return -1, 0
        pos = _json_space(buf, pos + 1, newlines)
        if member == 0:
            pos, n_keys = _json_list(buf, pos, newlines, keys, filled, True)
        elif member == 1:
            pos, n_values = _json_list(buf, pos, newlines, values, filled, False)
        else:
            pos, count = _json_list(buf, pos, newlines, shape, 0, True)
            if count != 1 or shape[0] < 0:  # -1 is declined: it would read as "no shape"
                return -1, 0
        if pos < 0:
            return -1, 0
        pos = _json_space(buf, pos, newlines)
        if pos < n and buf[pos] == 44:
            pos = _json_space(buf, pos + 1, newlines)
        else:
            break
    if seen & 3 != 3 or n_keys != n_values or n_keys == 0:
        return -1, 0
    pos = _json_close(buf, pos, newlines)
    pos = _json_close(buf, pos, newlines)
    pos = _json_close(buf, pos, newlines)
    return pos, n_keys


@numba.njit(cache=True, nogil=True)
def scan_json(
    buf: np.ndarray, lines: bool, keys: np.ndarray, values: np.ndarray, counts: np.ndarray
) -> tuple[bool, int, int, float, int]:
    """(ok, rows, pairs, shape, stop) of a body of sparse instances: ``{"instances": [...]}`` (or, with
    ``lines``, one instance per non-blank line). Keys (float64 holding integers) and values row after row, the
    pairs of each row in ``counts``; ``shape`` is every instance's shape, -1 if none has one. Declines other
    shapes, mixed shapes, other members, escapes and numbers outside the fast path: then ``rows`` instances
    (with ``pairs`` and ``shape``) were read and ``stop`` is the byte offset where the declined instance starts
    (-1 when the decline is outside the instances: nothing read is usable)."""
    n = buf.size
    rows = 0
    filled = 0
    width = -2.0
    shape = np.empty(1)
    newlines = not lines
    if lines:
        pos = _json_space(buf, 0, True)
    else:
        pos = _json_open(buf, _json_space(buf, 0, True), True, _INSTANCES)
        if pos < 0 or pos >= n or buf[pos] != 91:  # [
            return False, 0, 0, 0.0, -1
        pos = _json_space(buf, pos + 1, True)
    while pos < n:
        start = pos
        if rows >= counts.size:
            return False, 0, 0, 0.0, -1
        pos, count = _json_instance(buf, pos, newlines, keys, values, filled, shape)
        if pos < 0 or (width != -2.0 and shape[0] != width):
            return False, rows, filled, width, start
        if lines:
            pos = _json_space(buf, pos, False)
            if pos < n and buf[pos] != _NEWLINE:
                return False, rows, filled, width, start
            pos = _json_space(buf, pos, True)
        else:
            pos = _json_space(buf, pos, True)
            if pos < n and buf[pos] == 44:
                pos = _json_space(buf, pos + 1, True)
            elif pos < n and buf[pos] == 93:
                pos = _json_close(buf, pos + 1, True)
                if pos < 0 or _json_space(buf, pos, True) != n:
                    return False, 0, 0, 0.0, -1
                counts[rows] = count
                return True, rows + 1, filled + count, shape[0], n
            else:
                return False, rows, filled, width, start
        width = shape[0]
        counts[rows] = count
        rows += 1
        filled += count
    if not lines:
        return False, rows, filled, width, n
    return rows > 0, rows, filled, width, n
