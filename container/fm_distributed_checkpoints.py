"""Checkpoints of FM on several hosts: at every epoch end the first host writes the checkpoint a one-host fit
writes (``FactorizationMachines.fit``: same format, same identity, so either kind of job resumes the other's),
and a restarted job starts every host from it at the next epoch.

The identity is that of the job's whole data (every host's share summed: the ``train`` channel's rows and
nonzeros, as one host would read them), so the number of hosts is not part of it. The progress adds
``hosts`` and ``host_steps`` (each host's optimizer steps: a host counts its own mini-batches); a job on as
many hosts starts each from its own count, else every host from ``steps`` (the first host's). Within an epoch
the hosts' positions and scores are not gathered: a checkpoint from within an epoch (a one-host job's) is
refused with the reason.
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
class Resumed:
    """Where a job on several hosts starts from a checkpoint: the start state every host takes (bias row,
    packed table in the users' ids, optimizer steps, epochs before this fit as ``initial_state`` gives them),
    each host's optimizer steps, the first epoch to train, and the divergence check's state."""

    state: tuple[np.ndarray, np.ndarray, int, int]
    host_steps: list[int]
    epoch: int
    warned: bool
    losses: list[float]


def identity(model: FactorizationMachines, shares: Iterable[tuple[int, int, bool]], test_rows: int | None
             ) -> dict[str, Any]:
    """The checkpoint identity of a fit of ``model`` on the hosts' ``shares`` ((rows, nonzeros, weighted) of
    each) with ``test_rows`` test rows (None: no test channel): a one-host fit's on the same data."""
    parts = list(shares)
    return model._data_identity(sum(rows for rows, _, _ in parts), sum(nnz for _, nnz, _ in parts),
                                any(weighted for _, _, weighted in parts), test_rows)


def resume(checkpoints: Checkpoints, identity: dict[str, Any], best: BestEpoch, n_hosts: int, n_threads: int,
           deterministic: bool) -> Resumed | None:
    """The start of a fit on ``n_hosts`` hosts from the checkpoint in ``checkpoints`` (``best`` resumed from it,
    logged), None when there is none; ``CheckpointError`` when it cannot be resumed (another job's, or within an
    epoch)."""
    loaded = checkpoints.load("fm", identity)
    if loaded is None:
        return None
    progress, arrays = loaded
    path = checkpoints.meta_path
    epoch, position = int(progress["epoch"]), int(progress["position"])
    if position:
        raise CheckpointError(f"Checkpoint {path} is at row {position} within epoch {epoch} (written by a job on "
                              "one host): a job on several hosts resumes from epoch ends only; resume it on one "
                              f"host, or {START_OVER}")
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
    log.info("Resuming from checkpoint %s: epoch %d (%d optimizer steps taken), written by a job on %d host(s)",
             path, epoch, steps, hosts)
    if hosts != n_hosts or (deterministic and int(progress["n_threads"]) != n_threads):
        log.warning("The checkpoint was written training on %d host(s) with %s thread(s) and this job runs %d "
                    "host(s) with %d: the model will differ from an uninterrupted run's", hosts,
                    progress["n_threads"], n_hosts, n_threads)
    return Resumed((bias, table, steps, int(progress["first_epoch"])), host_steps, epoch, bool(progress["warned"]),
                   [float(loss) for loss in progress["losses"]])


def save(checkpoints: Checkpoints, identity: dict[str, Any], epoch: int, replica: FMReplica,
         host_steps: list[int], best: BestEpoch, losses: list[float], warned: bool, loss: float) -> Path | None:
    """Write the checkpoint of the fit at the start of ``epoch`` from ``replica`` (the first host's, which
    holds every host's table at an epoch end) and each host's optimizer steps; its path (None: checkpoints
    off)."""
    progress = {"epoch": epoch, "position": 0, "steps": replica.step, "first_epoch": replica.first_epoch,
                "loss": loss, "best": best.progress(), "losses": losses, "warned": warned,
                "n_threads": replica.n_threads, "best_steps": None if best.weights is None else best.weights[2],
                "hosts": len(host_steps), "host_steps": host_steps}
    arrays = replica.checkpoint_arrays()
    if best.weights is not None:
        arrays["best_bias"], arrays["best_table"] = best.weights[:2]
    return checkpoints.save("fm", identity, progress, arrays)
