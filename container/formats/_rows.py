"""Assembling a Dataset from per-row arrays, with the checks every text decoder shares."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from container.errors import DataError
from container.formats.dataset import Dataset


def check_finite(values: np.ndarray, source: str, where: str) -> None:
    """DataError naming ``where`` (e.g. ``line 3``) if ``values`` holds NaN or infinity."""
    if not np.all(np.isfinite(values)):
        raise DataError(f"{source}: {where} holds NaN or infinity; every value must be finite")


def dense_rows(matrix: np.ndarray, labels: np.ndarray | None, n_cols: int) -> Dataset:
    """CSR form of a dense float32 matrix (zeros dropped)."""
    mask = matrix != 0
    indptr = np.zeros(matrix.shape[0] + 1, np.int64)
    np.cumsum(mask.sum(axis=1), out=indptr[1:])
    return Dataset(
        data=np.ascontiguousarray(matrix[mask], dtype=np.float32),
        indices=np.nonzero(mask)[1].astype(np.int64),
        indptr=indptr,
        n_cols=n_cols,
        labels=labels,
    )


def sparse_rows(
    keys: Sequence[np.ndarray], values: Sequence[np.ndarray], n_cols: int, labels: np.ndarray | None = None
) -> Dataset:
    """CSR form of per-row (keys, values) arrays; keys already checked against ``n_cols``."""
    counts = np.fromiter((len(k) for k in keys), np.int64, len(keys))
    indptr = np.zeros(len(keys) + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    return Dataset(
        data=np.concatenate(values).astype(np.float32, copy=False) if values else np.empty(0, np.float32),
        indices=np.concatenate(keys).astype(np.int64, copy=False) if keys else np.empty(0, np.int64),
        indptr=indptr,
        n_cols=n_cols,
        labels=labels,
    )


def check_width(width: int, feature_dim: int | None, source: str, where: str) -> int:
    """The column count of dense input: must equal ``feature_dim`` when that is known."""
    if feature_dim is not None and width != feature_dim:
        raise DataError(f"{source}: {where} has {width} feature values, expected feature_dim={feature_dim}")
    return width


def check_keys(keys: np.ndarray, n_cols: int, source: str, where: str) -> None:
    """Sparse keys must be whole numbers in [0, n_cols)."""
    if keys.size and (keys.min() < 0 or keys.max() >= n_cols):
        bad = int(np.flatnonzero((keys < 0) | (keys >= n_cols))[0])
        raise DataError(f"{source}: {where} key[{bad}]={int(keys[bad])} is outside [0, {n_cols}) "
                        f"(feature_dim {n_cols})")
