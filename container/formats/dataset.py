"""The one in-memory form every decoder produces: CSR float32 features, optional labels and weights."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class Dataset:
    """Rows of features in CSR form (``data`` float32, ``indices``/``indptr`` int64) with optional per-row
    ``labels`` and ``weights`` (float32, one per row).

    We keep raw arrays rather than a ``scipy.sparse.csr_matrix`` because scipy silently narrows indices to
    int32; the numba kernels and the 64-bit contract need them as they are.
    """

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    n_cols: int
    labels: np.ndarray | None = None
    weights: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.data.dtype != np.float32 or self.indices.dtype != np.int64 or self.indptr.dtype != np.int64:
            raise TypeError("Dataset needs float32 data and int64 indices/indptr")
        n = self.n_rows
        for name in ("labels", "weights"):
            arr = getattr(self, name)
            if arr is not None and (arr.dtype != np.float32 or arr.shape != (n,)):
                raise TypeError(f"Dataset.{name} must be float32 of shape ({n},)")

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def to_scipy(self) -> sp.csr_matrix:
        """The features as a scipy CSR matrix (indices may be narrowed by scipy)."""
        return sp.csr_matrix((self.data, self.indices, self.indptr), shape=(self.n_rows, self.n_cols))

    @classmethod
    def from_matrix(
        cls,
        matrix: np.ndarray | sp.spmatrix | sp.sparray,
        labels: np.ndarray | Sequence[float] | None = None,
        weights: np.ndarray | Sequence[float] | None = None,
    ) -> Dataset:
        """A Dataset from a dense 2-D array or any scipy sparse matrix (explicit zeros of dense rows dropped)."""
        csr = sp.csr_matrix(matrix)
        csr.sum_duplicates()
        return cls(
            data=np.ascontiguousarray(csr.data, dtype=np.float32),
            indices=np.ascontiguousarray(csr.indices, dtype=np.int64),
            indptr=np.ascontiguousarray(csr.indptr, dtype=np.int64),
            n_cols=int(csr.shape[1]),
            labels=None if labels is None else np.ascontiguousarray(labels, dtype=np.float32),
            weights=None if weights is None else np.ascontiguousarray(weights, dtype=np.float32),
        )


def concatenate(parts: Sequence[Dataset], n_cols: int | None = None) -> Dataset:
    """Stack datasets row-wise; labels/weights kept only when every part has them.

    ``n_cols`` defaults to the widest part.
    """
    if not parts:
        raise ValueError("concatenate needs at least one Dataset")
    if len(parts) == 1 and n_cols in (None, parts[0].n_cols):
        return parts[0]
    offsets = np.cumsum([0] + [p.nnz for p in parts[:-1]])
    indptr = np.concatenate([parts[0].indptr[:1]] + [p.indptr[1:] + off for p, off in zip(parts, offsets, strict=True)])

    def stack(name: str) -> np.ndarray | None:
        arrays = [getattr(p, name) for p in parts]
        return None if any(a is None for a in arrays) else np.concatenate(arrays)

    return Dataset(
        data=np.concatenate([p.data for p in parts]),
        indices=np.concatenate([p.indices for p in parts]),
        indptr=indptr.astype(np.int64),
        n_cols=max(p.n_cols for p in parts) if n_cols is None else n_cols,
        labels=stack("labels"),
        weights=stack("weights"),
    )
