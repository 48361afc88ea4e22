"""What every training job does around its algorithm: find its channels, read an earlier model from the
``model`` channel, settle the thread count, fit with the metric lines of each epoch, turn a diverged fit into
the user's error, report how the fit ended."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from algorithm import artifact
from algorithm.base import DivergedError
from algorithm.checkpoint import CheckpointError
from container import metrics_log
from container.channels import channel_present, missing_channel_error
from container.config import ChannelConfig
from container.errors import ChannelError, ClientError
from container.paths import SageMakerPaths
from container.resources import memory_available_bytes, usable_cpus

log = logging.getLogger("train.job")

MODEL_CHANNEL = "model"
Metrics = dict[str, float]


def required_channel(paths: SageMakerPaths, channels: dict[str, ChannelConfig], name: str) -> ChannelConfig:
    """The configuration of a channel the job cannot run without; ChannelError when the job has none."""
    config = channels.get(name, ChannelConfig(name))
    if not channel_present(paths, channels, name):
        raise ChannelError(f"The {name!r} channel is required but the job has none (channels: "
                           f"{sorted(channels) or 'none'}). {missing_channel_error(paths, config)}")
    return config


def optional_channel(paths: SageMakerPaths, channels: dict[str, ChannelConfig], name: str
                     ) -> ChannelConfig | None:
    """The configuration of a channel the job may have, None when it has none."""
    return channels.get(name, ChannelConfig(name)) if channel_present(paths, channels, name) else None


@dataclass(frozen=True)
class ModelChannel:
    """The ``model`` channel: an earlier model (``algorithm.artifact``) the job starts from."""

    directory: Path

    @classmethod
    def of(cls, paths: SageMakerPaths) -> ModelChannel:
        return cls(paths.channel_dir(MODEL_CHANNEL))

    @property
    def present(self) -> bool:
        """Whether the channel holds anything."""
        return self.directory.is_dir() and any(self.directory.iterdir())

    def error(self, action: str, reason: object) -> ClientError:
        """The user's error for a model the job cannot ``action`` (e.g. "warm start") from."""
        return ClientError(f"Cannot {action} from the {MODEL_CHANNEL!r} channel ({self.directory}): {reason}")

    def load(self, action: str, expected: type, algorithm: str, *, optimizer_state: bool = False) -> Any:
        """The model in the channel (with its optimizer state when asked and stored); ``error(action, ...)``
        when it cannot be read or is not an ``expected`` (the ``algorithm`` this job trains)."""
        try:
            model = artifact.load(self.directory, optimizer_state=optimizer_state,
                                  max_bytes=memory_available_bytes() // 2)
        except artifact.ArtifactError as err:
            raise self.error(action, err) from None
        if not isinstance(model, expected):
            found = model.artifact_meta().get("algorithm") if hasattr(model, "artifact_meta") else None
            raise self.error(action, f"it holds a model trained with algorithm={found}, and this job trains "
                                     f"algorithm={algorithm}: put an earlier {algorithm} model there, or leave "
                                     f"the {MODEL_CHANNEL!r} channel out")
        return model


def save_model(paths: SageMakerPaths, model: Any) -> None:
    """Write the model's artifact to ``model/``; weights that are not finite (a fit that diverged without
    being caught) are the user's error, with the arrays named."""
    try:
        artifact.save(Path(paths.model_dir), model)
    except artifact.NonFiniteError as err:
        raise ClientError(f"{err}. Training diverged: lower the learning rates, or raise the weight decays") \
            from None


def thread_count(num_threads: int) -> int:
    """The threads training runs on: ``num_threads``, 0 meaning every CPU the job may use."""
    threads = num_threads or usable_cpus()
    log.info("Training with %d thread(s)", threads)
    return threads


@dataclass
class EpochLog:
    """``fit``'s ``on_epoch``: logs the train and test metric lines, progress and throughput (``items`` per
    second of training) of each epoch and keeps its metrics in ``history``; ``finish`` reports how the fit
    ended. ``unit`` names an epoch ("sweep" for WALS). ``history`` holds the epochs this job ran (a resumed
    fit's earlier epochs were logged by the job that ran them)."""

    host: str
    epochs: int
    items: int
    unit: str = "epoch"
    history: dict[int, tuple[Metrics, Metrics | None]] = field(default_factory=dict)

    def __call__(self, epoch: int, train: Metrics, test: Metrics | None, seconds: float) -> None:
        self.history[epoch] = (train, test)
        lines = metrics_log.epoch_lines(self.host, epoch, "train", train)
        if test:
            lines += metrics_log.epoch_lines(self.host, epoch, "test", test)
        lines.append(metrics_log.progress_line(self.host, epoch + 1, self.epochs))
        lines.append(metrics_log.throughput_line(self.host, self.items / max(seconds, 1e-9)))
        for line in lines:
            log.info(line)

    def finish(self, seconds: float, kept: int, early_stop: EarlyStop | None = None) -> None:
        """Log the epochs the fit ran, which one's weights the model holds, and, when early stopping ended it
        (``early_stop``), the line that says so and the progress at 100 %, as at the end of every job."""
        run, unit = max(self.history, default=-1) + 1, self.unit
        resumed = f" ({len(self.history)} in this job, after resuming)" if len(self.history) < run else ""
        log.info("Fitted %d %s(s) of %d in %.2f s%s; the model holds %s %d", run, unit, self.epochs, seconds,
                 resumed, unit, kept)
        if early_stop is not None and run < self.epochs:
            log.info("Early stopping ended training after %s %d (%d of %d %ss): the test %s did not improve by "
                     "more than early_stopping_tolerance=%g for early_stopping_patience=%d %ss; the model keeps "
                     "the weights of %s %d", unit, run - 1, run, self.epochs, unit, early_stop.metric,
                     early_stop.tolerance, early_stop.patience, unit, unit, kept)
        if run < self.epochs:
            log.info(metrics_log.progress_line(self.host, self.epochs, self.epochs))


@dataclass(frozen=True)
class EarlyStop:
    """What ended a fit early: ``patience`` epochs without an improvement of more than ``tolerance`` in the
    test ``metric``."""

    metric: str
    patience: int
    tolerance: float


def fit(model: Any, *args: Any, **kwargs: Any) -> float:
    """``model.fit(*args, **kwargs)``, a diverged fit or a checkpoint it cannot resume being the user's error;
    returns the seconds it took."""
    return timed_fit(model.fit, *args, **kwargs)


def timed_fit(fit: Callable[..., Any], *args: Any, **kwargs: Any) -> float:
    """``fit(*args, **kwargs)`` (a model's fit method), a diverged fit or a checkpoint it cannot resume being the
    user's error; returns the seconds it took."""
    started = time.monotonic()
    try:
        fit(*args, **kwargs)
    except (DivergedError, CheckpointError) as err:
        raise ClientError(str(err)) from None
    return time.monotonic() - started
