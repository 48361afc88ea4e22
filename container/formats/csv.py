"""CSV (``text/csv``): one dense row per line, comma-separated numbers.

With ``with_labels`` the first column is the label (training); otherwise every column is a feature (serving).
Blank lines are ignored; there is no header (a first line of column names is named as one in the error) and
no quoting. Numbers are parsed in bulk: by a numba scanner for plain digits and decimals (the common case),
else by numpy's C parser (one call for the whole body); only when that fails is the body walked cell by cell
to name the first bad line and column (1-based).
"""

from __future__ import annotations

import codecs

import numpy as np

from algorithm.csr import CSR
from container.errors import DataError
from container.formats._text import dense_dataset, is_number, parse_floats, to_float32
from container.formats._text_kernels import scan_csv


def decode_csv(
    body: bytes | memoryview,
    *,
    source: str,
    feature_dim: int | None = None,
    with_labels: bool = False,
    first_line: int = 1,
) -> CSR:
    """Decode CSV rows to a CSR (explicit zeros dropped from the CSR arrays). A body that is a piece of a longer
    stream numbers its lines in errors from ``first_line``."""
    text = bytes(body).removeprefix(codecs.BOM_UTF8)
    lines = text.split(b"\n")
    numbers = [i + first_line for i, line in enumerate(lines) if line.strip()]
    rows = [lines[n - first_line] for n in numbers]
    n_label = int(with_labels)
    if not rows:
        empty_labels = np.empty(0, np.float32) if with_labels else None
        return dense_dataset(np.empty((0, feature_dim or 0), np.float32), empty_labels)
    widths = np.array([row.count(b",") + 1 for row in rows])
    width = int(widths[0]) if feature_dim is None else feature_dim + n_label
    ragged = np.flatnonzero(widths != width)
    if ragged.size:
        number, found = numbers[ragged[0]], int(widths[ragged[0]])
        if feature_dim is None:
            raise DataError(f"{source}: line {number} has {found} columns, line {numbers[0]} has {width}")
        raise DataError(
            f"{source}: line {number} has {found - n_label} feature values, expected feature_dim={feature_dim}"
            + (" (after the label column)" if with_labels else "")
        )
    if with_labels and width < 2:
        raise DataError(f"{source}: line {numbers[0]} has no feature columns after the label column")
    scanned = _scanned(text, len(rows), width, with_labels)
    return scanned if scanned is not None else _parsed(source, rows, numbers, width, with_labels, first_line == 1)


def _scanned(text: bytes, n_rows: int, width: int, with_labels: bool) -> CSR | None:
    """The rows read by the numba scanner straight into CSR arrays, or None when it declines the body."""
    n_label = int(with_labels)
    labels = np.empty(n_rows if with_labels else 0)
    data, indices = np.empty(n_rows * (width - n_label)), np.empty(n_rows * (width - n_label), np.int64)
    counts = np.empty(n_rows, np.int64)
    ok, rows, nnz = scan_csv(np.frombuffer(text, np.uint8), width, with_labels, labels, data, indices, counts)
    if not ok or rows != n_rows:
        return None
    indptr = np.zeros(rows + 1, np.int64)
    np.cumsum(counts[:rows], out=indptr[1:])
    return CSR(data=to_float32(data[:nnz]), indices=indices[:nnz], indptr=indptr, n_cols=width - n_label,
                   labels=to_float32(labels) if with_labels else None)


def _parsed(source: str, rows: list[bytes], numbers: list[int], width: int, with_labels: bool,
            at_start: bool = True) -> CSR:
    """The checking path: numpy's parser, then the first bad cell, NaN or infinity named."""
    values = parse_floats(b",".join(rows), len(rows) * width, ",")
    if values is None:
        raise _first_bad_cell(source, rows, numbers, at_start)
    matrix = to_float32(values).reshape(len(rows), width)
    n_label = int(with_labels)
    bad = np.flatnonzero(~np.isfinite(matrix))
    if bad.size:
        row, column = divmod(int(bad[0]), width)
        what = "the label" if with_labels and column == 0 else f"column {column + 1}"
        raise DataError(f"{source}: line {numbers[row]} holds NaN or infinity in {what}")
    return dense_dataset(matrix[:, n_label:], matrix[:, 0].copy() if with_labels else None)


def _first_bad_cell(source: str, rows: list[bytes], numbers: list[int], at_start: bool) -> DataError:
    """The error for the first cell that is not a number (a header named as one on the first line of a file)."""
    for row, number in zip(rows, numbers, strict=True):
        for column, cell in enumerate(row.split(b","), 1):
            if not is_number(cell):
                header = _HEADER_ADVICE if at_start and row is rows[0] and _looks_like_header(row) else ""
                return DataError(f"{source}: line {number} column {column}: {_show(cell)}{header}")
    return DataError(f"{source}: cannot parse the CSV numbers")


_HEADER_ADVICE = ("; the first line looks like a header, and CSV here has none (each line is numbers only: "
                  "for training the label, then the features): remove the first line")


def _looks_like_header(row: bytes) -> bool:
    """Whether a line is column names: no empty cell, and at least half of the cells words, not numbers."""
    cells = [cell.strip().strip(b'"').strip() for cell in row.split(b",")]
    words = [cell for cell in cells if not is_number(cell) and (cell[:1].isalpha() or cell[:1] == b"_")]
    return all(cells) and 2 * len(words) >= len(cells)


def _show(cell: bytes) -> str:
    """What is wrong with a cell that is not a number."""
    try:
        text = cell.strip().decode("utf-8")
    except UnicodeDecodeError:
        return "not UTF-8 text"
    return f"{text[:40]!r} is not a number" if text else "empty cell"
