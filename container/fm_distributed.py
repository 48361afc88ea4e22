"""FM on several hosts, data parallel: each host's worker trains an ``FMReplica`` on its share of the ``train``
channel with the epoch kernels; every ``sync_every`` mini-batches the driver combines the replicas' hot rows and a
slice of the other used rows, each used row once an epoch (``algorithm.fm_replica``); it scores the ``test``
channel once per epoch, stops early and writes ``model/`` as a one-host job does (docs/distributed.md).

Shares: a ``ShardedByS3Key`` channel is the host's own shard, whole; a ``FullyReplicated`` one is every N-th row
from the host's rank (row r stays on host r % N), so N hosts still split the work. The driver never gathers the
training data: only table rows (and metrics) cross the network.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from distributed.protocol import to_serialize

from algorithm.best_epoch import BestEpoch
from algorithm.checkpoint import CheckpointError, Checkpoints, TrainingStopped
from algorithm.feature_layout import FeatureLayout
from algorithm.fm import FactorizationMachines
from algorithm.fm_replica import (
    STATE,
    Block,
    EpochSums,
    FMReplica,
    Part,
    SyncPlan,
    column_rules,
    combine,
    initial_state,
    sync_plan,
)
from algorithm.loss_trend import RisingLoss
from algorithm.metrics import STOPPING_METRIC, train_metrics
from algorithm.schemas import JOB_SETTINGS
from container import data_loading, job, metrics_log
from container import fm_distributed_checkpoints as host_checkpoints
from container.channel_stream import read_every_nth
from container.channels import read_channel
from container.cluster import Cluster, worker_handler
from container.config import ChannelConfig, read_input_data_config
from container.errors import ClientError
from container.fm_training import IN_MEMORY_BYTES_PER_BYTE, _check_labels, _check_memory, _model, train_fm
from container.paths import SageMakerPaths

log = logging.getLogger("train.fm")

_replicas: dict[str, FMReplica] = {}  # this host's replica of each running job (held by its worker)


# ------------------------------------------------------------------------------------- tasks on each host


def _load_share(key: str, hp: dict[str, Any], rank: int, n_hosts: int, early_stopping: bool) -> tuple[int, int, str]:
    """Read this host's ``train`` channel, keep its share and hold its replica; (rows, nonzeros, distribution)."""
    paths = SageMakerPaths.from_env()
    channels = read_input_data_config(paths)
    config = job.required_channel(paths, channels, "train")
    params = {k: v for k, v in hp.items() if k not in JOB_SETTINGS}
    params["num_threads"] = job.thread_count(params["num_threads"])
    if config.distribution == "ShardedByS3Key" or n_hosts == 1:
        data = read_channel(paths, config, feature_dim=params["feature_dim"])
    else:  # every n-th row, read block by block: the host never holds the whole channel
        data = read_every_nth(paths, config, feature_dim=params["feature_dim"], first=rank, step=n_hosts)
    if data.n_rows == 0:
        raise ClientError(f"The 'train' channel of this host has no rows for it ({config.distribution}, host "
                          f"{rank + 1} of {n_hosts}): give every host training data")
    labels = _check_labels(data, "train", params["predictor_type"])
    _check_memory(params, data.nbytes, early_stopping)
    _replicas[key] = FMReplica(FactorizationMachines(**params), data, labels, data.weights, rank)
    log.info("train share of this host: %d rows, %d nonzeros (%s, rank %d of %d)", data.n_rows, data.nnz,
             config.distribution, rank, n_hosts)
    return data.n_rows, data.nnz, config.distribution


def _feature_counts(key: str) -> np.ndarray:
    return _replicas[key].feature_counts()


def _share_facts(key: str) -> tuple[int, int, bool]:
    """This host's share for the checkpoint identity: rows, nonzeros, whether its rows carry loss weights."""
    replica = _replicas[key]
    return replica.rows.n_rows, replica.rows.nnz, bool(replica.row_weight.size)


def _steps(key: str) -> int:
    """The optimizer steps this host's replica took (a host counts its own mini-batches)."""
    return _replicas[key].step


def _start(key: str, state: tuple[np.ndarray, np.ndarray, int, int], steps: int, plan: SyncPlan) -> None:
    """Start this host's replica from ``state`` (``initial_state``'s) with its own ``steps`` optimizer steps,
    renumbered by ``plan``."""
    _replicas[key].start(state[0], state[1], steps, state[3], plan)


class Rounds:
    """The rounds of this host's replica of a job, pipelined: a call queues a step behind the round in training,
    which takes the combination of the block sent the call before, takes this round's changes for the call to send
    and trains the next round at once, in the replica's one training thread (no thread in between when the call
    comes before the round ends), so a host trains on while the driver combines. Held by each other host's worker
    (called by the driver on a connection of its own: ``ROUND``) and, in-process, by the driver for its own
    replica."""

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="fm-round")
        self._last: Future[None] | None = None  # the last step queued

    def submit(self, key: str, update: Block | None, part: Part | None, batches: int | None,
               epoch: int | None = None) -> Future[Block | None]:
        """Queue the step after the round in training: apply ``update`` (the combination of the block sent last),
        take the changes of ``part`` (``FMReplica.changes``; None: none), begin ``epoch`` (when given), then train
        ``batches`` mini-batches (0: the rest of the epoch; None: none). The changes, once taken (a failure of an
        earlier round's training, or of this step, instead)."""
        replica, before = _replicas[key], self._last
        taken: Future[Block | None] = Future()

        def step() -> None:
            try:
                if before is not None:
                    before.result()  # (done: the one thread ran it) an earlier round's failure ends the rounds
                if update is not None:
                    replica.apply(update)
                changes = None if part is None else replica.changes(part)
                if epoch is not None:
                    replica.begin_epoch(epoch)
            except BaseException as err:
                taken.set_exception(err)
                raise
            taken.set_result(changes)
            if batches is not None:
                replica.train(batches)

        self._last = self._pool.submit(step)
        return taken

    def round(self, key: str, update: Block | None, part: Part | None, batches: int | None,
              epoch: int | None = None) -> Block | None:
        """``submit``, waiting for the changes."""
        return self.submit(key, update, part, batches, epoch).result()

    def close(self) -> None:
        self._pool.shutdown()


ROUND = "fm_round"  # the worker handler of the driver's round calls
_rounds: dict[str, Rounds] = {}  # this host's rounds of each running job (held by its worker)


async def _round(key: str, call: tuple[Block | None, Part | None, int | None, int | None]) -> Any:
    """A driver's round call on this host (``ROUND``): ``Rounds.submit`` of job ``key`` with ``call``'s
    arguments; its changes once taken."""
    changes = await asyncio.wrap_future(_rounds[key].submit(key, *call))
    return None if changes is None else to_serialize(changes)


def _open_rounds(key: str) -> None:
    """Hold this host's rounds of job ``key``, and serve the driver's round calls."""
    _rounds[key] = Rounds()
    worker_handler(ROUND, _round)


def _close_rounds(key: str) -> None:
    rounds = _rounds.pop(key, None)
    if rounds is not None:
        rounds.close()


def _round_place(key: str) -> tuple[int, int, np.ndarray, float, dict[str, np.ndarray], int]:
    """Between two rounds (nothing in training or in flight): this host's share's rows, its place in the epoch
    (``FMReplica.epoch_progress``), its own table (``FMReplica.round_arrays``) and optimizer steps."""
    replica = _replicas[key]
    return (replica.rows.n_rows, *replica.epoch_progress(), replica.round_arrays(), replica.step)


def _resume_round(key: str, epoch: int, position: int, row_scores: np.ndarray, loss: float,
                  arrays: dict[str, np.ndarray], step: int) -> None:
    """Put this host back where ``_round_place`` found it in ``epoch``."""
    replica = _replicas[key]
    replica.restore(arrays, step)
    replica.resume_epoch(epoch, position, row_scores, loss)


def _epoch_sums(key: str) -> EpochSums:
    return _replicas[key].epoch_sums()


def _final_sums(key: str, weights: tuple[np.ndarray, np.ndarray, int] | None) -> tuple[int, dict[str, float]]:
    """Rows and train metrics of this host's share scored with the final weights (``weights``: early stopping's
    best epoch, else the replica's own, the same on every host)."""
    replica = _replicas[key]
    if weights is not None:
        replica.bias, replica.table, replica.step = weights[0].copy(), weights[1].copy(), weights[2]
    return replica.rows.n_rows, train_metrics(replica.model.predictor_type, replica.y,
                                              replica.scores(replica.rows))


def _drop(key: str) -> None:
    _replicas.pop(key, None)


# ------------------------------------------------------------------------------------------- the driver


def single_host_reason(paths: SageMakerPaths, hp: dict[str, Any], channels: dict[str, ChannelConfig], n_hosts: int
                       ) -> str | None:
    """Why this job trains on the first host alone (the user's settings), None when it trains on every host.
    With ``data_loading=auto`` a host's share decides: a FullyReplicated channel's size over ``n_hosts``."""
    train_config = job.required_channel(paths, channels, "train")
    share = 1.0 if train_config.distribution == "ShardedByS3Key" else 1.0 / n_hosts
    if data_loading.streams(paths, train_config, hp["data_loading"], IN_MEMORY_BYTES_PER_BYTE, share):
        return ("the 'train' channel is streamed (Pipe mode with data_loading=auto, data_loading=stream, or more "
                "data than memory); training on several hosts reads each host's share into memory: set "
                "data_loading=memory (File or Pipe mode) when a host's share fits")
    return None


def train_fm_distributed(cluster: Cluster, paths: SageMakerPaths, hp: dict[str, Any],
                         channels: dict[str, ChannelConfig], checkpoints: Checkpoints) -> None:
    """Fit one FM model on every host's share of ``train`` (``test`` scored here) and write it to ``model/``."""
    host = cluster.hosts[0]
    reason = single_host_reason(paths, hp, channels, len(cluster.hosts))
    if reason is not None:
        log.warning("This job trains on the first host %s alone, the other hosts (%s) end without training: %s",
                    host, ", ".join(cluster.hosts[1:]), reason)
        train_fm(paths, hp, channels, host, checkpoints)
        return
    if checkpoints.enabled:
        log.info("Checkpoints on several hosts: the first host writes one at every epoch end (not within epochs)")
    key = uuid.uuid4().hex
    try:
        with checkpoints.stop.deferred():  # SIGTERM: the driver stops between rounds, model/ stays whole
            _fit(cluster, paths, hp, channels, checkpoints, key)
    except CheckpointError as err:
        raise ClientError(str(err)) from None
    else:
        cluster.each(_drop, key)
    finally:
        _replicas.pop(key, None)


def _fit(cluster: Cluster, paths: SageMakerPaths, hp: dict[str, Any], channels: dict[str, ChannelConfig],
         checkpoints: Checkpoints, key: str) -> None:
    host, hosts, n = cluster.hosts[0], cluster.hosts, len(cluster.hosts)
    params = {k: v for k, v in hp.items() if k not in JOB_SETTINGS}
    predictor_type, epochs = params["predictor_type"], params["epochs"]
    test_config = job.optional_channel(paths, channels, "test")
    early_stopping = test_config is not None and params["early_stopping_patience"] > 0
    loaded = cluster.results({h: cluster.submit(h, _load_share, key, hp, rank, n, early_stopping)
                              for rank, h in enumerate(hosts)})
    total_rows = sum(rows for rows, _, _ in loaded.values())
    log.info("train: %d rows on %d hosts (%s)", total_rows, n,
             ", ".join(f"{h}: {rows} rows, {distribution}" for h, (rows, _, distribution) in loaded.items()))
    test, y_test = None, None
    if test_config is not None:
        test = read_channel(paths, test_config, feature_dim=params["feature_dim"])
        y_test = _check_labels(test, "test", predictor_type)
        log.info("test: %d rows, %d nonzeros (scored on %s)", test.n_rows, test.nnz, host)

    model = _model(paths, {**params, "num_threads": job.thread_count(params["num_threads"])})
    local = _replicas[key]  # the driver's own worker runs in this process: its replica holds the combined model
    best = BestEpoch(params["early_stopping_tolerance"], keep_weights=early_stopping)
    identity = host_checkpoints.identity(model, cluster.each(_share_facts, key).values(),
                                         None if test is None else test.n_rows)
    resumed = host_checkpoints.resume(checkpoints, identity, best, [loaded[h][0] for h in hosts], local.n_threads,
                                      model.deterministic)
    state = initial_state(model) if resumed is None else resumed.state
    steps = [state[2]] * n if resumed is None else resumed.host_steps
    batches = hp["sync_every"]
    counts = sum(cluster.results({h: cluster.submit(h, _feature_counts, key) for h in hosts}).values())
    plan = sync_plan(np.asarray(counts), n * batches * model.mini_batch_size, total_rows)
    if best.weights is not None:  # a resumed best epoch's copy (users' ids) in the replicas' rows
        FeatureLayout.from_order(plan.order).to_training(best.weights[1])
    state_future, plan_future = (cluster.client.scatter(part, broadcast=True, hash=False) for part in (state, plan))
    cluster.results({h: cluster.submit(h, _start, key, state_future, steps[rank], plan_future)
                     for rank, h in enumerate(hosts)})
    start, warned, losses = (0, False, []) if resumed is None else (resumed.epoch, resumed.warned, resumed.losses)
    checkpoint = None if resumed is None else checkpoints.meta_path  # the last one written: a stop resumes it
    resumed_round = 0
    if resumed is not None and resumed.within is not None:
        within = resumed.within
        cluster.results({h: cluster.submit(h, _resume_round, key, start, within.positions[rank], within.scores[rank],
                                           within.losses[rank], within.arrays[rank], steps[rank])
                         for rank, h in enumerate(hosts)})
        resumed_round = within.round
    del state, state_future, plan_future, counts, resumed
    size = batches * model.mini_batch_size
    n_rounds = 1 if batches == 0 else max(math.ceil(rows / size) for rows, _, _ in loaded.values())
    log.info("Training on %d hosts in %d round(s) an epoch, combining after each round the weights of the %d most "
             "used features and of a slice of the other %d used ones (each once an epoch); each host keeps its own "
             "optimizer state between (combined for early stopping's best epoch, checkpoints and the model)", n,
             n_rounds, plan.hot, plan.used - plan.hot)

    exchange = _Exchange(cluster, key)
    trend: RisingLoss | None = None
    epoch_log = job.EpochLog(host, epochs, total_rows)
    stopped, fit_seconds, epoch = None, 0.0, start - 1

    def snapshot() -> tuple[np.ndarray, np.ndarray, int]:
        exchange.state()  # the best epoch's copy holds every host's optimizer state
        return local.snapshot()

    def save_within(epoch: int, rounds: int) -> Path | None:
        """The checkpoint after ``rounds`` rounds of ``epoch``: every host's own table and place (the hosts
        stopped between two rounds, every combination sent taken)."""
        placed = cluster.each(_round_place, key)
        places = [placed[h] for h in hosts]
        rows, positions, scores, host_losses, arrays, host_steps = (list(column) for column in zip(*places,
                                                                                                  strict=True))
        within = host_checkpoints.Within(rounds, rows, positions, scores, host_losses, arrays)
        return host_checkpoints.save(checkpoints, identity, epoch, local, host_steps, best,
                                     losses if trend is None else trend.losses, warned, sum(host_losses), within)

    for epoch in range(start, epochs):
        started = time.monotonic()
        syncs, sent, waited = exchange.syncs, exchange.sent, exchange.waited
        try:
            exchange.epoch(n_rounds, batches, checkpoints, epoch, save_within if checkpoints.enabled else None,
                           resumed_round if epoch == start else 0)
        except TrainingStopped as stopping:  # between rounds, the last checkpoint written: a restarted job resumes it
            where = stopping.where
            if stopping.checkpoint is None and checkpoint is not None:
                where = f"{where}, before its end (a restarted job trains it again from its start)"
            raise TrainingStopped(where, stopping.checkpoint or checkpoint) from None
        seconds = time.monotonic() - started
        fit_seconds += seconds
        log.info("Epoch %d: %d synchronisation(s) of the %d hosts, %.2f MB sent per synchronisation on average; "
                 "%.2f s of the epoch's %.2f s waiting for the other hosts", epoch, exchange.syncs - syncs, n,
                 (exchange.sent - sent) / max(exchange.syncs - syncs, 1) / 1e6, exchange.waited - waited, seconds)
        sums = list(cluster.each(_epoch_sums, key).values())
        loss = sum(s.loss for s in sums)
        weight = sum(s.weight for s in sums)
        if not math.isfinite(loss):
            raise ClientError(model._divergence_message(epoch, f"the training loss became {loss}"))
        if trend is None:
            trend = RisingLoss(sum(s.constant_loss * s.weight for s in sums) / weight)
            trend.losses = list(losses)  # (a resumed fit's earlier epochs)
        test_metrics = None
        if test is not None and y_test is not None:
            test_metrics = train_metrics(predictor_type, y_test, local.scores(test))
            best.update(epoch, test_metrics[STOPPING_METRIC[predictor_type]], snapshot)
        epoch_log(epoch, _weighted([(s.rows, s.metrics) for s in sums]), test_metrics, seconds)
        if trend.update(loss / weight) and not warned:
            warned = True
            if model._warn_diverging(epoch, trend, best):
                stopped = "diverging"
                break
        if early_stopping and best.stale >= params["early_stopping_patience"]:
            stopped = "early_stopping"
            break
        if epoch + 1 < epochs:
            if checkpoints.enabled:
                exchange.state()  # the checkpoint holds every host's optimizer state
                host_steps = cluster.each(_steps, key)
                checkpoint = host_checkpoints.save(checkpoints, identity, epoch + 1, local,
                                                   [host_steps[h] for h in hosts], best, trend.losses, warned, loss)
            if checkpoints.stop_requested:
                raise TrainingStopped(f"after epoch {epoch}", checkpoint)
    if best.weights is None:
        exchange.state()  # the model's optimizer state: every host's
    exchange.close()
    rollback = best.weights
    finals = cluster.each(_final_sums, key, rollback)
    fitted = local.keep_fit(epoch, best, stopped, evaluated=test is not None, early_stopping=early_stopping)
    stop = job.EarlyStop(STOPPING_METRIC[predictor_type], params["early_stopping_patience"],
                         params["early_stopping_tolerance"])
    epoch_log.finish(fit_seconds, fitted.best_epoch_, stop if fitted.stopped_early_ == "early_stopping" else None)
    for line in metrics_log.final_lines(host, "train", _weighted(list(finals.values()))):
        log.info(line)
    if test is not None and y_test is not None:
        for line in metrics_log.final_lines(host, "test", train_metrics(predictor_type, y_test,
                                                                         fitted.predict_scores(test))):
            log.info(line)
    job.save_model(paths, fitted)
    checkpoints.stop.complete()


class _Exchange:
    """The driver's side of the rounds (``Rounds`` on every host, pipelined): each epoch's rounds, the combination
    of every host's optimizer state when the fit needs it whole, and what they cost (combinations, bytes sent over
    the network, seconds waiting for the other hosts)."""

    def __init__(self, cluster: Cluster, key: str) -> None:
        self.cluster, self.key = cluster, key
        self.local = _replicas[key]
        self.own = Rounds()  # the driver's replica: its worker runs in this process
        self.remote = cluster.hosts[1:]
        cluster.results({h: cluster.submit(h, _open_rounds, key) for h in self.remote})
        self.comms = {h: cluster.connect(h) for h in self.remote}
        self.rules = column_rules(self.local.layout, self.local.model.num_factors)
        self.pending: Block | None = None  # the last combination, which the other hosts take with their next call
        self.state_pending = False  # pending combines the optimizer state (``state``): taken before training on
        self._out: dict[tuple[int, ...], np.ndarray] = {}  # a combination's rows by shape, reused (``_call``)
        self.syncs = self.sent = 0
        self.waited = 0.0

    def _call(self, update: Block | None, own_update: Block | None, part: Part | None, batches: int | None,
              epoch: int | None = None) -> Block | None:
        """One call on every host (``Rounds.round``); the combination of their changes of ``part``."""
        call = to_serialize((update, part, batches, epoch))
        futures = {h: self.cluster.call(comm, ROUND, key=self.key, call=call) for h, comm in self.comms.items()}
        own = self.own.round(self.key, own_update, part, batches, epoch)
        started = time.monotonic()
        results = self.cluster.results(futures)
        self.waited += time.monotonic() - started
        if update is not None:
            self.sent += len(self.remote) * update.nbytes
        if own is None:
            return None
        changes = [own] + [results[h] for h in self.remote]
        self.syncs += 1
        self.sent += sum(change.nbytes for change in changes[1:])
        # The last combination of this shape has reached every host (they answered a call that carried it): reused
        out = self._out.setdefault(own.rows.shape, np.empty(own.rows.shape, np.float32))
        return combine(changes, self.local.sent_base, self.local.base_bias, self.rules, out)

    def epoch(self, n_rounds: int, batches: int, checkpoints: Checkpoints, epoch: int,
              save_within: Callable[[int, int], Path | None] | None = None, resumed_round: int = 0) -> None:
        """Train an epoch in ``n_rounds`` rounds of ``batches`` mini-batches per host (the last: the rest): each
        call sends the changes of the hot rows and of the round's slice of the other used rows (``Part``) and
        takes the combination of those of the round before while the hosts train on (the
        second call the last epoch's weights: the other hosts start the epoch without waiting for their bytes; a
        combined optimizer state, ``state``, or anything before an epoch of one round is taken before the first
        round, so that a checkpoint's table is where every host starts from, exactly);
        the epoch ends when its last round's changes are combined (the driver's replica takes them at once).
        Between two rounds, when a checkpoint is due or a stop requested, the hosts take the last combination
        and stop there, and ``save_within(epoch, rounds trained)`` writes every host's table and place (a stop
        then raises ``TrainingStopped``); the next call goes on as it would have (the same arithmetic).
        ``resumed_round``: the rounds every host already trained, put back from such a checkpoint."""
        late = n_rounds > 1 and not self.state_pending  # (a checkpoint's state, or one round: taken at once)
        update: Block | None = None if late else self.pending
        own_update: Block | None = None
        for number in range(resumed_round, n_rounds + 1):
            part = None if number == 0 else Part(number - 1, n_rounds)
            train = None if number == n_rounds else 0 if number == n_rounds - 1 else batches
            if number == 1 and late:
                update = self.pending
            if 0 < number < n_rounds and save_within is not None and (checkpoints.due()
                                                                      or checkpoints.stop_requested):
                self._call(update, own_update, None, None)  # every host takes the combination and stops
                path = save_within(epoch, number)
                if checkpoints.stop_requested:
                    raise TrainingStopped(f"in epoch {epoch} after {number} of its {n_rounds} rounds", path)
                update = own_update = None
            elif checkpoints.stop_requested:
                raise TrainingStopped(f"in epoch {epoch}", None)
            update = own_update = self._call(update, own_update, part, train, epoch if number == 0 else None)
        if update is not None:
            self.local.apply(update)
        self.pending, self.state_pending = update, False

    def state(self) -> None:
        """Combine every host's optimizer state (and weights) into the driver's replica."""
        combined = self._call(self.pending, None, STATE, None)
        if combined is not None:
            self.local.apply(combined)
        self.pending, self.state_pending = combined, True

    def close(self) -> None:
        """Every host takes the last combination (their weights are then the driver's), and the rounds end."""
        if self.pending is not None:
            self._call(self.pending, None, None, None)
            self.pending = None
        self.cluster.results({h: self.cluster.submit(h, _close_rounds, self.key) for h in self.remote})
        for comm in self.comms.values():
            self.cluster.client.sync(comm.close)
        self.own.close()


def _weighted(parts: list[tuple[int, dict[str, float]]]) -> dict[str, float]:
    """Metrics of several hosts' rows: each metric averaged weighted by the hosts' row counts."""
    total = sum(rows for rows, _ in parts)
    return {name: sum(rows * metrics[name] for rows, metrics in parts) / total for name in parts[0][1]}
