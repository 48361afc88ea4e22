"""``CSR``: rows in compressed sparse row form, the one in-memory form of rows from the decoders to the kernels."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp


def _require(array: Any, dtype: type, name: str) -> None:
    if not isinstance(array, np.ndarray) or array.dtype != dtype or array.ndim != 1:
        got = f"{array.dtype} with {array.ndim} dims" if isinstance(array, np.ndarray) else type(array).__name__
        raise ValueError(f"CSR {name} must be a 1-D {np.dtype(dtype).name} array, got {got}")
    if not array.flags.c_contiguous:
        raise ValueError(f"CSR {name} must be C-contiguous")


@dataclass(frozen=True)
class CSR:
    """Rows of ``n_cols`` columns: row r holds the values ``data[indptr[r]:indptr[r + 1]]`` (float32) at the
    columns ``indices[indptr[r]:indptr[r + 1]]`` (int64), with optional per-row ``labels`` and ``weights``
    (float32). Checked once, here: the dtypes, 1-D C-contiguous arrays (read-only ones too), ``indptr`` from
    0 to nnz with one index per value, one label and weight per row. Column indices are checked by each
    consumer against its own width.

    Raw arrays rather than a ``scipy.sparse.csr_matrix``, because scipy silently narrows indices to int32;
    the numba kernels and the 64-bit contract need them as they are.
    """

    data: np.ndarray
    indices: np.ndarray
    indptr: np.ndarray
    n_cols: int
    labels: np.ndarray | None = None
    weights: np.ndarray | None = None

    def __post_init__(self) -> None:
        _require(self.data, np.float32, "data")
        _require(self.indices, np.int64, "indices")
        _require(self.indptr, np.int64, "indptr")
        nnz = self.data.size
        if self.indptr.size == 0 or self.indptr[0] != 0 or self.indptr[-1] != nnz or self.indices.size != nnz:
            span = f"from {self.indptr[0]} to {self.indptr[-1]}" if self.indptr.size else "empty"
            raise ValueError(f"not valid CSR: indptr {span} with {nnz} values and {self.indices.size} indices")
        for name in ("labels", "weights"):
            values = getattr(self, name)
            if values is not None:
                _require(values, np.float32, name)
                if values.size != self.n_rows:
                    raise ValueError(f"CSR {name} must have one value per row: shape ({self.n_rows},), "
                                     f"got {values.shape}")

    @classmethod
    def from_matrix(cls, matrix: Any, labels: Any = None, weights: Any = None, what: str = "X") -> CSR:
        """The rows of a scipy sparse matrix (duplicates summed, the caller's matrix left as it is) or of a
        dense 2-D array (cast to float32, zeros dropped), with optional labels and weights; arrays that
        already have the right dtype are not copied. ``what`` names the input in errors."""
        if sp.issparse(matrix):
            csr = matrix.tocsr()
            if not csr.has_canonical_format:
                csr = csr.copy()
                csr.sum_duplicates()
        else:
            dense = np.asarray(matrix, dtype=np.float32)
            if dense.ndim != 2:
                raise ValueError(f"{what} must be 2-D (rows x features), got shape {dense.shape}")
            csr = sp.csr_matrix(dense)
        return cls(
            data=np.ascontiguousarray(csr.data, dtype=np.float32),
            indices=np.ascontiguousarray(csr.indices, dtype=np.int64),
            indptr=np.ascontiguousarray(csr.indptr, dtype=np.int64),
            n_cols=int(csr.shape[1]),
            labels=None if labels is None else np.ascontiguousarray(labels, dtype=np.float32),
            weights=None if weights is None else np.ascontiguousarray(weights, dtype=np.float32),
        )

    @property
    def n_rows(self) -> int:
        return len(self.indptr) - 1

    @property
    def nnz(self) -> int:
        return len(self.data)

    @property
    def nbytes(self) -> int:
        """Bytes of all the arrays (features, labels and weights)."""
        arrays = (self.data, self.indices, self.indptr, self.labels, self.weights)
        return sum(a.nbytes for a in arrays if a is not None)

    def head(self, rows: int) -> CSR:
        """The first ``rows`` rows, as views."""
        if rows >= self.n_rows:
            return self
        end = int(self.indptr[rows])
        return CSR(self.data[:end], self.indices[:end], self.indptr[:rows + 1], self.n_cols,
                   None if self.labels is None else self.labels[:rows],
                   None if self.weights is None else self.weights[:rows])

    def to_scipy(self) -> sp.csr_matrix:
        """The features as a scipy CSR matrix (indices may be narrowed by scipy)."""
        return sp.csr_matrix((self.data, self.indices, self.indptr), shape=(self.n_rows, self.n_cols))


def concatenate(parts: Sequence[CSR], n_cols: int | None = None) -> CSR:
    """Stack the rows of ``parts``; labels kept only when every part has them, weights when any part has them
    (the rows of parts without weights weigh 1).

    ``n_cols`` defaults to the widest part.
    """
    if not parts:
        raise ValueError("concatenate needs at least one CSR")
    if len(parts) == 1 and n_cols in (None, parts[0].n_cols):
        return parts[0]
    offsets = np.cumsum([0] + [p.nnz for p in parts[:-1]])
    indptr = np.concatenate([parts[0].indptr[:1]] + [p.indptr[1:] + off for p, off in zip(parts, offsets, strict=True)])

    labels = None
    if all(p.labels is not None for p in parts):
        labels = np.concatenate([p.labels for p in parts if p.labels is not None])
    weights = None
    if any(p.weights is not None for p in parts):
        weights = np.concatenate([np.ones(p.n_rows, np.float32) if p.weights is None else p.weights for p in parts])
    return CSR(
        data=np.concatenate([p.data for p in parts]),
        indices=np.concatenate([p.indices for p in parts]),
        indptr=indptr.astype(np.int64),
        n_cols=max(p.n_cols for p in parts) if n_cols is None else n_cols,
        labels=labels,
        weights=weights,
    )
