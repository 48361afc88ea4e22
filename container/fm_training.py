"""FM training job: read the channels, check labels and memory, fit with metric lines, save the artifact."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np

from algorithm import artifact
from algorithm.csr import CSR
from algorithm.fm import DivergedError, FactorizationMachines
from algorithm.metrics import train_metrics
from container import metrics_log
from container.channels import channel_present, read_channel
from container.config import ChannelConfig
from container.errors import ChannelError, ClientError, DataError
from container.paths import SageMakerPaths
from container.resources import memory_limit_bytes, usable_cpus

log = logging.getLogger("train.fm")

MODEL_CHANNEL = "model"


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


def _check_memory(hp: dict[str, Any], data_bytes: int) -> None:
    state = FactorizationMachines.state_bytes(hp["feature_dim"], hp["num_factors"], hp["optimizer"])
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


def _dataset_bytes(data: CSR) -> int:
    return int(data.data.nbytes + data.indices.nbytes + data.indptr.nbytes)


def _warm_start(paths: SageMakerPaths, model: FactorizationMachines) -> None:
    directory = paths.channel_dir(MODEL_CHANNEL)
    if not directory.is_dir() or not any(directory.iterdir()):
        return
    try:
        previous = artifact.load(directory)
        model.warm_start_from(previous)
    except (artifact.ArtifactError, ValueError) as err:
        raise ClientError(f"Cannot warm start from the {MODEL_CHANNEL!r} channel ({directory}): {err}") from None
    log.info("Warm start from the model in %s", directory)


def _log_optimizer_settings(model: FactorizationMachines) -> None:
    """Log the learning rates, weight decays, eps and factor init training uses (the optimizer's defaults where
    unset)."""
    resolved = model.resolved_params()
    names = ("bias_lr", "linear_lr", "factors_lr", "bias_wd", "linear_wd", "factors_wd", "eps", "factors_init_sigma")
    log.info("Optimizer %s: %s", model.optimizer,
             ", ".join(f"{name}={resolved[name]:g}" for name in names if resolved[name] is not None))


def train_fm(paths: SageMakerPaths, hp: dict[str, Any], channels: dict[str, ChannelConfig], host: str) -> None:
    """Fit an FM model on the ``train`` channel (``test`` optional) and write it to ``model/``."""
    if not channel_present(paths, channels, "train"):
        raise ChannelError(
            f"The 'train' channel is required but the job has none (channels: {sorted(channels) or 'none'}; "
            f"looked in {paths.channel_dir('train')})"
        )
    feature_dim = hp["feature_dim"]
    train = read_channel(paths, channels.get("train", ChannelConfig("train")), feature_dim=feature_dim)
    y = _check_labels(train, "train", hp["predictor_type"])
    log.info("train: %d rows, %d nonzeros, feature_dim=%d", train.n_rows, train.nnz, feature_dim)
    test, y_test = None, None
    if channel_present(paths, channels, "test"):
        test = read_channel(paths, channels.get("test", ChannelConfig("test")), feature_dim=feature_dim)
        y_test = _check_labels(test, "test", hp["predictor_type"])
        log.info("test: %d rows, %d nonzeros", test.n_rows, test.nnz)

    params = {k: v for k, v in hp.items() if k != "algorithm"}
    if params["num_threads"] == 0:
        params["num_threads"] = usable_cpus()
    log.info("Training with %d thread(s)", params["num_threads"])
    _check_memory(params, _dataset_bytes(train) + (_dataset_bytes(test) if test else 0))
    model = FactorizationMachines(**params)
    _log_optimizer_settings(model)
    _warm_start(paths, model)

    epochs = hp["epochs"]

    def on_epoch(epoch: int, train_m: dict[str, float], test_m: dict[str, float] | None, seconds: float) -> None:
        lines = metrics_log.epoch_lines(host, epoch, "train", train_m)
        if test_m:
            lines += metrics_log.epoch_lines(host, epoch, "test", test_m)
        lines.append(metrics_log.progress_line(host, epoch + 1, epochs))
        lines.append(metrics_log.throughput_line(host, train.n_rows / max(seconds, 1e-9)))
        for line in lines:
            log.info(line)

    started = time.monotonic()
    try:
        model.fit(train, y, sample_weight=train.weights,
                  eval_set=None if test is None else (test, y_test), on_epoch=on_epoch)
    except DivergedError as err:
        raise ClientError(str(err)) from None
    log.info("Fitted %d epoch(s) in %.2f s; best epoch %s", epochs, time.monotonic() - started,
             getattr(model, "best_epoch_", None))

    for line in metrics_log.final_lines(host, "train", train_metrics(hp["predictor_type"], y,
                                                                      model.predict_scores(train))):
        log.info(line)
    if test is not None and y_test is not None:
        scores = model.predict_scores(test)
        for line in metrics_log.final_lines(host, "test", train_metrics(hp["predictor_type"], y_test, scores)):
            log.info(line)
    artifact.save(Path(paths.model_dir), model)
