"""The WALS model as it is saved and served: ``algorithm.wals.WALS``, the id maps that turn the users' row and
column ids into matrix indices, and the training entries (for ``exclude_seen``). ``algorithm.artifact`` loads
every WALS artifact as a ``WALSModel``; one saved from a bare ``WALS`` gets ids 0..n-1 and no training entries.

Extra arrays in ``model.npz`` (next to the WALS arrays; ``numpy.load(allow_pickle=False)`` reads them all):

    row_ids, col_ids          the original ids, sorted: index i of the matrix is row_ids[i]; int64 when every
                              id is a canonical decimal integer, else unicode strings
    seen_indptr, seen_indices the training matrix's entries in CSR form (indices int32), values left out
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from algorithm.wals import WALS

_CANONICAL_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_INT64 = (-(2**63), 2**63)


def _as_int(value: object) -> int | None:
    """A JSON id (int or canonical decimal text) as an int64 value, or None."""
    if isinstance(value, str):
        if not _CANONICAL_INT.fullmatch(value):
            return None
        number = int(value)
    elif isinstance(value, int | np.integer) and not isinstance(value, bool):
        number = int(value)
    else:
        return None
    return number if _INT64[0] <= number < _INT64[1] else None


def _canonical_ints(texts: np.ndarray) -> np.ndarray | None:
    """``texts`` as int64 when every one is a canonical decimal integer ("7", not "07" or "+7"), else None."""
    try:
        numbers = texts.astype(np.int64)
    except (ValueError, OverflowError):
        return None
    return numbers if bool((numbers.astype(str) == texts).all()) else None


@dataclass(frozen=True)
class IdMap:
    """The ids of one side of the matrix, sorted and unique: matrix index i is ``ids[i]``."""

    ids: np.ndarray  # int64, or unicode strings

    @classmethod
    def from_ids(cls, raw: np.ndarray) -> tuple[IdMap, np.ndarray]:
        """The vocabulary of ``raw`` ids and the index of each: integers when every id is a canonical decimal
        integer (sorted numerically), else strings (sorted by code point)."""
        unique, inverse = np.unique(raw, return_inverse=True)
        if unique.dtype.kind in "iu":
            return cls(unique.astype(np.int64)), inverse.astype(np.int64)
        numbers = _canonical_ints(unique)
        if numbers is None:
            return cls(unique), inverse.astype(np.int64)
        order = np.argsort(numbers, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(order.size)
        return cls(numbers[order]), rank[inverse].astype(np.int64)

    @classmethod
    def range(cls, n: int) -> IdMap:
        """Ids 0..n-1 that are the matrix indices themselves."""
        return cls(np.arange(n, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def kind(self) -> str:
        return "int" if self.ids.dtype.kind in "iu" else "str"

    def _search(self, queries: np.ndarray) -> np.ndarray:
        if not len(self.ids) or not queries.size:
            return np.full(queries.shape, -1, np.int64)
        position = np.minimum(np.searchsorted(self.ids, queries), len(self.ids) - 1)
        return np.where(self.ids[position] == queries, position, -1).astype(np.int64)

    def index(self, queries: np.ndarray) -> np.ndarray:
        """The matrix index of each id in ``queries`` (int64 or strings), -1 for ids not in the map."""
        if self.kind == "str":
            return self._search(queries.astype(str) if queries.dtype.kind in "iu" else queries)
        if queries.dtype.kind in "iu":
            return self._search(queries.astype(np.int64))
        unique, inverse = np.unique(queries, return_inverse=True)
        numbers = [_as_int(str(text)) for text in unique]
        known = np.array([n is not None for n in numbers], dtype=bool)
        found = np.full(unique.size, -1, np.int64)
        found[known] = self._search(np.array([n for n in numbers if n is not None], dtype=np.int64))
        return found[inverse]

    def find(self, value: object) -> int | None:
        """The matrix index of one JSON id (int or string; an int map also takes "7" for 7), or None."""
        if self.kind == "int":
            number = _as_int(value)
            key: Any = number
        else:
            key = str(value) if isinstance(value, str | int) and not isinstance(value, bool) else None
        if key is None:
            return None
        found = int(self._search(np.array([key]))[0])
        return None if found < 0 else found

    def to_list(self, indices: np.ndarray) -> list[Any]:
        """The original ids of matrix indices, as JSON-ready ints or strings."""
        result: list[Any] = self.ids[indices].tolist()
        return result


class WALSModel:
    """A fitted ``WALS`` with its row and column ``IdMap`` and its training entries ``seen`` (CSR, num_rows x
    num_cols, values dropped): what ``algorithm.artifact`` saves and loads for "wals"."""

    def __init__(self, wals: WALS, row_ids: IdMap, col_ids: IdMap, seen: sp.csr_matrix) -> None:
        shape = (wals.row_factors_.shape[0], wals.col_factors_.shape[0])
        if (len(row_ids), len(col_ids)) != shape or seen.shape != shape:
            raise ValueError(f"id maps ({len(row_ids)}, {len(col_ids)}) and seen {seen.shape} must match the "
                             f"factors' {shape}")
        self.wals = wals
        self.row_ids = row_ids
        self.col_ids = col_ids
        self.seen = seen

    def seen_cols(self, row: int) -> np.ndarray:
        """The columns row ``row`` has training entries in."""
        return np.asarray(self.seen.indices[self.seen.indptr[row]:self.seen.indptr[row + 1]])

    def artifact_arrays(self) -> dict[str, np.ndarray]:
        return {**self.wals.artifact_arrays(), "row_ids": self.row_ids.ids, "col_ids": self.col_ids.ids,
                "seen_indptr": self.seen.indptr.astype(np.int64),
                "seen_indices": self.seen.indices.astype(np.int32, copy=False)}

    def artifact_meta(self) -> dict[str, Any]:
        return {**self.wals.artifact_meta(), "row_ids": self.row_ids.kind, "col_ids": self.col_ids.kind}

    @classmethod
    def from_artifact(cls, meta: dict[str, Any], arrays: dict[str, np.ndarray]) -> WALSModel:
        """Rebuild from ``artifact.read``; an artifact without id maps (saved from the Python API) gets ids
        0..n-1 and no training entries."""
        wals = WALS.from_artifact(meta, arrays)
        n, m = wals.row_factors_.shape[0], wals.col_factors_.shape[0]
        row_ids = IdMap(arrays["row_ids"]) if "row_ids" in arrays else IdMap.range(n)
        col_ids = IdMap(arrays["col_ids"]) if "col_ids" in arrays else IdMap.range(m)
        if "seen_indptr" in arrays:
            seen = sp.csr_matrix((np.ones(arrays["seen_indices"].size, np.float32), arrays["seen_indices"],
                                  arrays["seen_indptr"]), shape=(n, m))
        else:
            seen = sp.csr_matrix((n, m), dtype=np.float32)
        return cls(wals, row_ids, col_ids, seen)
