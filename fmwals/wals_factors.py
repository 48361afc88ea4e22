"""A trained WALS model's factors as TensorFlow's ``WALSMatrixFactorization`` shows them: row (column) ``i`` of
the factor matrix belongs to row (column) id ``i``.

The model stores the factors of the ids its training data had, in sorted id order (``row_ids``/``col_ids`` in
``model.npz``, docs/wals.md). With integer ids >= 0 (TF's only kind) the factors are placed at their ids and
the ids the data never had get zero factors, which is what training with ``num_rows``/``num_cols`` declared
gives them. Other ids (strings, negative integers) keep the model's sorted order.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

# TF's feature keys of a projection's input_fn.
INPUT_ROWS = "input_rows"
INPUT_COLS = "input_cols"
PROJECT_ROW = "project_row"
PROJECTION_WEIGHTS = "projection_weights"


def _positions(ids: np.ndarray | None) -> np.ndarray | None:
    """The position of each stored factor in TF's view (the ids themselves), or None to keep the order."""
    if ids is None or ids.dtype.kind not in "iu" or not ids.size or ids.min() < 0:
        return None
    return ids.astype(np.int64)


def tf_factors(factors: np.ndarray, ids: np.ndarray | None) -> np.ndarray:
    """``factors`` (one row per stored id) with row i holding id i's factor, zero for ids never seen."""
    positions = _positions(ids)
    if positions is None:
        return factors
    out = np.zeros((int(positions.max()) + 1, factors.shape[1]), dtype=factors.dtype)
    out[positions] = factors
    return out


def to_model_indices(entries: Any, ids: np.ndarray | None, n_model: int, key: str, side: str) -> Any:
    """``entries`` (sparse, column j = ``side`` id j in TF's view) with its columns renumbered to the indices
    of the model's ``n_model`` factors; entries of ids the model has no factor for are dropped (their factor
    is zero: they change nothing)."""
    csr = entries.tocsr(copy=True)
    positions = _positions(ids)
    count = n_model if positions is None else int(positions.max()) + 1
    if csr.shape[1] > count:
        raise ValueError(f"features[{key!r}] has {csr.shape[1]} columns but the model's {side} ids are "
                         f"0..{count - 1}: column j must hold {side} id j")
    if positions is None:
        csr.resize((csr.shape[0], count))
        return csr
    index = np.full(count, -1, dtype=np.int64)
    index[positions] = np.arange(positions.size)
    coo = csr.tocoo()
    mapped = index[coo.col]
    keep = mapped >= 0
    return type(csr)((coo.data[keep], (coo.row[keep], mapped[keep])), shape=(csr.shape[0], positions.size))


def projection_request(input_fn: Callable[[], Any]) -> tuple[bool, Any, Any]:
    """(project_row, the entries to project, their weights or None) from a TF ``input_fn`` returning
    ``(features, labels)`` or the features dict; the entries are scipy sparse matrices, one row per row
    (``INPUT_ROWS``) or per column (``INPUT_COLS``, columns transposed) to project."""
    result = input_fn()
    features = result[0] if isinstance(result, tuple) else result
    if not isinstance(features, dict) or PROJECT_ROW not in features:
        raise ValueError(f"input_fn must return the features dict (or (features, labels)) with "
                         f"WALS.PROJECT_ROW ({PROJECT_ROW!r}): True projects WALS.INPUT_ROWS, False "
                         f"WALS.INPUT_COLS")
    project_row = bool(features[PROJECT_ROW])
    key = INPUT_ROWS if project_row else INPUT_COLS
    entries = features.get(key)
    if not hasattr(entries, "tocsr"):
        raise ValueError(f"features[{key!r}] must be a scipy sparse matrix with one row per "
                         f"{'row' if project_row else 'column'} to project, got {type(entries).__name__}")
    return project_row, entries, features.get(PROJECTION_WEIGHTS)
