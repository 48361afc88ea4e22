"""The position in a streamed epoch (``FactorizationMachines.fit_blocks``), and resuming at it.

A checkpoint within a streamed epoch keeps how many blocks the epoch had trained, not the blocks: a resumed fit
starts the epoch's pass again with the epoch's random stream and passes over that many blocks without training
them, drawing from the stream what training them drew, so the rest of the epoch trains as it would have. The
rows and nonzeros of those blocks must be the checkpoint's, which makes other data a clear failure.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass
from itertools import islice
from pathlib import Path

import numpy as np

from algorithm.checkpoint import START_OVER, CheckpointError
from algorithm.csr import CSR


@dataclass
class BlockPosition:
    """How far a pass over blocks got: ``blocks`` (empty ones included), and the ``rows`` and ``nonzeros`` in
    them."""

    blocks: int = 0
    rows: int = 0
    nonzeros: int = 0

    def advance(self, block: CSR) -> None:
        """Count ``block`` as done."""
        self.blocks += 1
        self.rows += block.n_rows
        self.nonzeros += block.nnz

    def progress(self) -> dict[str, int]:
        """The counts as a checkpoint keeps them (``from_progress`` reads them back)."""
        return asdict(self)

    @classmethod
    def from_progress(cls, progress: Mapping[str, int]) -> BlockPosition:
        return cls(int(progress["blocks"]), int(progress["rows"]), int(progress["nonzeros"]))

    def describe(self) -> str:
        return f"{self.blocks} block(s), {self.rows} rows, {self.nonzeros} nonzeros"


def skip_blocks(blocks: Iterator[CSR], rng: np.random.Generator, position: BlockPosition,
                checkpoint: Path | None, on_skipped: Callable[[BlockPosition], None] | None = None) -> BlockPosition:
    """Pass over the first ``position.blocks`` of an epoch's ``blocks`` without training them, drawing from the
    epoch's ``rng`` what training them draws (a row permutation per block with rows), calling
    ``on_skipped(done)`` after each (a stop request can end the pass there); the position reached.
    ``CheckpointError`` naming ``checkpoint`` when the blocks end sooner or hold other rows than the
    checkpoint's."""
    done = BlockPosition()
    for block in islice(blocks, position.blocks):
        done.advance(block)
        if block.n_rows:
            rng.permutation(block.n_rows)
        if on_skipped is not None:
            on_skipped(done)
    if done != position:
        short = done.blocks < position.blocks
        found = (f"an epoch of this job's training data has only {done.describe()}" if short else
                 f"the first {done.blocks} block(s) of this job's training data hold {done.rows} rows, "
                 f"{done.nonzeros} nonzeros")
        raise CheckpointError(f"Checkpoint {checkpoint} is at block {position.blocks} of its epoch "
                              f"({position.describe()} done), but {found}: the data differs from the "
                              f"checkpoint's; run with the checkpoint's data to resume it, or {START_OVER}")
    return done


def check_pass(done: BlockPosition, expected: BlockPosition | None, checkpoint: Path | None, *,
               complete: bool) -> None:
    """``CheckpointError`` naming ``checkpoint`` when a pass of this job (``done`` so far, the whole pass when
    ``complete``) does not fit the ``expected`` whole pass of the checkpoint's job (None: unknown)."""
    if expected is None:
        return
    beyond = done.blocks > expected.blocks or done.rows > expected.rows or done.nonzeros > expected.nonzeros
    if beyond or (complete and done != expected):
        found = done.describe() if complete else f"more than {expected.describe()}"
        raise CheckpointError(f"Checkpoint {checkpoint} belongs to other data: an epoch of its job had "
                              f"{expected.describe()}, an epoch of this job has {found}; run with the "
                              f"checkpoint's data to resume it, or {START_OVER}")
