"""The worker side of distributed WALS: the tasks each host runs on its own data (``container.wals_distributed``
drives them through dask).

A host reads its share of the ``train`` channel (``read_share``: ShardedByS3Key, all of its files;
FullyReplicated, the entries whose index in the channel is ``rank`` modulo the host count, read a chunk at a time
so that the host never holds the whole channel), tells the driver
its distinct ids and their entry counts (``id_summary``), cuts its entries by the owner of their row and of
their column (``split``), and, once the pieces have moved between the hosts, holds one contiguous block of
rows and one of columns (``block``) whose factors it re-solves every half-sweep (``solve``) with the
one-host kernels.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from algorithm import _wals_kernels as kernels
from algorithm._threads import numba_threads
from algorithm.csr import CSR
from algorithm.wals import entry_terms, gram64
from container import wals_data, wals_ondisk
from container.config import ChannelConfig
from container.errors import ChannelError
from container.formats import triplets
from container.paths import SageMakerPaths
from container.resources import usable_cpus

# A piece of entries in matrix indices: (rows, cols, values).
Piece = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class Share:
    """One host's training entries: ``rows``/``cols`` index ``row_names``/``col_names`` (string or integer
    ids as written) or, without names, are the matrix indices; ``values`` with the per-entry weights
    applied (``wals_data.entry_values``)."""

    rows: np.ndarray
    cols: np.ndarray
    values: np.ndarray
    row_names: np.ndarray | None
    col_names: np.ndarray | None


@dataclass(frozen=True)
class IdSummary:
    """What the driver needs of a host's ids to build the job's id maps: per side the distinct ids the
    host's entries use (names, or None when the ids are matrix indices) and the entries of each; without
    names the counts are indexed by the matrix index itself."""

    entries: int
    row_names: np.ndarray | None
    row_counts: np.ndarray
    col_names: np.ndarray | None
    col_counts: np.ndarray


@dataclass(frozen=True)
class Block:
    """The entries of matrix lines ``lo``..``hi`` - 1 of one side (rows, or columns seen as rows) prepared
    for ``kernels.solve``: targets at the other side's indices, extra weights beside them."""

    lo: int
    hi: int
    entries: CSR
    extra: np.ndarray


def read_share(rank: int, n_hosts: int, config: ChannelConfig, hp: dict[str, Any]) -> Share:
    """This host's share of the ``train`` channel, read from its own ``/opt/ml`` (``SAGEMAKER_BASE_DIR``);
    an empty share when the host's channel directory holds no entries (more hosts than ShardedByS3Key
    objects), the driver refusing a job whose hosts have none at all."""
    paths = SageMakerPaths.from_env()
    try:
        if config.distribution == "FullyReplicated" and n_hosts > 1:
            data = _every_nth(paths, config, hp, rank, n_hosts)
        else:
            data = wals_data.read_triplets(paths, config, hp)
    except ChannelError:
        if not paths.channel_dir(config.name).exists() and config.input_mode == "File":
            raise
        empty = np.zeros(0, np.int64)
        return Share(empty, empty, np.zeros(0, np.float32), None, None)
    values = wals_data.entry_values(data, hp["alpha"])
    return Share(data.rows, data.cols, values, data.row_names, data.col_names)


def _every_nth(paths: SageMakerPaths, config: ChannelConfig, hp: dict[str, Any], first: int, step: int
               ) -> triplets.Triplets:
    """Entries ``first``, ``first + step``, ... of a channel, read a chunk at a time (``wals_ondisk``): the host
    holds its share, never the whole channel; ChannelError when the channel has no entries."""
    parts, offset = [], 0
    for chunk in wals_ondisk.iter_triplets(paths, config, hp):
        keep = np.arange((first - offset) % step, len(chunk), step)
        if keep.size:
            parts.append(triplets.Triplets(chunk.rows[keep], chunk.cols[keep], chunk.values[keep],
                                           None if chunk.weights is None else chunk.weights[keep],
                                           chunk.row_names, chunk.col_names))
        offset += len(chunk)
    if offset == 0:
        raise wals_data.no_entries(paths, config)
    if not parts:  # fewer entries than hosts
        return triplets.Triplets(*(np.zeros(0, np.int64),) * 2, np.zeros(0, np.float32))
    return triplets.concatenate(parts)


def _used(codes: np.ndarray, names: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray]:
    """(the names ``codes`` use, the entries of each), or (None, entries per index) without names."""
    counts = np.bincount(codes, minlength=0 if names is None else len(names))
    if names is None:
        return None, counts
    used = np.flatnonzero(counts)
    return names[used], counts[used]


def id_summary(share: Share) -> IdSummary:
    """The distinct ids of a share and their entry counts (``IdSummary``)."""
    row_names, row_counts = _used(share.rows, share.row_names)
    col_names, col_counts = _used(share.cols, share.col_names)
    return IdSummary(len(share.values), row_names, row_counts, col_names, col_counts)


def _matrix_index(codes: np.ndarray, names: np.ndarray | None, used: np.ndarray | None,
                  index_of_used: np.ndarray | None) -> np.ndarray:
    """The matrix index of each entry: ``index_of_used[i]`` is the index of the i-th name of the summary this
    host sent (``used``, sorted), the ids themselves without names."""
    if names is None or used is None or index_of_used is None:
        return codes
    return index_of_used[np.searchsorted(used, names[codes])]


def split(share: Share, summary: IdSummary, row_index: np.ndarray | None, col_index: np.ndarray | None,
          row_bounds: np.ndarray, col_bounds: np.ndarray) -> list[Piece]:
    """The share's entries in matrix indices cut by owner: pieces 0..N-1 by the host owning their row
    (rows ``row_bounds[r]``..``row_bounds[r + 1]`` - 1), N..2N-1 by the host owning their column."""
    rows = _matrix_index(share.rows, share.row_names, summary.row_names, row_index)
    cols = _matrix_index(share.cols, share.col_names, summary.col_names, col_index)
    pieces: list[Piece] = []
    for lines, bounds in ((rows, row_bounds), (cols, col_bounds)):
        owner = np.searchsorted(bounds, lines, side="right") - 1
        order = np.argsort(owner, kind="stable")
        cuts = np.searchsorted(owner[order], np.arange(len(bounds)))
        for r in range(len(bounds) - 1):
            part = order[cuts[r]:cuts[r + 1]]
            pieces.append((rows[part], cols[part], share.values[part]))
    return pieces


def block(lo: int, hi: int, by_column: bool, other_size: int, weights: tuple[np.ndarray, np.ndarray],
          alpha: float | None, *pieces: Piece) -> Block:
    """The block of rows (``by_column`` False) or columns ``lo``..``hi`` - 1 from the pieces every host sent
    for it, duplicates summed as the one-host matrix sums them, targets and extra weights as ``WALS.fit``
    computes them (``weights``: the row and column weight vectors)."""
    rows = np.concatenate([p[0] for p in pieces])
    cols = np.concatenate([p[1] for p in pieces])
    values = np.concatenate([p[2] for p in pieces])
    own, other = (cols, rows) if by_column else (rows, cols)
    own_weights, other_weights = weights[::-1] if by_column else weights
    matrix = sp.csr_matrix((values, (own - lo, other)), shape=(hi - lo, other_size), dtype=np.float32)
    matrix.sum_duplicates()
    lines = np.repeat(np.arange(lo, hi), np.diff(matrix.indptr))
    product = own_weights[lines] * other_weights[matrix.indices]
    target, extra = entry_terms(matrix.data, product, alpha)
    entries = CSR(np.ascontiguousarray(target, dtype=np.float32), matrix.indices.astype(np.int64),
                  matrix.indptr.astype(np.int64), other_size)
    return Block(lo, hi, entries, np.ascontiguousarray(extra, dtype=np.float32))


def block_facts(part: Block) -> tuple[float, np.ndarray, np.ndarray]:
    """(Σ extra weights in float64, indptr, int32 indices) of a row block: the driver's Σ_all w_ij and the
    training pattern the artifact stores (``WALSModel``'s ``seen``), values left out."""
    return (float(part.extra.sum(dtype=np.float64)), part.entries.indptr,
            part.entries.indices.astype(np.int32))


def _threads(num_threads: int) -> int:
    return num_threads or usable_cpus()


@dataclass(frozen=True)
class Solved:
    """A block's half-sweep: its new factors, their UᵀU in float64, the sparse part of the training loss over
    its entries (0 when not asked for), and the wall and CPU seconds the host spent on it."""

    factors: np.ndarray
    gram: np.ndarray
    loss: float
    seconds: float
    cpu_seconds: float


def placed(factors: np.ndarray) -> Solved:
    """A block's starting factors as a ``Solved`` (their Gramian with them), placed on its host by the driver."""
    factors = np.ascontiguousarray(factors, dtype=np.float32)
    return Solved(factors, gram64(factors), 0.0, 0.0, 0.0)


def solve(part: Block, previous: Solved, settings: dict[str, Any], with_loss: bool, *other: Solved) -> Solved:
    """The block's new factors re-solved against the fixed other side, given as its blocks' last ``Solved`` in
    order (``other``; dask brings them from the hosts that solved them), whose Gramians sum to its G: each host
    forms G itself, so a half-sweep starts as soon as the blocks it needs are solved. Warm-started from
    ``previous`` (this block's last factors: cg); with ``with_loss`` also the sparse part of the training loss over
    the block's entries (``kernels.row_losses`` summed)."""
    started, cpu = time.perf_counter(), time.thread_time()
    fixed = np.concatenate([block.factors for block in other]) if len(other) > 1 else other[0].factors
    G = gramian(np.sum([block.gram for block in other], axis=0), settings)
    factors = np.array(previous.factors, dtype=np.float32, order="C")
    w0, lam = float(settings["unobserved_weight"]), float(settings["regularization_coeff"])
    with numba_threads(_threads(settings["num_threads"])) as workers:
        kernels.solve(part.entries, part.extra, fixed, factors, w0, lam, settings["solver"], settings["cg_steps"],
                      workers, gram=G)
        loss = float(kernels.row_losses(part.entries, part.extra, factors, fixed, w0, workers).sum()) \
            if with_loss else 0.0
    return Solved(factors, gram64(factors), loss, time.perf_counter() - started, time.thread_time() - cpu)


def sums_of(result: Solved) -> Solved:
    """A ``solve`` result without its factors: what the driver reads of a half-sweep (Gramian, loss part,
    timings)."""
    return Solved(np.zeros((0, 0), np.float32), result.gram, result.loss, result.seconds, result.cpu_seconds)


def gramian(gram: np.ndarray, settings: dict[str, Any]) -> np.ndarray:
    """G = w0 YᵀY + λI of the fixed side (``kernels.gramian``) from YᵀY in float64."""
    k = gram.shape[0]
    G = float(settings["unobserved_weight"]) * gram + float(settings["regularization_coeff"]) * np.eye(k)
    return np.ascontiguousarray(G, dtype=np.float32)
