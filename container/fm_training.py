"""FM training job: read the channels, check labels and memory, fit with metric lines, save the artifact."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from algorithm.checkpoint import Checkpoints
from algorithm.csr import CSR
from algorithm.feature_layout import index_dtype
from algorithm.fm import FactorizationMachines
from algorithm.metrics import STOPPING_METRIC, train_metrics
from algorithm.schemas import JOB_SETTINGS
from container import data_loading, fm_streaming, job, metrics_log
from container.channels import read_channel
from container.config import ChannelConfig
from container.errors import ClientError, DataError
from container.paths import SageMakerPaths
from container.resources import memory_limit_bytes, peak_rss_bytes

log = logging.getLogger("train.fm")

# Peak memory of the in-memory path per byte of data files: the body read whole, its decoded parts and their
# concatenation (RecordIO-protobuf decodes to about its own size).
IN_MEMORY_BYTES_PER_BYTE = 3.0


def _check_labels(data: CSR, channel: str, predictor_type: str) -> np.ndarray:
    if data.labels is None:
        raise DataError(f"Channel {channel!r} has no labels: every training record needs label['values'] "
                        "(CSV and libsvm: the label is the first column)")
    labels = data.labels
    bad = np.flatnonzero(~np.isfinite(labels))
    if bad.size:
        raise DataError(f"Channel {channel!r}: label of row {bad[0]} is {labels[bad[0]]}; labels must be finite")
    if predictor_type == "binary_classifier":
        bad = np.flatnonzero((labels != 0) & (labels != 1))
        if bad.size:
            raise DataError(
                f"Channel {channel!r}: label of row {bad[0]} is {labels[bad[0]]:g}; predictor_type="
                "binary_classifier needs labels 0 or 1 (use predictor_type=regressor for real-valued targets)"
            )
    return labels


def _check_memory(hp: dict[str, Any], data_bytes: int, early_stopping: bool) -> None:
    state = FactorizationMachines.state_bytes(hp["feature_dim"], hp["num_factors"], hp["optimizer"],
                                              early_stopping=early_stopping, adagrad_state=hp["adagrad_state"])
    limit = memory_limit_bytes()
    gib = 2.0**30
    log.info("Model and %s optimizer state need %.3f GiB (feature_dim=%d x num_factors=%d); data %.3f GiB; "
             "memory limit %s", hp["optimizer"], state / gib, hp["feature_dim"], hp["num_factors"],
             data_bytes / gib, "none" if limit is None else f"{limit / gib:.2f} GiB")
    if limit is not None and state + data_bytes > 0.9 * limit:
        raise ClientError(
            f"The model needs {state / gib:.2f} GiB (feature_dim={hp['feature_dim']}, num_factors="
            f"{hp['num_factors']}, optimizer={hp['optimizer']}) plus {data_bytes / gib:.2f} GiB of data, more "
            f"than the {limit / gib:.2f} GiB available: lower num_factors or feature_dim, or use an instance "
            "with more memory."
        )


def _warm_start(paths: SageMakerPaths, model: FactorizationMachines) -> None:
    """Continue the model in the ``model`` channel: its weights, and its optimizer state when it has one of
    this job's optimizer (``FactorizationMachines.warm_start_from``; the fit logs which)."""
    channel = job.ModelChannel.of(paths)
    if not channel.present:
        return
    previous = channel.load("warm start", FactorizationMachines, "fm", optimizer_state=True)
    try:
        model.warm_start_from(previous)
    except ValueError as err:
        raise channel.error("warm start", err) from None
    log.info("Warm start from the model in %s", channel.directory)


def _log_optimizer_settings(model: FactorizationMachines) -> None:
    """Log the learning rates, weight decays, eps and factor init training uses (the optimizer's defaults where
    unset)."""
    resolved = model.resolved_params()
    names = ("bias_lr", "linear_lr", "factors_lr", "bias_wd", "linear_wd", "factors_wd", "eps", "factors_init_sigma")
    log.info("Optimizer %s: %s", model.optimizer,
             ", ".join(f"{name}={resolved[name]:g}" for name in names if resolved[name] is not None))


def train_fm(paths: SageMakerPaths, hp: dict[str, Any], channels: dict[str, ChannelConfig], host: str,
             checkpoints: Checkpoints) -> None:
    """Fit an FM model on the ``train`` channel (``test`` optional), resuming and writing ``checkpoints``, and
    write it to ``model/``: decoded into memory, or streamed block by block (``data_loading``, decided by the
    ``train`` channel; ``test`` follows)."""
    train_config = job.required_channel(paths, channels, "train")
    test_config = job.optional_channel(paths, channels, "test")
    params = {k: v for k, v in hp.items() if k not in JOB_SETTINGS}
    params["num_threads"] = job.thread_count(params["num_threads"])
    early_stopping = test_config is not None and hp["early_stopping_patience"] > 0
    if data_loading.streams(paths, train_config, hp["data_loading"], IN_MEMORY_BYTES_PER_BYTE):
        _check_memory(params, params["stream_buffer_mb"] * 2**20, early_stopping)
        model = _model(paths, params)
        with checkpoints.stop.deferred():  # decoding streams too: the fit stops between blocks
            fm_streaming.train_streamed(paths, params, model, train_config, test_config, host,
                                        hp["progress_interval_seconds"], checkpoints)
            job.save_model(paths, model)
            checkpoints.stop.complete()
    else:
        _train_in_memory(paths, params, train_config, test_config, host, checkpoints)
    peak = peak_rss_bytes()
    if peak is not None:
        log.info("Peak memory (RSS) of the job: %.1f MiB", peak / 2**20)


def _model(paths: SageMakerPaths, params: dict[str, Any]) -> FactorizationMachines:
    """The estimator of the job, continuing the model channel's model when there is one."""
    model = FactorizationMachines(**params)
    _log_optimizer_settings(model)
    _warm_start(paths, model)
    return model


def _train_in_memory(paths: SageMakerPaths, params: dict[str, Any], train_config: ChannelConfig,
                     test_config: ChannelConfig | None, host: str, checkpoints: Checkpoints) -> None:
    """Decode the channels into memory, fit with metric lines (resuming and writing ``checkpoints``), score the
    final model on both and write it."""
    feature_dim, predictor_type = params["feature_dim"], params["predictor_type"]
    train = read_channel(paths, train_config, feature_dim=feature_dim)
    y = _check_labels(train, "train", predictor_type)
    log.info("train: %d rows, %d nonzeros, feature_dim=%d", train.n_rows, train.nnz, feature_dim)
    test, y_test = None, None
    if test_config is not None:
        test = read_channel(paths, test_config, feature_dim=feature_dim)
        y_test = _check_labels(test, "test", predictor_type)
        log.info("test: %d rows, %d nonzeros", test.n_rows, test.nnz)

    early_stopping = test is not None and params["early_stopping_patience"] > 0
    nonzeros = train.nnz + (test.nnz if test else 0)  # fit trains on a renumbered copy of their feature ids
    ids_copy = nonzeros * np.dtype(index_dtype(params["feature_dim"])).itemsize
    _check_memory(params, train.nbytes + (test.nbytes if test else 0) + ids_copy, early_stopping)
    model = _model(paths, params)

    with checkpoints.stop.deferred():  # SIGTERM from here on: the fit stops at a safe point, model/ stays whole
        epoch_log = job.EpochLog(host, params["epochs"], train.n_rows)
        seconds = job.fit(model, train, y, sample_weight=train.weights,
                          eval_set=None if test is None else (test, y_test), on_epoch=epoch_log,
                          checkpoints=checkpoints)
        stop = job.EarlyStop(STOPPING_METRIC[predictor_type], params["early_stopping_patience"],
                             params["early_stopping_tolerance"])
        epoch_log.finish(seconds, model.best_epoch_, stop if model.stopped_early_ == "early_stopping" else None)

        for line in metrics_log.final_lines(host, "train", train_metrics(predictor_type, y,
                                                                          model.predict_scores(train))):
            log.info(line)
        if test is not None and y_test is not None:
            scores = model.predict_scores(test)
            for line in metrics_log.final_lines(host, "test", train_metrics(predictor_type, y_test, scores)):
                log.info(line)
        job.save_model(paths, model)
        checkpoints.stop.complete()
