"""Helpers shared by the text decoders (CSV, libsvm): bulk number parsing and dense rows to CSR."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np

from algorithm.csr import CSR


def parse_floats(text: bytes, count: int, sep: str) -> np.ndarray | None:
    """The ``count`` float64 numbers in ``text`` separated by ``sep`` (whitespace around them ignored), or
    None if anything else is there. Parsing is numpy's C parser (correctly rounded, like ``float``)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # numpy warns, rather than raises, on bad data
        try:
            values = np.fromstring(text, dtype=np.float64, sep=sep)
        except (ValueError, DeprecationWarning):
            return None
    return values if values.size == count else None


def first_failing(n: int, ok: Callable[[int, int], bool]) -> int:
    """The first of ``n`` items that fails a check, when the check of all of them together failed: ``ok(lo,
    hi)`` checks items ``lo..hi-1`` together (each item on its own, so a range fails iff one of its items
    does). Halving the range that holds the first failure checks about ``n`` items in all: finding the fault
    costs about what parsing costs."""
    lo, hi = 0, n
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(lo, mid):
            lo = mid
        else:
            hi = mid
    return lo


def is_number(token: bytes) -> bool:
    """Whether ``parse_floats`` accepts ``token`` as one number."""
    return bool(token.strip()) and parse_floats(token, 1, " ") is not None


def to_float32(values: np.ndarray) -> np.ndarray:
    """float64 -> float32; values beyond float32's range become inf (and are reported as not finite)."""
    with np.errstate(over="ignore"):
        return values.astype(np.float32)


def dense_dataset(features: np.ndarray, labels: np.ndarray | None) -> CSR:
    """A CSR from a 2-D float32 array, explicit zeros dropped."""
    rows, columns = np.nonzero(features)
    indptr = np.zeros(features.shape[0] + 1, np.int64)
    np.cumsum(np.count_nonzero(features, axis=1), out=indptr[1:])
    return CSR(
        data=np.ascontiguousarray(features[rows, columns]),
        indices=columns.astype(np.int64),
        indptr=indptr,
        n_cols=features.shape[1],
        labels=labels,
    )
