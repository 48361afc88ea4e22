"""FM training on streamed channels (``data_loading`` chose stream): every epoch reads its rows block by block,
so the memory the data takes is ``stream_buffer_mb`` whatever its size.

- Pipe mode: pass p of a channel reads its FIFO ``<channel>_<p>`` (one per epoch, as the platform delivers
  them); nothing of the data is kept between passes.
- File mode: before the first pass the files are decoded in order, each block appended to an on-disk cache
  under the training volume's scratch directory (``container.block_cache``); every pass reads the cache's
  blocks through memory maps, in the order the epoch draws.

Checkpoints and resuming (``FactorizationMachines.fit_blocks``): a checkpoint within an epoch keeps the blocks
done; the resumed job reads the epoch's pass again from its start and skips that many blocks without training
them. File mode rebuilds the cache from the files first (a new host has none), cut into the same blocks, and
maps the skipped blocks without reading them; Pipe mode reads and decodes them from the FIFO and drops them.
The FIFOs of a job are numbered from 0 (``ChannelPasses`` counts the passes of this job), as the platform
numbers them in every container it starts, a restarted one included: the resumed epoch, whatever its number,
reads ``<channel>_0``, the next ``<channel>_1``, and so on.

What is shuffled: within each block, every row (a permutation per block per epoch; with shuffle=runs, runs of
``algorithm.row_blocks.RUN_ROWS`` stored rows); across blocks, their order, in File mode (every Pipe-mode
epoch sees the blocks in the order of the data). Rows never move between blocks, so data sorted by some key
stays clustered within a block (``docs/benchmarks.md`` measures the effect).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from algorithm.checkpoint import Checkpoints
from algorithm.csr import CSR
from algorithm.fm import BLOCKS_PER_BUFFER, FactorizationMachines
from algorithm.metrics import STOPPING_METRIC
from container import job, metrics_log
from container.block_cache import BlockCache, write_cache
from container.channel_stream import iter_channel_blocks
from container.config import ChannelConfig
from container.paths import SageMakerPaths
from container.progress import BlockProgress

log = logging.getLogger("train.fm")

CACHE = "fm-blocks"  # the scratch directory of the File-mode caches


class ChannelPasses:
    """A channel read pass after pass (``algorithm.row_blocks.RowBlocks``): Pipe mode's FIFO of each pass of this
    job (``<channel>_0`` first), or File mode's files once and its on-disk cache in ``cache_dir`` after."""

    def __init__(self, paths: SageMakerPaths, config: ChannelConfig, feature_dim: int, block_bytes: int,
                 cache_dir: Path) -> None:
        self.paths, self.config, self.feature_dim, self.block_bytes = paths, config, feature_dim, block_bytes
        self.pipe = config.input_mode.lower() == "pipe"
        self.cache_dir = cache_dir
        self.cache: BlockCache | None = None
        self.passes = 0

    def blocks(self, order_rng: np.random.Generator | None) -> Iterator[CSR]:
        decoded = (block for _, block in iter_channel_blocks(
            self.paths, self.config, feature_dim=self.feature_dim, epoch=self.passes, block_bytes=self.block_bytes))
        if self.pipe:
            self.passes += 1
            yield from decoded
            return
        if self.cache is None:
            for _ in write_cache(self.cache_dir, self.feature_dim, decoded):
                pass
            self.cache = BlockCache(self.cache_dir)
            log.info("Channel %r: %d rows, %d nonzeros in %d blocks cached in %s", self.config.name,
                     self.cache.n_rows, self.cache.nnz, self.cache.n_blocks, self.cache_dir)
        yield from self.cache.blocks(order_rng)


def train_streamed(paths: SageMakerPaths, params: dict[str, Any], model: FactorizationMachines,
                   train_config: ChannelConfig, test_config: ChannelConfig | None, host: str,
                   progress_seconds: float, checkpoints: Checkpoints) -> None:
    """Fit ``model`` on the streamed ``train`` channel (``test`` scored by streaming after every epoch and at
    the end), with the metric lines of each epoch and progress lines within them every ``progress_seconds``,
    resuming and writing ``checkpoints`` (at epoch ends, within epochs when due, and on a stop request).
    The final train metrics are those of the kept epoch (the scores seen while training on it), which spares
    a pass over the data. The on-disk caches are removed at the end, however the job ends."""
    block_bytes = params["stream_buffer_mb"] * 2**20 // BLOCKS_PER_BUFFER
    scratch = paths.scratch_dir / CACHE

    def passes(config: ChannelConfig) -> ChannelPasses:
        return ChannelPasses(paths, config, params["feature_dim"], block_bytes, scratch / config.name)

    train = passes(train_config)
    test = None if test_config is None else passes(test_config)
    log.info("Streaming FM training: blocks of %.1f MiB (stream_buffer_mb=%d)", block_bytes / 2**20,
             params["stream_buffer_mb"])
    progress = BlockProgress(host, params["epochs"], progress_seconds)
    epoch_log = job.EpochLog(host, params["epochs"], 0)
    try:
        seconds = job.timed_fit(model.fit_blocks, train, test, on_epoch=_counting(epoch_log, progress),
                                on_block=progress, checkpoints=checkpoints)
        stop = job.EarlyStop(STOPPING_METRIC[params["predictor_type"]], params["early_stopping_patience"],
                             params["early_stopping_tolerance"])
        epoch_log.finish(seconds, model.best_epoch_, stop if model.stopped_early_ == "early_stopping" else None)
        if model.best_epoch_ in epoch_log.history:  # else the job that ran that epoch logged its metrics
            kept_train, _ = epoch_log.history[model.best_epoch_]
            for line in metrics_log.final_lines(host, "train", kept_train):
                log.info(line)
        if test is not None:
            for line in metrics_log.final_lines(host, "test", model.streamed_metrics(test)):
                log.info(line)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _counting(epoch_log: job.EpochLog, progress: BlockProgress) -> Any:
    """``epoch_log`` with the throughput of each epoch counted from the rows it trained (a resumed epoch's
    rows passed over are not)."""

    def on_epoch(epoch: int, train: dict[str, float], test: dict[str, float] | None, seconds: float) -> None:
        epoch_log.items = progress.trained_in_epoch
        epoch_log(epoch, train, test, seconds)

    return on_epoch
