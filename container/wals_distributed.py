"""WALS on several hosts (distributed ALS on dask.distributed): the driver's side, run by the first host.

Every host's worker reads its own share of the ``train`` channel (``container.wals_shards``); the driver
builds the job's id maps from the hosts' distinct ids (the ids and order one host would build from all the
data), cuts the rows and the columns into one contiguous block per host, balanced by entries, and has the
hosts exchange their entries once (worker to worker) so each holds its row block and its column block.

Each half-sweep every host re-solves its block with the one-host kernels against the fixed side, which it
receives once, from the hosts that solved its blocks (dask moves them worker to worker), and its Gramian G,
which the driver sums from the hosts' per-block Gramians and sends to each. The driver computes the
sweep's training loss from the hosts' per-block sums, assembles the factors from the blocks (after every
sweep, while the hosts solve the next half, when test metrics on its own ``test`` channel or checkpoints need
them; else once at the end), stops early and checkpoints as one host does, and alone writes ``model/``: the
same artifact one host would write.
"""

from __future__ import annotations

import logging
import math
import operator
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import scipy.sparse as sp
from distributed import Future
from distributed.scheduler import KilledWorker

from algorithm.best_epoch import BestEpoch
from algorithm.checkpoint import CheckpointError, Checkpoints, TrainingStopped
from algorithm.schemas import JOB_SETTINGS
from algorithm.wals import WALS, gram64, weight_vector
from algorithm.wals_model import IdMap, WALSModel
from container import job, metrics_log, wals_data, wals_shards, wals_training
from container.config import ChannelConfig
from container.errors import ChannelError, ClientError
from container.paths import SageMakerPaths

if TYPE_CHECKING:
    from container.cluster import Cluster

log = logging.getLogger("train.wals")

# How often a wait for the hosts' tasks checks that every host is still in the job (seconds).
POLL_SECONDS = 1.0
# How long after a broken connection the driver waits for the scheduler to see which host left (seconds).
LOST_SECONDS = 10.0
# The bound on placing an array on a host (seconds).
SEND_SECONDS = 60.0
SOLVER_SETTINGS = ("unobserved_weight", "regularization_coeff", "solver", "cg_steps", "num_threads")


class HostLostError(ClientError):
    """A host left the job (its worker is gone from the scheduler) while the driver waited for it: the job ends
    with exit 1 and this reason, naming the host, in ``output/failure``."""


class _Hosts:
    """The job's hosts in rank order: tasks pinned to one host, arrays sent to them, and bounded waits that fail
    naming the host that left."""

    def __init__(self, cluster: Cluster) -> None:
        self.client = cluster.client
        self.names = tuple(cluster.hosts)
        self.addresses = tuple(cluster.workers[host] for host in self.names)
        self.sent = 0  # bytes of arrays the driver sent to the hosts (task arguments and scatters)
        self.received = 0  # bytes of arrays it gathered

    def __len__(self) -> int:
        return len(self.names)

    def on(self, rank: int, function: Callable[..., Any], *args: Any) -> Future:
        """``function(*args)`` on host ``rank`` only (its result stays there)."""
        return self.client.submit(function, *args, workers=[self.addresses[rank]], allow_other_workers=False,
                                  pure=False)

    def to(self, rank: int, value: Any, what: str) -> Future:
        """``value`` placed on host ``rank`` (bounded by ``SEND_SECONDS``: dask's scatter to a host that died
        while it was sent may never return)."""
        self.sent += _nbytes(value)
        pool = ThreadPoolExecutor(1)
        with self._connections(what):
            try:
                future: Future = pool.submit(self.client.scatter, [value], workers=[self.addresses[rank]],
                                             hash=False).result(timeout=SEND_SECONDS)[0]
            finally:
                pool.shutdown(wait=False)
        return future

    def sending(self, value: np.ndarray) -> np.ndarray:
        """``value`` as an argument of a task on every host (small arrays: it travels with the tasks)."""
        self.sent += len(self) * value.nbytes
        return value

    def result(self, futures: Sequence[Future], what: str) -> list[Any]:
        """The futures' results in order; a task's error is raised as it is, a host that leaves the job while
        they run is a ``HostLostError`` naming it."""
        results = []
        with self._connections(what):
            for future in futures:  # each wait bounded: a done result whose host then died is waited for again
                while True:
                    try:
                        results.append(future.result(timeout=POLL_SECONDS))
                        break
                    except TimeoutError:
                        self._check_alive(what)
        self.received += sum(_nbytes(value) for value in results)
        return list(results)

    @contextmanager
    def _connections(self, what: str) -> Iterator[None]:
        """A connection that breaks, a send that takes longer than ``SEND_SECONDS`` or tasks cancelled because
        data they need was lost is a ``HostLostError`` naming the host once the scheduler has seen it go (within
        ``LOST_SECONDS``), else the error as it is."""
        try:
            yield
        # CancelledError: tasks whose data a lost host held; KilledWorker: a task its host was running
        except (OSError, TimeoutError, CancelledError, KilledWorker):
            deadline = time.monotonic() + LOST_SECONDS
            while time.monotonic() < deadline:
                self._check_alive(what)
                time.sleep(POLL_SECONDS / 4)
            raise

    def _check_alive(self, what: str) -> None:
        present = set(self.client.scheduler_info(n_workers=-1)["workers"])
        for name, address in zip(self.names, self.addresses, strict=True):
            if address not in present:
                raise HostLostError(f"Host {name} ({address}) left the job while {what}")


def _nbytes(value: Any) -> int:
    if isinstance(value, np.ndarray):
        return value.nbytes
    if isinstance(value, wals_shards.Solved):
        return value.factors.nbytes + value.gram.nbytes
    if isinstance(value, tuple | list):
        return sum(_nbytes(v) for v in value)
    return 0


@dataclass(frozen=True)
class _JobIds:
    """The job's id maps, each host's matrix index of the ids it sent (None: its ids are the indices) and
    the entries of each row and column over all hosts."""

    row_ids: IdMap
    col_ids: IdMap
    row_index: list[np.ndarray | None]
    col_index: list[np.ndarray | None]
    row_counts: np.ndarray
    col_counts: np.ndarray


def _side_ids(names: list[np.ndarray | None], counts: list[np.ndarray], declared: int | None, what: str
              ) -> tuple[IdMap, list[np.ndarray | None], np.ndarray]:
    """One side's id map from the hosts' distinct ids, as ``wals_data.build_matrices`` builds it from all of
    them: names -> ``IdMap.from_ids`` of their union; matrix indices -> 0..declared-1 (or the largest + 1)."""
    if all(n is None for n in names):
        size = declared if declared is not None else max((c.size for c in counts), default=0)
        total = np.zeros(size, np.int64)
        for c in counts:
            total[:c.size] += c
        return IdMap.range(size), [None] * len(names), total
    given = [n for n in names if n is not None]
    union = np.unique(np.concatenate(given))
    id_map, index_of_union = IdMap.from_ids(union)
    total = np.zeros(len(id_map), np.int64)
    index: list[np.ndarray | None] = []
    for host_names, host_counts in zip(names, counts, strict=True):
        if host_names is None:
            if host_counts.size:
                raise ClientError(f"The hosts' train channels mix {what} ids given as indices (num_{what}s, "
                                  "RecordIO) with ids given as text: give every host the same format")
            index.append(None)
            continue
        mine = index_of_union[np.searchsorted(union, host_names)]
        np.add.at(total, mine, host_counts)
        index.append(mine)
    return id_map, index, total


def _job_ids(summaries: list[wals_shards.IdSummary], hp: dict[str, Any]) -> _JobIds:
    row_ids, row_index, row_counts = _side_ids([s.row_names for s in summaries],
                                               [s.row_counts for s in summaries], hp["num_rows"], "row")
    col_ids, col_index, col_counts = _side_ids([s.col_names for s in summaries],
                                               [s.col_counts for s in summaries], hp["num_cols"], "col")
    return _JobIds(row_ids, col_ids, row_index, col_index, row_counts, col_counts)


def block_bounds(counts: np.ndarray, n_hosts: int) -> np.ndarray:
    """Bounds of ``n_hosts`` contiguous blocks of lines (rows or columns) with about equal entries each:
    host r owns lines bounds[r]..bounds[r + 1] - 1."""
    cumulative = np.cumsum(counts)
    total = int(cumulative[-1]) if cumulative.size else 0
    inner = np.searchsorted(cumulative, total * np.arange(1, n_hosts) / n_hosts, side="left") + 1
    bounds = np.concatenate([[0], np.minimum(inner, counts.size), [counts.size]]).astype(np.int64)
    return np.maximum.accumulate(bounds)


@dataclass
class _Blocks:
    """One side's blocks on the hosts: their bounds, the blocks, and each block's last ``Solved`` (its factors:
    the other side's fixed side and this side's next warm start; its Gramian)."""

    bounds: np.ndarray
    blocks: list[Future]
    solved: list[Future]


def _weight_vectors(paths: SageMakerPaths, hp: dict[str, Any], channels: dict[str, ChannelConfig],
                    ids: _JobIds, params: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """The row and column weight vectors, from the driver's ``row_weights``/``col_weights`` channels when
    given (set in ``params`` too, for the artifact), else the scalar hyperparameters."""
    vectors = []
    for side, id_map in zip(wals_training.SIDES, (ids.row_ids, ids.col_ids), strict=True):
        name = f"{side}_weights"
        config = job.optional_channel(paths, channels, name)
        if config is not None:
            params[name] = wals_data.read_weights(paths, config, id_map, hp[name], hp[f"num_{side}s"])
        vectors.append(weight_vector(params[name], len(id_map), name))
    return vectors[0], vectors[1]


def _shuffle(hosts: _Hosts, shares: list[Future], summaries: list[wals_shards.IdSummary], ids: _JobIds,
             weights: tuple[np.ndarray, np.ndarray], alpha: float | None) -> tuple[_Blocks, _Blocks]:
    """Each host's entries cut by the owner of their row and of their column and moved to it (worker to
    worker, through dask), each owner building its row block and its column block."""
    n = len(hosts)
    row_bounds, col_bounds = block_bounds(ids.row_counts, n), block_bounds(ids.col_counts, n)
    pieces = []
    for s in range(n):
        cut = hosts.on(s, wals_shards.split, shares[s], summaries[s], ids.row_index[s], ids.col_index[s],
                       row_bounds, col_bounds)
        pieces.append([hosts.on(s, operator.getitem, cut, i) for i in range(2 * n)])
    sides = []
    for by_column, bounds, other_size, first in ((False, row_bounds, len(ids.col_ids), 0),
                                                 (True, col_bounds, len(ids.row_ids), n)):
        blocks = [hosts.on(r, wals_shards.block, int(bounds[r]), int(bounds[r + 1]), by_column, other_size,
                           weights, alpha, *[pieces[s][first + r] for s in range(n)]) for r in range(n)]
        sides.append(_Blocks(bounds, blocks, []))
    return sides[0], sides[1]


def _seen(hosts: _Hosts, rows: _Blocks, shape: tuple[int, int]) -> tuple[sp.csr_matrix, float]:
    """The training pattern (what the artifact stores for ``exclude_seen``; values left out) and
    Σ extra weights, from the row blocks."""
    facts = hosts.result([hosts.on(r, wals_shards.block_facts, rows.blocks[r]) for r in range(len(hosts))],
                         "building the row blocks")
    indptr = [np.zeros(1, np.int64)]
    offset = 0
    for _, block_indptr, _ in facts:
        indptr.append(block_indptr[1:] + offset)
        offset += int(block_indptr[-1])
    indices = np.concatenate([f[2] for f in facts])
    seen = sp.csr_matrix((np.ones(indices.size, np.float32), indices, np.concatenate(indptr)), shape=shape)
    return seen, math.fsum(f[0] for f in facts)


def _half(hosts: _Hosts, side: _Blocks, other: _Blocks, settings: dict[str, Any], with_loss: bool) -> list[Future]:
    """Every host re-solves its block of ``side`` against the other side's last solves (fetched from the hosts
    that hold them); each block's ``sums_of`` future, ``side.solved`` set to the new solves."""
    side.solved = [hosts.on(r, wals_shards.solve, side.blocks[r], side.solved[r], settings, with_loss,
                            *other.solved) for r in range(len(hosts))]
    return [hosts.on(r, wals_shards.sums_of, side.solved[r]) for r in range(len(hosts))]


@dataclass
class _Sweep:
    """A sweep's tasks on the hosts: each half's ``sums_of`` futures (rows: none when the sweep resumes at its
    column half) and the solves it ends with."""

    row_sums: list[Future]
    col_sums: list[Future]
    rows: list[Future]
    cols: list[Future]

    def futures(self) -> list[Future]:
        return [*self.row_sums, *self.col_sums, *self.rows, *self.cols]


def _submit_sweep(hosts: _Hosts, rows: _Blocks, cols: _Blocks, settings: dict[str, Any], from_columns: bool
                  ) -> _Sweep:
    """A whole sweep's tasks (from its column half ``from_columns``): dask starts each half as soon as the
    blocks it needs are solved, without the driver in between."""
    row_sums = [] if from_columns else _half(hosts, rows, cols, settings, False)
    col_sums = _half(hosts, cols, rows, settings, True)
    return _Sweep(row_sums, col_sums, list(rows.solved), list(cols.solved))


def _sums(hosts: _Hosts, sums: list[Future], what: str) -> tuple[np.ndarray, float, list[wals_shards.Solved]]:
    """Σ of the hosts' Gramians (float64) and sparse loss parts of a half-sweep, and each host's result
    without its factors (for its timings)."""
    parts = hosts.result(sums, what)
    return np.sum([s.gram for s in parts], axis=0), math.fsum(s.loss for s in parts), parts


def _per_host(*halves: list[wals_shards.Solved]) -> list[wals_shards.Solved]:
    """Each host's solve seconds (wall, CPU) summed over the half-sweeps given (an empty list: not run)."""
    hosts = max(len(h) for h in halves)
    return [wals_shards.Solved(np.zeros(0), np.zeros(0), 0.0, sum(h[r].seconds for h in halves if h),
                               sum(h[r].cpu_seconds for h in halves if h)) for r in range(hosts)]


def _assemble(hosts: _Hosts, solved: list[Future], what: str) -> np.ndarray:
    """A side's factors from its blocks' solves, in order."""
    return np.concatenate([block.factors for block in hosts.result(solved, what)])


def train_wals_distributed(cluster: Cluster, paths: SageMakerPaths, hp: dict[str, Any],
                           channels: dict[str, ChannelConfig], checkpoints: Checkpoints) -> None:
    """Fit WALS on the ``train`` channels of every host of ``cluster`` (``test``, ``row_weights``,
    ``col_weights``, ``model`` read from this host's channels), resuming and writing ``checkpoints``, and
    write the model with its id maps to ``model/``: what ``train_wals`` does on one host with all the data."""
    train_config = job.required_channel(paths, channels, "train")
    test_config = job.optional_channel(paths, channels, "test")
    hosts = _Hosts(cluster)
    n = len(hosts)
    if hp["data_loading"] == "stream":
        log.warning("data_loading=stream: each of the %d hosts reads its share of 'train' into memory", n)
    shares = [hosts.on(r, wals_shards.read_share, r, n, train_config, hp) for r in range(n)]
    summaries = hosts.result([hosts.on(r, wals_shards.id_summary, shares[r]) for r in range(n)],
                             "reading the train channel")
    for name, summary in zip(hosts.names, summaries, strict=True):
        log.info("train: host %s has %d entries", name, summary.entries)
    if not any(s.entries for s in summaries):
        raise ChannelError(f"Channel 'train' has no entries on any of the {n} hosts; expected "
                           "row,col,value[,weight] lines or RecordIO")
    ids = _job_ids(summaries, hp)
    shape = (len(ids.row_ids), len(ids.col_ids))
    params = {k: v for k, v in hp.items() if k not in (*JOB_SETTINGS, "num_rows", "num_cols")}
    row_weights, col_weights = _weight_vectors(paths, hp, channels, ids, params)
    weights = (hosts.sending(row_weights), hosts.sending(col_weights))
    rows, cols = _shuffle(hosts, shares, summaries, ids, weights, hp["alpha"])
    del shares
    seen, extra_sum = _seen(hosts, rows, shape)
    log.info("train: %d entries (%d distinct), %d rows x %d columns (%s row ids, %s column ids) on %d hosts; "
             "rows cut at %s, columns at %s", sum(s.entries for s in summaries), seen.nnz, shape[0], shape[1],
             ids.row_ids.kind, ids.col_ids.kind, n, rows.bounds.tolist(), cols.bounds.tolist())
    wals_training.check_empty_lines(seen, (ids.row_ids, ids.col_ids), hp)
    test = None
    if test_config is not None:
        test = wals_data.held_out_matrix(wals_data.read_triplets(paths, test_config, hp), ids.row_ids,
                                         ids.col_ids)
    params["num_threads"] = job.thread_count(params["num_threads"])
    model = WALS(**params)
    model._check_params()
    init = wals_training.initial_factors(paths, hp, (ids.row_ids, ids.col_ids))
    U, V = model._initial_factors(shape[0], shape[1], init.get("init_row_factors"), init.get("init_col_factors"))
    with checkpoints.stop.deferred():  # SIGTERM from here on: the fit stops at a safe point, model/ stays whole
        epoch_log = job.EpochLog(hosts.names[0], hp["max_sweeps"], seen.nnz, unit="sweep")
        started = time.monotonic()
        try:
            U, V = _sweeps(hosts, model, (rows, cols), (U, V), (row_weights, col_weights), extra_sum, test, seen,
                           epoch_log, checkpoints, {k: hp[k] for k in SOLVER_SETTINGS})
        except CheckpointError as err:
            raise ClientError(str(err)) from None
        stop = job.EarlyStop(model.stopping_metric, hp["early_stopping_patience"], hp["early_stopping_tolerance"])
        epoch_log.finish(time.monotonic() - started, model.best_sweep_, stop)
        if model.best_sweep_ in epoch_log.history:
            train_m, test_m = epoch_log.history[model.best_sweep_]
            for line in metrics_log.final_lines(hosts.names[0], "train", train_m):
                log.info(line)
            for line in metrics_log.final_lines(hosts.names[0], "test", test_m or {}):
                log.info(line)
        job.save_model(paths, WALSModel(model, ids.row_ids, ids.col_ids, seen))
        checkpoints.stop.complete()


def _sweeps(hosts: _Hosts, model: WALS, sides: tuple[_Blocks, _Blocks], factors: tuple[np.ndarray, np.ndarray],
            weights: tuple[np.ndarray, np.ndarray], extra_sum: float, test: sp.csr_matrix | None,
            seen: sp.csr_matrix, on_epoch: job.EpochLog, checkpoints: Checkpoints, settings: dict[str, Any]
            ) -> tuple[np.ndarray, np.ndarray]:
    """The sweep loop of ``WALS.fit`` over the hosts' blocks; sets the model's fitted state and returns the
    factors it holds. The driver gathers the factors after every sweep when test metrics or checkpoints need
    them, else once at the end."""
    rows, cols = sides
    U, V = factors
    n, m = U.shape[0], V.shape[0]
    w0 = float(model.unobserved_weight)
    sum_weights = w0 * n * m + extra_sum
    early_stopping = test is not None and model.early_stopping_patience > 0
    best = BestEpoch(model.early_stopping_tolerance, keep_weights=early_stopping,
                     higher_is_better=model.alpha is not None)
    identity = model._checkpoint_identity((n, m), seen.nnz, test, weights[0], weights[1], None)
    U, V, start, half = WALS.resume(checkpoints, identity, best, (U, V))
    for side, values in ((rows, U), (cols, V)):
        side.solved = [hosts.to(r, wals_shards.placed(values[side.bounds[r]:side.bounds[r + 1]]),
                                "sending the initial factors") for r in range(len(hosts))]
    gram_u = gram64(U)  # (a sweep resumed at its column half solves against it)
    exclude = seen if model.alpha is not None else None
    every_sweep = test is not None or checkpoints.enabled  # the factors are needed after every sweep
    workers = model.num_threads or 1
    sweep = start - 1
    current: _Sweep | None = None
    upcoming: _Sweep | None = None
    if start < model.max_sweeps:
        upcoming = _submit_sweep(hosts, rows, cols, settings, from_columns=bool(half))
    done = time.perf_counter()
    try:
        for sweep in range(start, model.max_sweeps):
            sent, received = hosts.sent, hosts.received
            current = upcoming
            if current is None:
                break
            if sweep + 1 < model.max_sweeps:  # the hosts solve the next sweep while the driver reads this one
                upcoming = _submit_sweep(hosts, rows, cols, settings, from_columns=False)
            timings: list[wals_shards.Solved] = []
            if current.row_sums:
                gram_u, _, timings = _sums(hosts, current.row_sums, f"solving the rows of sweep {sweep}")
            what = f"solving the columns of sweep {sweep}"
            gram_v, sparse_part, col_timings = _sums(hosts, current.col_sums, what)
            seconds, done = time.perf_counter() - done, time.perf_counter()
            if every_sweep:
                U, V = _assemble(hosts, current.rows, what), _assemble(hosts, current.cols, what)
            between = (len(hosts) - 1) * (U.nbytes + V.nbytes) / 2**20
            log.info("Sweep %d: %.3f s on %d hosts (solving, per host, wall/CPU s: %s); %.1f MiB of factors between "
                     "the hosts, %.1f MiB sent by the driver, %.1f MiB gathered", sweep, seconds, len(hosts),
                     ", ".join(f"{h} {t.seconds:.2f}/{t.cpu_seconds:.2f}" for h, t in
                               zip(hosts.names, _per_host(timings, col_timings), strict=True)),
                     between, (hosts.sent - sent) / 2**20, (hosts.received - received) / 2**20)
            train = model.train_metrics(sparse_part, gram_u, gram_v, sum_weights)
            if not math.isfinite(train["loss"]):
                raise ClientError(model._divergence_message(sweep, f"the loss became {train['loss']}"))
            metrics = None
            if test is not None:
                metrics = model._test_metrics(test, exclude, U, V, workers)
                # U and V are new arrays every sweep (assembled from the hosts' blocks): the best one is kept as it is
                best.update(sweep, metrics[model.stopping_metric], partial(tuple, (U, V)))
            on_epoch(sweep, train, metrics, seconds)
            if early_stopping and best.stale >= model.early_stopping_patience:
                break
            if sweep + 1 < model.max_sweeps:
                arrays = {"row_factors": U, "col_factors": V}
                if best.weights is not None:
                    arrays["best_row_factors"], arrays["best_col_factors"] = best.weights
                path = checkpoints.save("wals", identity, {"sweep": sweep + 1, "half": 0, "best": best.progress()},
                                        arrays)
                if checkpoints.stop_requested:
                    raise TrainingStopped(f"after sweep {sweep}", path)
    finally:  # a sweep submitted ahead and not read (early stopping, a stop, an error) stops on the hosts
        if upcoming is not None and upcoming is not current:
            hosts.client.cancel(upcoming.futures())
    if not every_sweep and current is not None:
        U = _assemble(hosts, current.rows, "gathering the row factors")
        V = _assemble(hosts, current.cols, "gathering the column factors")
    best_sweep = sweep
    if best.weights is not None:
        (U, V), best_sweep = best.weights, best.epoch
    for name, values in (("row factors", U), ("column factors", V)):
        if not np.isfinite(values).all():
            raise ClientError(model._divergence_message(sweep, f"the {name} have non-finite values"))
    model.row_factors_, model.col_factors_ = U, V
    model.row_weights_, model.col_weights_ = weights
    model.best_sweep_ = best_sweep
    model.best_score_ = None if test is None else (
        best.score if early_stopping and math.isfinite(best.score) else best.last)
    model.n_sweeps_ = sweep + 1
    model.n_threads_ = model.num_threads
    return U, V
