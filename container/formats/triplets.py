"""WALS input: matrix entries as triplets, from ``text/csv`` lines or RecordIO-protobuf in FM's one-hot
layout.

CSV (``row,col,value[,weight]``, RFC 4180 quoting, no line breaks inside fields): ids are text taken as
written (a space after a comma is dropped), value and weight are numbers. The first non-blank line is a
header, and skipped, when its value field is not a number (``row,col,value``, ``user,item,rating``, ...).
Blank lines are skipped. A line without the weight field has weight 1. When ``num_rows`` (``num_cols``) is
given, row (column) ids must be integers in [0, num_rows): they are then the matrix indices themselves.

RecordIO-protobuf: each record is one entry, with exactly two feature keys ``[row, num_rows + col]`` (the
layout of a one-hot FM data set over users then items; feature values are ignored), ``label['values']``
the value and the optional ``label['weight']`` the entry's weight. ``num_rows`` is required.

Values and weights must be finite, weights >= 0. Errors are ``DataError`` naming the source and the line
(CSV, 1-based) or record (RecordIO, 0-based).
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from container.errors import DataError
from container.formats.recordio import decode_recordio

CHUNK_LINES = 1 << 20  # CSV lines parsed per batch: bounds the memory of Python's per-line lists
FIELDS = "row,col,value[,weight]"


@dataclass(frozen=True)
class Triplets:
    """Entries (rows[i], cols[i], values[i]) with optional per-entry ``weights`` (None: all 1).

    Ids are int64 when they are matrix indices (RecordIO, or CSV with num_rows/num_cols given), else
    strings as written.
    """

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    weights: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.values)


def concatenate(parts: Sequence[Triplets]) -> Triplets:
    """One Triplets of all ``parts`` in order (weights 1 where a part has none)."""
    if len(parts) == 1:
        return parts[0]
    weighted = any(p.weights is not None for p in parts)
    return Triplets(
        rows=np.concatenate([p.rows for p in parts]),
        cols=np.concatenate([p.cols for p in parts]),
        values=np.concatenate([p.values for p in parts]),
        weights=np.concatenate([np.ones(len(p), np.float32) if p.weights is None else p.weights
                                for p in parts]) if weighted else None,
    )


def _text(body: bytes | memoryview, source: str) -> str:
    try:
        return bytes(body).decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{source}: not UTF-8 text at byte {err.start}") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _numbers(cells: list[str], lines: np.ndarray, what: str, source: str, nonnegative: bool) -> np.ndarray:
    try:
        values = np.array(cells, dtype=np.float32)
    except ValueError:
        bad = next(i for i, cell in enumerate(cells) if not _is_number(cell))
        raise DataError(f"{source}: line {lines[bad]}: {what} {cells[bad][:40]!r} is not a number") from None
    wrong = ~np.isfinite(values) | (values < 0) if nonnegative else ~np.isfinite(values)
    if wrong.any():
        bad = int(np.flatnonzero(wrong)[0])
        rule = "finite and >= 0" if nonnegative else "finite"
        raise DataError(f"{source}: line {lines[bad]}: {what} {cells[bad]!r} must be {rule}")
    return values


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
        raise DataError(f"{source}: line {lines[bad]}: {what} id {cells[bad][:40]!r} is not an integer; with "
                        f"{name} set, {what} ids must be integers in [0, {name})") from None
    outside = np.flatnonzero((indices < 0) | (indices >= declared))
    if outside.size:
        bad = int(outside[0])
        raise DataError(f"{source}: line {lines[bad]}: {what} id {indices[bad]} is outside [0, {declared}) "
                        f"({name}={declared})")
    return indices


def _csv_chunk(records: list[list[str]], first_line: int, source: str, num_rows: int | None,
               num_cols: int | None, nonnegative_values: bool) -> Triplets | None:
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
    return Triplets(
        rows=_ids([r[0] for r in kept], lines, "row", num_rows, "num_rows", source),
        cols=_ids([r[1] for r in kept], lines, "col", num_cols, "num_cols", source),
        values=_numbers([r[2] for r in kept], lines, "value", source, nonnegative=nonnegative_values),
        weights=_numbers([r[3] if len(r) == 4 else "1" for r in kept], lines, "weight", source,
                         nonnegative=True) if weighted else None,
    )


def decode_triplets_csv(body: bytes | memoryview, *, source: str, num_rows: int | None = None,
                        num_cols: int | None = None, nonnegative_values: bool = False) -> Triplets:
    """CSV ``row,col,value[,weight]`` lines (see the module docstring) as Triplets; ``nonnegative_values``
    also rejects values < 0 (the implicit form's counts)."""
    reader = csv.reader(io.StringIO(_text(body, source)), skipinitialspace=True)
    parts: list[Triplets] = []
    first_line = 1
    try:
        while chunk := list(itertools.islice(reader, CHUNK_LINES)):
            if first_line == 1:
                header = next((r for r in chunk if any(c.strip() for c in r)), None)
                if header is not None and len(header) >= 3 and not _is_number(header[2]):
                    header.clear()  # an empty record is a blank line
            part = _csv_chunk(chunk, first_line, source, num_rows, num_cols, nonnegative_values)
            if part is not None:
                parts.append(part)
            first_line += len(chunk)
    except csv.Error as err:
        raise DataError(f"{source}: line {reader.line_num}: {err}") from None
    if not parts:
        return Triplets(np.zeros(0, np.int64 if num_rows else str),
                        np.zeros(0, np.int64 if num_cols else str), np.zeros(0, np.float32))
    return concatenate(parts)


def decode_triplets_recordio(body: bytes | memoryview, *, source: str, num_rows: int,
                             num_cols: int | None = None, nonnegative_values: bool = False) -> Triplets:
    """RecordIO-protobuf records in the one-hot layout ``[row, num_rows + col]``, label = value;
    ``nonnegative_values`` also rejects values < 0."""
    data = decode_recordio(body, source=source, with_labels=True,
                           feature_dim=None if num_cols is None else num_rows + num_cols)
    counts = np.diff(data.indptr)
    bad = np.flatnonzero(counts != 2)
    if bad.size:
        raise DataError(f"{source}: record {bad[0]} has {counts[bad[0]]} feature keys; WALS reads the "
                        f"one-hot layout with exactly two: [row, num_rows + col] (num_rows={num_rows})")
    keys = data.indices.reshape(-1, 2)
    low, high = keys.min(axis=1), keys.max(axis=1)
    bad = np.flatnonzero((low >= num_rows) | (high < num_rows))
    if bad.size:
        raise DataError(f"{source}: record {bad[0]} has keys {keys[bad[0]].tolist()}; the one-hot layout "
                        f"needs one row key < num_rows={num_rows} and one column key >= num_rows")
    if data.labels is None:
        raise DataError(f"{source}: records need label['values'], the entry's value")
    values = data.labels  # finite: the decoder checks labels
    if nonnegative_values and (values < 0).any():
        first = int(np.flatnonzero(values < 0)[0])
        raise DataError(f"{source}: record {first}: label (value) {values[first]} must be >= 0 (alpha is "
                        "set: values are counts)")
    return Triplets(rows=low, cols=high - num_rows, values=values, weights=data.weights)


def decode_id_weights_csv(body: bytes | memoryview, *, source: str, what: str,
                          declared: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """CSV ``id,weight`` lines, the weight of a ``what`` ("row" or "col"; header and blank lines as for
    triplets), as (ids, float32 weights); with ``declared`` (num_rows or num_cols) the ids must be integers
    in [0, declared)."""
    records = list(csv.reader(io.StringIO(_text(body, source)), skipinitialspace=True))
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
