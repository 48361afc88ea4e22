"""CSV (``text/csv``): dense numeric rows, no header; the label is the first column when ``with_labels``."""

from __future__ import annotations

import numpy as np

from container.errors import DataError
from container.formats._rows import check_finite, check_width, dense_rows
from container.formats.dataset import Dataset


def _text(body: bytes | memoryview, source: str) -> str:
    try:
        return bytes(body).decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise DataError(f"{source}: not UTF-8 text at byte {err.start}") from None


def _first_bad_cell(lines: list[tuple[int, list[str]]], source: str) -> DataError:
    for number, cells in lines:
        for column, cell in enumerate(cells, start=1):
            try:
                float(cell)
            except ValueError:
                return DataError(f"{source}: line {number} column {column}: {cell.strip()[:40]!r} is not a number")
    return DataError(f"{source}: a cell is not a number")


def decode_csv(
    body: bytes | memoryview, *, source: str, feature_dim: int | None = None, with_labels: bool = False
) -> Dataset:
    """Dense CSV rows to a Dataset; blank lines are skipped; errors name the line and column."""
    lines = [(n, line.split(",")) for n, line in enumerate(_text(body, source).splitlines(), start=1)
             if line.strip()]
    if not lines:
        return dense_rows(np.zeros((0, feature_dim or 0), np.float32), np.zeros(0, np.float32)
                          if with_labels else None, feature_dim or 0)
    width = len(lines[0][1])
    for number, cells in lines:
        if len(cells) != width:
            raise DataError(f"{source}: line {number} has {len(cells)} columns, line {lines[0][0]} has {width}")
    if with_labels and width < 2:
        raise DataError(f"{source}: line {lines[0][0]} has no feature columns after the label column")
    try:
        matrix = np.array([cells for _, cells in lines], dtype=np.float32)
    except ValueError:
        raise _first_bad_cell(lines, source) from None
    for row in np.flatnonzero(~np.isfinite(matrix).all(axis=1))[:1]:
        check_finite(matrix[row], source, f"line {lines[row][0]}")
    labels = matrix[:, 0].copy() if with_labels else None
    features = matrix[:, 1:] if with_labels else matrix
    n_cols = check_width(features.shape[1], feature_dim, source, f"line {lines[0][0]}")
    return dense_rows(features, labels, n_cols)
