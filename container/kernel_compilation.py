"""Say when numba compiles kernels rather than loading them from its cache, and how long that took.

Every kernel is ``cache=True``: numba keeps the machine code in ``$NUMBA_CACHE_DIR`` when set (the image sets
it and fills it at build time), else in ``__pycache__`` next to the sources (``~/.cache/numba`` when those
are read-only). A cache miss (the first run on a machine, or after the sources or the CPU changed) compiles
for tens of seconds; numba's ``numba:compile`` event fires only then, so one line is logged when the first
compilation starts and one with the total when the block ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import numba
from numba.core import event


class _Compilations(event.Listener):
    """Counts top-level compilations (a kernel compiles its callees inside its own event) and their time."""

    def __init__(self, log: logging.Logger, note: str) -> None:
        self.log, self.note = log, note
        self.depth, self.started, self.seconds, self.kernels = 0, 0.0, 0.0, 0

    def on_start(self, ev: event.Event) -> None:
        if self.depth == 0:
            if self.kernels == 0:
                self.log.info("Compiling numba kernels, first run on this machine only (or after an upgrade): "
                              "this takes tens of seconds%s; they are cached in %s for the next runs", self.note,
                              cache_location())
            self.log.debug("Compiling %s%s", getattr(ev.data["dispatcher"], "__qualname__", "a kernel"),
                           ev.data["args"])
            self.started = time.monotonic()
        self.depth += 1

    def on_end(self, ev: event.Event) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.seconds += time.monotonic() - self.started
            self.kernels += 1


def cache_location() -> str:
    """Where numba keeps the compiled kernels: ``$NUMBA_CACHE_DIR``, else next to the sources."""
    cache_dir: str = numba.config.CACHE_DIR  # type: ignore[attr-defined]
    return cache_dir or "__pycache__ next to the sources (~/.cache/numba if those are read-only)"


@contextmanager
def logged_compilation(log: logging.Logger, note: str = "") -> Iterator[None]:
    """Within the block, log the first kernel compilation when it starts (``note`` is added to that line)
    and, at the end, how many kernels compiled in how many seconds; nothing when every kernel came from the
    cache."""
    listener = _Compilations(log, note)
    with event.install_listener("numba:compile", listener):
        yield
    if listener.kernels:
        log.info("Compiled %d numba kernel(s) in %.1f s; cached in %s", listener.kernels, listener.seconds,
                 cache_location())
