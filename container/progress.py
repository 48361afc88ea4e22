"""``#progress_metric`` and ``#throughput_metric`` lines within long epochs, at a steady interval."""

from __future__ import annotations

import logging
import time

from container import metrics_log

log = logging.getLogger("train.progress")

INTERVAL_SECONDS = 60.0


class BlockProgress:
    """``fit_blocks``'s ``on_block``: every ``interval`` seconds, the share of all ``epochs`` done (within an
    epoch by its rows, once the first epoch has counted them; before that, the epochs completed) and the rows
    trained per second since the previous line (rows a resumed epoch passed over are progress, not throughput).
    """

    def __init__(self, host: str, epochs: int, interval: float = INTERVAL_SECONDS) -> None:
        self.host, self.epochs, self.interval = host, epochs, interval
        self.rows_per_epoch: int | None = None
        self._epoch, self.rows_in_epoch, self.trained_in_epoch = 0, 0, 0
        self._trained_before = 0  # rows trained in the epochs before this one
        self._last, self._trained_at_last = time.monotonic(), 0

    def __call__(self, epoch: int, rows_done: int, rows_trained: int, seconds: float) -> None:
        if epoch != self._epoch:
            if self.rows_per_epoch is None:
                self.rows_per_epoch = self.rows_in_epoch or None  # (none yet when a resumed job starts past epoch 0)
            self._trained_before += self.trained_in_epoch
            self._epoch = epoch
        self.rows_in_epoch, self.trained_in_epoch = rows_done, rows_trained
        now = time.monotonic()
        if now - self._last < self.interval:
            return
        done = float(epoch)
        if self.rows_per_epoch:
            done += min(rows_done / self.rows_per_epoch, 1.0)
        trained = self._trained_before + rows_trained
        log.info(metrics_log.progress_line(self.host, done, self.epochs))
        rate = (trained - self._trained_at_last) / max(now - self._last, 1e-9)
        log.info(metrics_log.throughput_line(self.host, rate))
        self._last, self._trained_at_last = now, trained
