"""Checkpoints of FM on several hosts: at every epoch end the first host writes the checkpoint a one-host fit
writes (``FactorizationMachines.fit``: same format, same identity, so either kind of job resumes the other's),
and a restarted job starts every host from it at the next epoch. Within an epoch (``checkpoint_interval_minutes``,
SIGTERM) it writes one between two rounds with every host's own table and place in the epoch (``Within``): a job
on as many hosts with the same shares resumes it at that round, and ends with the uninterrupted job's model.

The identity is that of the job's whole data (every host's share summed: the ``train`` channel's rows and
nonzeros, as one host would read them), so the number of hosts is not part of it. The progress adds
``hosts`` and ``host_steps`` (each host's optimizer steps: a host counts its own mini-batches); a job on as
many hosts starts each from its own count, else every host from ``steps`` (the first host's). Within an epoch it
adds ``round`` (the rounds trained), each host's rows (``host_rows``), rows trained and loss, and per host ``r``
its arrays (``FMReplica.round_arrays`` as ``<name>_<r>``, and ``row_scores_<r>``) instead of the one table; a
one-host checkpoint from within an epoch, or a hosts' one taken by another number of hosts or shares, is refused
with the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from algorithm.best_epoch import BestEpoch
from algorithm.checkpoint import START_OVER, CheckpointError, Checkpoints
from algorithm.feature_layout import FeatureLayout
from algorithm.fm import FactorizationMachines
from algorithm.fm_replica import FMReplica

log = logging.getLogger("train.fm")


@dataclass(frozen=True)
class Within:
    """Every host at a checkpoint between two rounds of an epoch: the rounds trained, and per host (in ``hosts``
    order) its share's rows, the rows it trained, their scores and summed loss, and its own table
    (``FMReplica.round_arrays``, in the replicas' rows)."""

    round: int
    rows: list[int]
    positions: list[int]
    scores: list[np.ndarray]
    losses: list[float]
    arrays: list[dict[str, np.ndarray]]


@dataclass(frozen=True)
class Resumed:
    """Where a job on several hosts starts from a checkpoint: the start state every host takes (bias row,
    packed table in the users' ids, optimizer steps, epochs before this fit as ``initial_state`` gives them),
    each host's optimizer steps, the first epoch to train, and the divergence check's state."""

    state: tuple[np.ndarray, np.ndarray, int, int]
    host_steps: list[int]
    epoch: int
    warned: bool
    losses: list[float]
    within: Within | None = None  # where every host is in ``epoch`` (None: at its start)


def identity(model: FactorizationMachines, shares: Iterable[tuple[int, int, bool]], test_rows: int | None
             ) -> dict[str, Any]:
    """The checkpoint identity of a fit of ``model`` on the hosts' ``shares`` ((rows, nonzeros, weighted) of
    each) with ``test_rows`` test rows (None: no test channel): a one-host fit's on the same data."""
    parts = list(shares)
    return model._data_identity(sum(rows for rows, _, _ in parts), sum(nnz for _, nnz, _ in parts),
                                any(weighted for _, _, weighted in parts), test_rows)


def resume(checkpoints: Checkpoints, identity: dict[str, Any], best: BestEpoch, share_rows: list[int],
           n_threads: int, deterministic: bool) -> Resumed | None:
    """The start of a fit on hosts with shares of ``share_rows`` rows from the checkpoint in ``checkpoints``
    (``best`` resumed from it, logged), None when there is none; ``CheckpointError`` when it cannot be resumed
    (another job's, a one-host job's within an epoch, or one within an epoch of other hosts)."""
    loaded = checkpoints.load("fm", identity)
    if loaded is None:
        return None
    progress, arrays = loaded
    path = checkpoints.meta_path
    n_hosts = len(share_rows)
    epoch, position = int(progress["epoch"]), int(progress["position"])
    within = None
    if "host_positions" in progress:
        within = _within(path, progress, arrays, share_rows)
    elif position:
        raise CheckpointError(f"Checkpoint {path} is at row {position} within epoch {epoch} (written by a job on "
                              "one host): a job on several hosts resumes a one-host job's epoch ends only; resume "
                              f"it on one host, or {START_OVER}")
    if within is not None:  # (the first host's table starts every host, then each takes its own back)
        bias, table = arrays["bias_0"], arrays["table_0"].copy()
    else:
        bias, table = arrays["bias"], arrays["table"]
    weights = None
    if "best_table" in arrays:
        weights = (arrays["best_bias"], arrays["best_table"], int(progress["best_steps"]))
    if "feature_order" in arrays:  # a one-host fit's tables are in its training rows: back to the users' ids
        layout = FeatureLayout.from_order(arrays["feature_order"])
        for array in (table, None if weights is None else weights[1]):
            if array is not None:
                layout.to_users(array)
    best.resume(progress["best"], weights)
    steps, hosts = int(progress["steps"]), int(progress.get("hosts", 1))
    stored = progress.get("host_steps")
    host_steps = [int(s) for s in stored] if hosts == n_hosts and stored else [steps] * n_hosts
    log.info("Resuming from checkpoint %s: epoch %d%s (%d optimizer steps taken), written by a job on %d host(s)",
             path, epoch, "" if within is None else f" after round {within.round}", steps, hosts)
    if hosts != n_hosts or (deterministic and int(progress["n_threads"]) != n_threads):
        log.warning("The checkpoint was written training on %d host(s) with %s thread(s) and this job runs %d "
                    "host(s) with %d: the model will differ from an uninterrupted run's", hosts,
                    progress["n_threads"], n_hosts, n_threads)
    return Resumed((bias, table, steps, int(progress["first_epoch"])), host_steps, epoch, bool(progress["warned"]),
                   [float(loss) for loss in progress["losses"]], within)


def _within(path: Path | None, progress: dict[str, Any], arrays: dict[str, np.ndarray], share_rows: list[int]
            ) -> Within:
    """The hosts' places in the epoch a checkpoint between two rounds holds; ``CheckpointError`` unless this
    job's hosts have the same shares."""
    rows = [int(r) for r in progress["host_rows"]]
    if rows != share_rows:
        raise CheckpointError(
            f"Checkpoint {path} is within epoch {progress['epoch']} of a job on {len(rows)} host(s) with shares of "
            f"{', '.join(map(str, rows))} rows; this job's hosts have {', '.join(map(str, share_rows))}: a "
            f"checkpoint within an epoch resumes on the same hosts and data only; {START_OVER}")
    names = ("bias", "table", "base", "base_bias", "trained")
    return Within(int(progress["round"]), rows, [int(p) for p in progress["host_positions"]],
                  [arrays[f"row_scores_{rank}"] for rank in range(len(rows))],
                  [float(loss) for loss in progress["host_losses"]],
                  [{name: arrays[f"{name}_{rank}"] for name in names} for rank in range(len(rows))])


def save(checkpoints: Checkpoints, identity: dict[str, Any], epoch: int, replica: FMReplica,
         host_steps: list[int], best: BestEpoch, losses: list[float], warned: bool, loss: float,
         within: Within | None = None) -> Path | None:
    """Write the checkpoint of the fit at the start of ``epoch`` (or ``within`` it) from ``replica`` (the first
    host's, once it holds every host's table and optimizer state) and each host's optimizer steps; its path
    (None: checkpoints off)."""
    progress: dict[str, Any] = {
        "epoch": epoch, "position": 0, "steps": replica.step, "first_epoch": replica.first_epoch, "loss": loss,
        "best": best.progress(), "losses": losses, "warned": warned, "n_threads": replica.n_threads,
        "best_steps": None if best.weights is None else best.weights[2], "hosts": len(host_steps),
        "host_steps": host_steps}
    arrays = replica.checkpoint_arrays()
    if within is not None:  # every host's own table instead of the one table
        progress.update(position=sum(within.positions), round=within.round, host_rows=within.rows,
                        host_positions=within.positions, host_losses=within.losses)
        del arrays["bias"], arrays["table"]
        for rank, (scores, host_arrays) in enumerate(zip(within.scores, within.arrays, strict=True)):
            arrays[f"row_scores_{rank}"] = scores
            arrays.update({f"{name}_{rank}": array for name, array in host_arrays.items()})
    if best.weights is not None:
        arrays["best_bias"], arrays["best_table"] = best.weights[:2]
    return checkpoints.save("fm", identity, progress, arrays)
