"""``record_set()``'s local half: arrays -> RecordIO-protobuf shards ``matrix_<i>.pbr`` (the SDK's names and
bytes). Dense arrays use the dense writer as the SDK does; scipy sparse matrices the sparse one."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np

from fmwals.recordio import write_numpy_to_dense_tensor, write_spmatrix_to_sparse_tensor


def write_shards(train: Any, labels: Any, shards: int, directory: Path) -> list[Path]:
    """Split the rows into ``shards`` nearly equal parts and write each; returns the files written."""
    if train.ndim != 2:
        raise ValueError(f"record_set: train must be a 2-D array, got {train.ndim} dimension(s)")
    n_rows = train.shape[0]
    if labels is not None:
        labels = np.asarray(labels)
        if labels.ndim != 1 or labels.shape[0] != n_rows:
            raise ValueError(
                f"record_set: labels must be a 1-D array of {n_rows} values (one per row of "
                f"train), got shape {labels.shape}"
            )
    sparse = hasattr(train, "tocsr")
    bounds = np.linspace(0, n_rows, max(1, min(shards, n_rows)) + 1).astype(int)
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for i, (start, stop) in enumerate(itertools.pairwise(bounds)):
        path = directory / f"matrix_{i}.pbr"
        part_labels = None if labels is None else labels[start:stop]
        with open(path, "wb") as f:
            if sparse:
                write_spmatrix_to_sparse_tensor(f, train.tocsr()[start:stop], part_labels)
            else:
                write_numpy_to_dense_tensor(f, np.asarray(train)[start:stop], part_labels)
        files.append(path)
    return files


def write_triplets(train: Any, path: Path) -> tuple[int, int]:
    """A sparse matrix (or a ``(rows, cols, values)`` tuple) as WALS's ``text/csv`` triplets
    ``row,col,value``, one observed entry per line; returns (entries, columns)."""
    if isinstance(train, tuple):
        rows, cols, values = (np.asarray(a) for a in train)
    else:
        coo = train.tocoo()
        rows, cols, values = coo.row, coo.col, coo.data
    if not len(rows) == len(cols) == len(values):
        raise ValueError("record_set: rows, cols and values must have the same length")
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for r, c, v in zip(rows.tolist(), cols.tolist(), values.tolist(), strict=True):
            f.write(f"{r},{c},{v!r}\n")
    n_cols = int(train.shape[1]) if hasattr(train, "shape") else int(np.max(cols)) + 1 if len(cols) else 0
    return len(rows), n_cols
