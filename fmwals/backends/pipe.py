"""Pipe mode emulated locally: feed a channel's files through the FIFOs ``input/data/<channel>_<epoch>``.

As on SageMaker, the FIFO of epoch ``e + 1`` appears once the container has finished reading epoch ``e``;
each FIFO carries the files it is given (``container.channel_files`` of the channel: the ones File mode
reads, or a host's share of them), concatenated in order.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import itertools
import os
import threading
import time
from pathlib import Path


class PipeFeeder(threading.Thread):
    """Writes the channel to one FIFO per epoch until ``stop`` is set."""

    def __init__(self, data_dir: Path, channel: str, files: list[Path], stop: threading.Event) -> None:
        super().__init__(name=f"pipe-{channel}", daemon=True)
        self.data_dir = data_dir
        self.channel = channel
        self.files = files
        self.stop = stop

    def _open(self, fifo: Path) -> int | None:
        """Open the FIFO for writing once a reader has opened it; ``None`` if asked to stop first."""
        while not self.stop.is_set():
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as err:
                if err.errno != errno.ENXIO:  # ENXIO: no reader yet
                    raise
                time.sleep(0.05)
                continue
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
            return fd
        return None

    def run(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for epoch in itertools.count():
            fifo = self.data_dir / f"{self.channel}_{epoch}"
            os.mkfifo(fifo)
            try:
                fd = self._open(fifo)
                if fd is None:
                    return
                with contextlib.suppress(BrokenPipeError), os.fdopen(fd, "wb") as pipe:
                    for path in self.files:
                        with open(path, "rb") as f:
                            while chunk := f.read(1 << 20):
                                pipe.write(chunk)
            finally:
                with contextlib.suppress(OSError):
                    fifo.unlink()
