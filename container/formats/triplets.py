"""WALS input: matrix entries as triplets, from ``text/csv`` lines or RecordIO-protobuf in FM's one-hot
layout.

CSV (``row,col,value[,weight]``, RFC 4180 quoting, no line breaks inside fields): ids are text taken as
written (a space after a comma is dropped), value and weight are numbers. The first non-blank line is a
header, and skipped, when its value field is not a number (``row,col,value``, ``user,item,rating``, ...).
Blank lines are skipped. A line without the weight field has weight 1. When ``num_rows`` (``num_cols``) is
given, row (column) ids must be integers in [0, num_rows): they are then the matrix indices themselves;
otherwise they come back as sorted distinct names and an index per entry. A numba tokenizer reads the bytes;
bodies it cannot read exactly as the csv module does go to the csv module (``decode_triplets_csv_simple``).

RecordIO-protobuf: each record is one entry, with exactly two feature keys ``[row, num_rows + col]`` (the
layout of a one-hot FM data set over users then items; feature values are ignored), ``label['values']``
the value and the optional ``label['weight']`` the entry's weight. ``num_rows`` is required.

Values and weights must be finite, weights >= 0. Errors are ``DataError`` naming the source and the line
(CSV, 1-based; the lowest bad line) or record (RecordIO, 0-based).
"""

from __future__ import annotations

import codecs
import csv
import io
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from container.errors import DataError
from container.formats import _triplets_kernels as kernels
from container.formats.recordio import decode_recordio

CHUNK_LINES = 1 << 20  # lines per batch of the csv-module reader: bounds the memory of its per-line lists
FIELDS = "row,col,value[,weight]"
HASH_BITS = 0  # > 0: keep only that many bits of the id hashes (tests force collisions with it)


@dataclass(frozen=True)
class Triplets:
    """Entries (rows[i], cols[i], values[i]) with optional per-entry ``weights`` (None: all 1).

    ``rows`` and ``cols`` are int64. With ``row_names`` (``col_names``) set, they index it: the names are the
    distinct ids as written (strings), sorted by code point. Without names they are the ids themselves
    (matrix indices: RecordIO, or CSV with num_rows/num_cols given).
    """

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    weights: np.ndarray | None = None
    row_names: np.ndarray | None = None
    col_names: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.values)

    def row_ids(self) -> np.ndarray:
        """The row id of every entry (names, or the indices)."""
        return self.rows if self.row_names is None else self.row_names[self.rows]

    def col_ids(self) -> np.ndarray:
        """The column id of every entry (names, or the indices)."""
        return self.cols if self.col_names is None else self.col_names[self.cols]


def _factorize(ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct ids, int64 index of each id among them)."""
    names, codes = np.unique(ids, return_inverse=True)
    return names, codes.astype(np.int64)


def _merge(names: list[np.ndarray | None], codes: list[np.ndarray]) -> tuple[np.ndarray | None, np.ndarray]:
    """One names array for several parts and their codes renumbered into it (ints stay as they are)."""
    given = [n for n in names if n is not None]
    if not given:
        return None, np.concatenate(codes)
    union: np.ndarray = np.unique(np.concatenate(given))
    return union, np.concatenate([np.searchsorted(union, n)[c] for n, c in zip(given, codes, strict=True)])


def concatenate(parts: Sequence[Triplets]) -> Triplets:
    """One Triplets of all ``parts`` in order (weights 1 where a part has none); all parts have names, or none
    has."""
    if len(parts) == 1:
        return parts[0]
    weighted = any(p.weights is not None for p in parts)
    row_names, rows = _merge([p.row_names for p in parts], [p.rows for p in parts])
    col_names, cols = _merge([p.col_names for p in parts], [p.cols for p in parts])
    return Triplets(
        rows=rows, cols=cols, values=np.concatenate([p.values for p in parts]),
        weights=np.concatenate([np.ones(len(p), np.float32) if p.weights is None else p.weights
                                for p in parts]) if weighted else None,
        row_names=row_names, col_names=col_names,
    )


def _triplets(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, weights: np.ndarray | None) -> Triplets:
    """Triplets of raw id arrays: string ids become names and codes, int64 ids stay."""
    row_names, col_names = None, None
    if rows.dtype.kind not in "iu":
        row_names, rows = _factorize(rows)
    if cols.dtype.kind not in "iu":
        col_names, cols = _factorize(cols)
    return Triplets(rows, cols, values, weights, row_names, col_names)


def _text(body: bytes | memoryview, source: str, first_byte: int = 0) -> str:
    try:
        return bytes(body).decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{source}: not UTF-8 text at byte {first_byte + err.start}") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _numbers(cells: list[str], lines: np.ndarray, what: str, source: str, nonnegative: bool) -> np.ndarray:
    try:
        with np.errstate(over="ignore"):  # beyond float32: inf, refused below
            values = np.array(cells, dtype=np.float32)
    except ValueError:
        bad = next(i for i, cell in enumerate(cells) if not _is_number(cell))
        raise DataError(f"{source}: line {lines[bad]}{_not_a_number(what, cells[bad])}") from None
    wrong = ~np.isfinite(values) | (values < 0) if nonnegative else ~np.isfinite(values)
    if wrong.any():
        bad = int(np.flatnonzero(wrong)[0])
        raise DataError(f"{source}: line {lines[bad]}{_broken_rule(what, cells[bad], nonnegative)}")
    return values


# The messages of both readers, after "<source>: line <n>".

def _not_a_number(what: str, cell: str) -> str:
    return f": {what} {cell[:40]!r} is not a number"


def _broken_rule(what: str, cell: str, nonnegative: bool) -> str:
    return f": {what} {cell!r} must be {'finite and >= 0' if nonnegative else 'finite'}"


def _not_integer(what: str, cell: str, name: str) -> str:
    return f": {what} id {cell[:40]!r} is not an integer; with {name} set, {what} ids must be integers in [0, {name})"


def _outside(what: str, index: int, declared: int, name: str) -> str:
    return f": {what} id {index} is outside [0, {declared}) ({name}={declared})"


def _is_int64(text: str) -> bool:
    try:
        return -(2**63) <= int(text) < 2**63
    except ValueError:
        return False


def _ids(cells: list[str], lines: np.ndarray, what: str, declared: int | None, name: str,
         source: str) -> np.ndarray:
    ids = np.array(cells, dtype=str)
    empty = np.flatnonzero(ids == "")
    if empty.size:
        raise DataError(f"{source}: line {lines[empty[0]]}: the {what} id is empty")
    if declared is None:
        return ids
    try:
        indices = ids.astype(np.int64)
    except (ValueError, OverflowError):
        bad = next(i for i, cell in enumerate(cells) if not _is_int64(cell))
        raise DataError(f"{source}: line {lines[bad]}{_not_integer(what, cells[bad], name)}") from None
    outside = np.flatnonzero((indices < 0) | (indices >= declared))
    if outside.size:
        bad = int(outside[0])
        raise DataError(f"{source}: line {lines[bad]}{_outside(what, int(indices[bad]), declared, name)}")
    return indices


def _is_header(record: list[str]) -> bool:
    return len(record) >= 3 and not _is_number(record[2])


# ----------------------------------------------------------------------------- the csv-module reader

Columns = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]


def _csv_chunk(records: list[list[str]], first_line: int, source: str, num_rows: int | None,
               num_cols: int | None, nonnegative_values: bool) -> Columns | None:
    widths = np.fromiter(map(len, records), np.int64, len(records))
    blank = widths == 0
    for i in np.flatnonzero(widths == 1):
        blank[i] = not records[i][0].strip()
    keep = np.flatnonzero(~blank)
    bad = keep[(widths[keep] < 3) | (widths[keep] > 4)]
    if bad.size:
        raise DataError(f"{source}: line {first_line + bad[0]} has {widths[bad[0]]} fields; "
                        f"expected {FIELDS}")
    if not keep.size:
        return None
    lines = keep + first_line
    kept = [records[i] for i in keep]
    weighted = bool((widths[keep] == 4).any())
    return (
        _ids([r[0] for r in kept], lines, "row", num_rows, "num_rows", source),
        _ids([r[1] for r in kept], lines, "col", num_cols, "num_cols", source),
        _numbers([r[2] for r in kept], lines, "value", source, nonnegative=nonnegative_values),
        _numbers([r[3] if len(r) == 4 else "1" for r in kept], lines, "weight", source,
                 nonnegative=True) if weighted else None,
    )


def _empty(num_rows: int | None, num_cols: int | None) -> Triplets:
    return _triplets(np.zeros(0, np.int64 if num_rows else str), np.zeros(0, np.int64 if num_cols else str),
                     np.zeros(0, np.float32), None)


def decode_triplets_csv_simple(body: bytes | memoryview, *, source: str, num_rows: int | None = None,
                               num_cols: int | None = None, nonnegative_values: bool = False,
                               first_line: int = 1, first_byte: int = 0, header: bool = True) -> Triplets:
    """``decode_triplets_csv`` with Python's csv module, a batch of lines at a time: what the fast reader
    falls back to for the lines it leaves to the csv module (and its reference in the tests)."""
    reader = csv.reader(io.StringIO(_text(body, source, first_byte)), skipinitialspace=True)
    parts: list[Columns] = []
    line = first_line
    try:
        while chunk := list(itertools.islice(reader, CHUNK_LINES)):
            if header and line == first_line:
                text = next((r for r in chunk if any(c.strip() for c in r)), None)
                if text is not None and _is_header(text):
                    text.clear()  # an empty record is a blank line
            part = _csv_chunk(chunk, line, source, num_rows, num_cols, nonnegative_values)
            if part is not None:
                parts.append(part)
            line += len(chunk)
    except csv.Error as err:
        raise DataError(f"{source}: line {first_line - 1 + reader.line_num}: {err}") from None
    if not parts:
        return _empty(num_rows, num_cols)
    weighted = any(p[3] is not None for p in parts)
    rows, cols, values = (np.concatenate([p[i] for p in parts]) for i in range(3))
    return _triplets(rows, cols, values,
                     np.concatenate([np.ones(len(p[2]), np.float32) if p[3] is None else p[3] for p in parts])
                     if weighted else None)


# ----------------------------------------------------------------------------- the fast reader


class _Lines:
    """The tokenized body: per line its start, field count, id slices, value, weight and flags
    (``_triplets_kernels.scan``); ``entries`` then narrows every per-line array to the lines with data."""

    def __init__(self, data: bytes, header: bool = True) -> None:
        self.data = data
        self.header = header
        buf = np.frombuffer(data, np.uint8)
        n = data.count(b"\n") + 1
        self.start = np.empty(n, np.int64)
        self.width = np.empty(n, np.int64)
        self.bounds = np.empty(2 * n + 1, np.int64)
        self.idbuf = np.empty(buf.size, np.uint8)
        self.values = np.empty(n, np.float32)
        self.weights = np.empty(n, np.float32)
        self.flags = np.empty(n, np.uint8)
        status, self.n = kernels.scan(buf, self.start, self.width, self.bounds, self.idbuf, self.values,
                                      self.weights, self.flags, kernels.CLASSES)
        self.ok = status == kernels.OK
        self.line = np.arange(self.n)  # the 0-based line of each entry

    def record(self, line: int) -> list[str]:
        """A line as the csv module reads it."""
        start = int(self.start[line])
        stop = self.data.find(b"\n", start)
        return next(csv.reader([self.data[start:None if stop < 0 else stop].decode()], skipinitialspace=True), [])

    def _text(self, start: int, stop: int) -> str:
        return self.idbuf[start:stop].tobytes().decode()

    def _blank(self) -> np.ndarray:
        """Lines without fields, or with one blank field, and the header line."""
        blank = self.width[:self.n] == 0
        for i in np.flatnonzero(self.width[:self.n] == 1):
            blank[i] = not self._text(int(self.bounds[2 * i]), int(self.bounds[2 * i + 1])).strip()
        # the first line with text is a header when its value is no number (and the body may start with one)
        for i in np.flatnonzero(~blank) if self.header else ():
            record = self.record(int(i))
            if any(c.strip() for c in record):
                blank[i] = _is_header(record)
                break
        return blank

    def entries(self) -> None:
        """Keep the lines that hold an entry (or a mistake): drop blank lines and the header."""
        blank = self._blank()
        n = self.n
        starts, stops = self.bounds[:2 * n], self.bounds[1:2 * n + 1]
        if blank.any():
            self.line = np.flatnonzero(~blank)
            starts, stops = starts.reshape(n, 2)[self.line], stops.reshape(n, 2)[self.line]
        else:
            starts, stops = starts.reshape(n, 2), stops.reshape(n, 2)
        self.id_starts, self.id_stops = starts.T.copy(), stops.T.copy()  # [side, entry]
        take = self.line if blank.any() else slice(0, n)
        self.width, self.values = self.width[take], self.values[take]
        self.weights, self.flags = self.weights[take], self.flags[take]

    def id_text(self, entry: int, side: int) -> str:
        """The row (side 0) or column (side 1) id of an entry."""
        return self._text(int(self.id_starts[side, entry]), int(self.id_stops[side, entry]))


class _FirstError:
    """The problem of the lowest line (fields, then row id, col id, value, weight within a line)."""

    def __init__(self, lines: _Lines, source: str, first_line: int) -> None:
        self.lines = lines
        self.source = source
        self.first_line = first_line
        self.best: tuple[int, int, str] | None = None

    def add(self, entry: int, rank: int, message: str) -> None:
        """The problem of an entry: ``message`` is prefixed with the source and its line."""
        line = int(self.lines.line[entry]) + self.first_line
        if self.best is None or (line, rank) < self.best[:2]:
            self.best = (line, rank, f"{self.source}: line {line}{message}")

    def raise_it(self) -> None:
        if self.best is not None:
            raise DataError(self.best[2])


def _names(arena: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(the distinct ids as sorted strings, the rank of each group among them) from the groups' bytes.

    ASCII ids that fit a fixed-width byte matrix of a few times their size are sorted as bytes and converted
    in numpy; others are decoded one by one (UTF-8 byte order is code point order either way)."""
    lengths = np.diff(ends, prepend=0)
    width = int(lengths.max(initial=1))
    if ends.size * width <= 4 * arena.size + (1 << 20) and not (arena & 0x80).any():
        keys = kernels.padded(arena, ends, width).view(f"S{width}").ravel()
        order = np.argsort(keys, kind="stable")
        names = keys[order].astype(str)
    else:
        blob = arena.tobytes()
        text = np.array([blob[a:b].decode() for a, b in itertools.pairwise([0, *ends.tolist()])], dtype=str)
        order = np.argsort(text, kind="stable")
        names = text[order]
    rank = np.empty(order.size, np.int64)
    rank[order] = np.arange(order.size)
    return names, rank


def _string_ids(lines: _Lines, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(sorted distinct ids, index of each entry's id among them), grouping the id bytes in numba."""
    group, arena, ends = kernels.factorize(lines.idbuf, lines.id_starts[side], lines.id_stops[side], HASH_BITS)
    names, rank = _names(arena, ends)
    return names, rank[group]


def _declared_ids(lines: _Lines, side: int, declared: int, errors: _FirstError) -> np.ndarray:
    what, name = ("row", "num_rows") if side == 0 else ("col", "num_cols")
    ids, other = kernels.parse_ints(lines.idbuf, lines.id_starts[side], lines.id_stops[side])
    for i in np.flatnonzero(other):  # Python's int: "+7", "07", " 7", "1_000", ...
        text = lines.id_text(int(i), side)
        if not _is_int64(text):
            errors.add(int(i), 1 + side, _not_integer(what, text, name))
            break
        ids[i] = int(text)
    outside = np.flatnonzero((ids < 0) | (ids >= declared))
    if outside.size:
        bad = int(outside[0])
        errors.add(bad, 1 + side, _outside(what, int(ids[bad]), declared, name))
    return ids


def _checked_numbers(lines: _Lines, field: int, nonnegative: bool, errors: _FirstError) -> np.ndarray:
    """Value (field 2) or weight (field 3) of the entries: Python's float where the kernel left the text,
    then the finite (and >= 0) rule."""
    what, numbers, flag = ("value", lines.values, kernels.VALUE_PYTHON) if field == 2 else (
        "weight", lines.weights, kernels.WEIGHT_PYTHON)
    python = np.flatnonzero(lines.flags & flag)
    if field == 3:
        python = python[lines.width[python] == 4]
    for i in python:
        cell = lines.record(int(lines.line[i]))[field]
        if not _is_number(cell):
            errors.add(int(i), field + 1, _not_a_number(what, cell))
            break
        with np.errstate(over="ignore"):  # beyond float32: inf, refused below
            numbers[i] = np.float32(float(cell))
    wrong = ~np.isfinite(numbers) | (numbers < 0) if nonnegative else ~np.isfinite(numbers)
    if wrong.any():
        bad = int(np.flatnonzero(wrong)[0])
        cell = lines.record(int(lines.line[bad]))[field]
        errors.add(bad, field + 1, _broken_rule(what, cell, nonnegative))
    return numbers


def decode_triplets_csv(body: bytes | memoryview, *, source: str, num_rows: int | None = None,
                        num_cols: int | None = None, nonnegative_values: bool = False, first_line: int = 1,
                        first_byte: int = 0, header: bool = True) -> Triplets:
    """CSV ``row,col,value[,weight]`` lines (see the module docstring) as Triplets; ``nonnegative_values``
    also rejects values < 0 (the implicit form's counts).

    A part of a longer text (``chunking.LineChunker``) gives the line and byte its body starts at in the source,
    for the error messages, and ``header=False`` when a line with text came before it (so no header).

    The numba tokenizer reads the bytes in one pass (``_triplets_kernels``); a body it cannot read exactly as
    the csv module would (a stray quote or carriage return) goes to ``decode_triplets_csv_simple``. The error
    reported is the one of the lowest line."""
    data = bytes(body)
    if not data.isascii():
        _text(data, source, first_byte)  # UTF-8 check
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    lines = _Lines(data, header)
    if not lines.ok:
        return decode_triplets_csv_simple(body, source=source, num_rows=num_rows, num_cols=num_cols,
                                          nonnegative_values=nonnegative_values, first_line=first_line,
                                          first_byte=first_byte, header=header)
    lines.entries()
    if not lines.line.size:
        return _empty(num_rows, num_cols)
    errors = _FirstError(lines, source, first_line)
    bad = np.flatnonzero((lines.width < 3) | (lines.width > 4))
    if bad.size:
        errors.add(int(bad[0]), 0, f" has {lines.width[bad[0]]} fields; expected {FIELDS}")
    ids: list[np.ndarray] = []
    names: list[np.ndarray | None] = []
    for side, declared in enumerate((num_rows, num_cols)):
        empty = np.flatnonzero(lines.id_starts[side] == lines.id_stops[side])
        if empty.size:
            errors.add(int(empty[0]), 1 + side, f": the {('row', 'col')[side]} id is empty")
        side_names, side_ids = (None, _declared_ids(lines, side, declared, errors)) if declared is not None \
            else _string_ids(lines, side)
        names.append(side_names)
        ids.append(side_ids)
    values = _checked_numbers(lines, 2, nonnegative_values, errors)
    weights = _checked_numbers(lines, 3, True, errors) if bool((lines.width == 4).any()) else None
    errors.raise_it()
    return Triplets(ids[0], ids[1], values, weights, names[0], names[1])


def decode_triplets_recordio(body: bytes | memoryview, *, source: str, num_rows: int,
                             num_cols: int | None = None, nonnegative_values: bool = False,
                             first_record: int = 0, first_byte: int = 0) -> Triplets:
    """RecordIO-protobuf records in the one-hot layout ``[row, num_rows + col]``, label = value;
    ``nonnegative_values`` also rejects values < 0. A part of a longer stream (``chunking.RecordChunker``)
    gives the record index and byte its body starts at in the stream, for the error messages."""
    data = decode_recordio(body, source=source, with_labels=True,
                           feature_dim=None if num_cols is None else num_rows + num_cols,
                           first_record=first_record, first_byte=first_byte)
    counts = np.diff(data.indptr)
    bad = np.flatnonzero(counts != 2)
    if bad.size:
        raise DataError(f"{source}: record {first_record + bad[0]} has {counts[bad[0]]} feature keys; WALS reads "
                        f"the one-hot layout with exactly two: [row, num_rows + col] (num_rows={num_rows})")
    keys = data.indices.reshape(-1, 2)
    low, high = keys.min(axis=1), keys.max(axis=1)
    bad = np.flatnonzero((low >= num_rows) | (high < num_rows))
    if bad.size:
        raise DataError(f"{source}: record {first_record + bad[0]} has keys {keys[bad[0]].tolist()}; the one-hot "
                        f"layout needs one row key < num_rows={num_rows} and one column key >= num_rows")
    if data.labels is None:
        raise DataError(f"{source}: records need label['values'], the entry's value")
    values = data.labels  # finite: the decoder checks labels
    if nonnegative_values and (values < 0).any():
        first = int(np.flatnonzero(values < 0)[0])
        raise DataError(f"{source}: record {first_record + first}: label (value) {values[first]} must be >= 0 "
                        "(alpha is set: values are counts)")
    return Triplets(rows=low, cols=high - num_rows, values=values, weights=data.weights)


def decode_id_weights_csv(body: bytes | memoryview, *, source: str, what: str,
                          declared: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """CSV ``id,weight`` lines, the weight of a ``what`` ("row" or "col"; header and blank lines as for
    triplets), as (ids, float32 weights); with ``declared`` (num_rows or num_cols) the ids must be integers
    in [0, declared)."""
    reader = csv.reader(io.StringIO(_text(body, source)), skipinitialspace=True)
    try:
        records = list(reader)
    except csv.Error as err:
        raise DataError(f"{source}: line {reader.line_num}: {err}") from None
    numbered = [(n, r) for n, r in enumerate(records, start=1) if any(c.strip() for c in r)]
    if numbered and len(numbered[0][1]) == 2 and not _is_number(numbered[0][1][1]):
        numbered = numbered[1:]
    for number, record in numbered:
        if len(record) != 2:
            raise DataError(f"{source}: line {number} has {len(record)} fields; expected id,weight")
    lines = np.array([n for n, _ in numbered], dtype=np.int64)
    name = "num_rows" if what == "row" else "num_cols"
    ids = _ids([r[0] for _, r in numbered], lines, what, declared, name, source)
    return ids, _numbers([r[1] for _, r in numbered], lines, "weight", source, nonnegative=True)


def warm_up() -> None:
    """Compile the CSV reader's kernels (string ids sorted as bytes, declared integer ids) and the on-disk
    matrices' placement."""
    decode_triplets_csv(b'row,col,value,weight\nu1,"i 1",1.5,2\nu2,i2,3\n', source="warm-up")
    decode_triplets_csv(b"0,1,1\n1,0,2\n", source="warm-up", num_rows=2, num_cols=2)
    ints, floats, none = np.zeros(1, np.int64), np.zeros(1, np.float32), np.zeros(0, np.float32)
    kernels.scatter(ints, np.zeros(1, np.int64), ints, floats, floats, ints.copy(), floats.copy(), floats.copy())
    kernels.scatter(ints, np.zeros(1, np.int64), ints, floats, none, ints.copy(), floats.copy(), none)
