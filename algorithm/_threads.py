"""Scoped numba thread count: set on entry, restored in ``finally`` (pynndescent's intent, exception-safe)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numba


@contextmanager
def numba_threads(n: int) -> Iterator[int]:
    """Run the block on ``n`` numba threads (capped at ``NUMBA_NUM_THREADS``); yields the count set."""
    if n < 1:
        raise ValueError(f"numba_threads needs n >= 1, got {n}")
    previous = numba.get_num_threads()
    count = min(n, int(numba.config.NUMBA_NUM_THREADS))  # type: ignore[attr-defined]
    numba.set_num_threads(count)
    try:
        yield count
    finally:
        numba.set_num_threads(previous)
