"""WALS training job: read the channels, check the data, fit with metric lines, save factors + id maps."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import scipy.sparse as sp

from algorithm.checkpoint import Checkpoints
from algorithm.schemas import JOB_SETTINGS
from algorithm.wals import WALS, Entries, weight_vector
from algorithm.wals_model import IdMap, WALSModel
from container import data_loading, job, metrics_log, wals_data, wals_ondisk
from container.config import ChannelConfig
from container.errors import ChannelError, ClientError
from container.paths import SageMakerPaths
from container.resources import memory_limit_bytes

log = logging.getLogger("train.wals")

SIDES = ("row", "col")
# Peak memory of the in-memory path per byte of triplet text (measured: bench/bench_wals_stream.py).
IN_MEMORY_BYTES_PER_BYTE = 10.0


def check_empty_lines(train: sp.csr_matrix, ids: tuple[IdMap, IdMap], hp: dict[str, Any]) -> None:
    """With w0 = 0 and lambda = 0 a row (column) without entries has an all-zero system: refuse it."""
    if hp["unobserved_weight"] > 0 or hp["regularization_coeff"] > 0:
        return
    counts = (np.diff(train.indptr), np.bincount(train.indices, minlength=train.shape[1]))
    for side, count, id_map in zip(("row", "column"), counts, ids, strict=True):
        empty = np.flatnonzero(count == 0)
        if empty.size:
            raise ClientError(
                f"unobserved_weight=0 and regularization_coeff=0 leave the factors of a {side} without "
                f"entries undetermined, and {empty.size} {side}(s) have none (first: {side} id "
                f"{id_map.to_list(empty[:1])[0]!r}); set regularization_coeff > 0"
            )


def check_memory(shape: tuple[int, int], nnz: int, k: int) -> None:
    """Factors (and the best sweep's copy) plus the entries in both orientations (``nnz``; 0 when they are
    on disk) must fit."""
    need = 2 * 4 * k * (shape[0] + shape[1]) + 2 * nnz * (8 + 4 + 4) + 8 * (shape[0] + shape[1])
    limit = memory_limit_bytes()
    gib = 2.0**30
    log.info("Model and entries need about %.3f GiB; memory limit %s", need / gib,
             "none" if limit is None else f"{limit / gib:.2f} GiB")
    if limit is not None and need > 0.9 * limit:
        raise ClientError(f"WALS needs about {need / gib:.2f} GiB ({shape[0]} rows, {shape[1]} columns, "
                          f"{nnz} entries, embedding_dimension={k}), more than the {limit / gib:.2f} GiB "
                          "available: lower embedding_dimension or use an instance with more memory")


def initial_factors(paths: SageMakerPaths, hp: dict[str, Any], ids: tuple[IdMap, IdMap]
                     ) -> dict[str, np.ndarray]:
    """``init_row_factors``/``init_col_factors`` for row_init/col_init=model: the earlier model's factors of
    the ids it shares with this data; the other ids get N(0, 1) draws as with random init."""
    wanted = [side for side in SIDES if hp[f"{side}_init"] == "model"]
    channel = job.ModelChannel.of(paths)
    if not wanted:
        if channel.present:
            log.warning("The %r channel is ignored: row_init and col_init are 'random'", job.MODEL_CHANNEL)
        return {}
    if not channel.present:
        raise ChannelError(f"row_init/col_init=model needs an earlier WALS model in the {job.MODEL_CHANNEL!r} "
                           f"channel ({channel.directory} is empty or missing)")
    previous = channel.load("start", WALSModel, "wals")
    k = hp["embedding_dimension"]
    old = {"row": (previous.row_ids, previous.wals.row_factors_), "col": (previous.col_ids,
                                                                         previous.wals.col_factors_)}
    if old["row"][1].shape[1] != k:
        raise ClientError(f"The model in the {job.MODEL_CHANNEL!r} channel has embedding_dimension "
                          f"{old['row'][1].shape[1]}, this job {k}")
    init = {}
    for stream, (side, new_ids) in enumerate(zip(SIDES, ids, strict=True)):
        if side not in wanted:
            continue
        old_ids, old_factors = old[side]
        factors = np.random.default_rng([hp["seed"], stream]).standard_normal((len(new_ids), k), np.float32)
        position = old_ids.index(new_ids.ids)
        matched = position >= 0
        factors[matched] = old_factors[position[matched]]
        log.info("%s_init=model: %d of %d %s factors from %s, the others random", side, int(matched.sum()),
                 len(new_ids), side, channel.directory)
        init[f"init_{side}_factors"] = factors
    return init


def train_wals(paths: SageMakerPaths, hp: dict[str, Any], channels: dict[str, ChannelConfig],
               host: str, checkpoints: Checkpoints) -> None:
    """Fit WALS on the ``train`` channel (``test``, ``row_weights``, ``col_weights``, ``model`` optional),
    resuming and writing ``checkpoints``, and write the model with its id maps to ``model/``."""
    train_config = job.required_channel(paths, channels, "train")
    test_config = job.optional_channel(paths, channels, "test")
    if data_loading.streams(paths, train_config, hp["data_loading"], IN_MEMORY_BYTES_PER_BYTE):
        with wals_ondisk.Scratch(paths.scratch_dir) as scratch:
            _fit(paths, hp, channels, host, wals_ondisk.build(paths, train_config, test_config, hp, scratch),
                 checkpoints)
        return
    train = wals_data.read_triplets(paths, train_config, hp)
    test = None if test_config is None else wals_data.read_triplets(paths, test_config, hp)
    data = wals_data.build_matrices(train, test, hp)
    del train, test
    _fit(paths, hp, channels, host, data, checkpoints)


def _fit(paths: SageMakerPaths, hp: dict[str, Any], channels: dict[str, ChannelConfig], host: str,
         data: wals_data.Matrices | wals_ondisk.StreamedMatrices, checkpoints: Checkpoints) -> None:
    ids = (data.row_ids, data.col_ids)
    params = {k: v for k, v in hp.items() if k not in (*JOB_SETTINGS, "num_rows", "num_cols")}
    for side, id_map in zip(SIDES, ids, strict=True):
        name = f"{side}_weights"
        config = job.optional_channel(paths, channels, name)
        if config is not None:
            params[name] = wals_data.read_weights(paths, config, id_map, hp[name], hp[f"num_{side}s"])
    on_disk = isinstance(data, wals_ondisk.StreamedMatrices)
    seen = data.train.seen() if on_disk else data.train
    check_empty_lines(seen, ids, hp)
    check_memory(seen.shape, 0 if on_disk else seen.nnz, hp["embedding_dimension"])
    params["num_threads"] = job.thread_count(params["num_threads"])
    model = WALS(**params)
    init = initial_factors(paths, hp, ids)
    fit_input: sp.csr_matrix | Entries = seen
    if isinstance(data, wals_ondisk.StreamedMatrices):
        row_weights, col_weights = (weight_vector(params[f"{side}_weights"], len(id_map), f"{side}_weights")
                                    for side, id_map in zip(SIDES, ids, strict=True))
        fit_input = data.train.entries(row_weights, col_weights, hp["alpha"])

    with checkpoints.stop.deferred():  # SIGTERM from here on: the fit stops at a safe point, model/ stays whole
        epoch_log = job.EpochLog(host, hp["max_sweeps"], seen.nnz, unit="sweep")
        seconds = job.fit(model, fit_input, eval_set=data.test, on_epoch=epoch_log, checkpoints=checkpoints,
                          **init)
        stop = job.EarlyStop(model.stopping_metric, hp["early_stopping_patience"], hp["early_stopping_tolerance"])
        epoch_log.finish(seconds, model.best_sweep_, stop)
        if model.best_sweep_ in epoch_log.history:  # else the job that ran that sweep logged its metrics
            train_m, test_m = epoch_log.history[model.best_sweep_]
            for line in metrics_log.final_lines(host, "train", train_m):
                log.info(line)
            for line in metrics_log.final_lines(host, "test", test_m or {}):
                log.info(line)
        job.save_model(paths, WALSModel(model, data.row_ids, data.col_ids, seen))
        checkpoints.stop.complete()
