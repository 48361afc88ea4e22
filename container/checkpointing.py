"""Checkpoints and SIGTERM for a training job: checkpoints go to ``/opt/ml/checkpoints`` when it exists (the
local path of SageMaker's ``CheckpointConfig``, synced to ``checkpoint_s3_uri``), and SIGTERM (a stopped job, a
reclaimed Spot instance) becomes a stop request the fit honours at its next chunk of rows (streamed: block)."""

from __future__ import annotations

import logging
import signal
from types import FrameType
from typing import Any

from algorithm.checkpoint import Checkpoints, StopFlag
from container.paths import SageMakerPaths

log = logging.getLogger("train.checkpoints")


def job_checkpoints(paths: SageMakerPaths, hp: dict[str, Any], stop: StopFlag) -> Checkpoints:
    """The job's checkpoints: on when the checkpoint directory exists, after every epoch and every
    ``checkpoint_interval_minutes`` within one (0: at epoch ends only); ``stop`` is the job's stop request."""
    directory = paths.checkpoint_dir
    minutes = hp["checkpoint_interval_minutes"]
    if not directory.is_dir():
        log.info("Checkpoints are off: %s does not exist (a job with CheckpointConfig has it)", directory)
        return Checkpoints(None, stop=stop)
    log.info("Checkpoints on in %s: after every epoch%s", directory,
             f" and every {minutes:g} minute(s) within one" if minutes else "")
    return Checkpoints(directory, interval_seconds=minutes * 60.0 if minutes else None, stop=stop)


def stop_on_sigterm(stop: StopFlag) -> None:
    """Make SIGTERM a stop request (``StopFlag.request``: at once before the fit, at the fit's next chunk of rows
    or block during it)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        del frame
        log.warning("Received %s: stopping at the next safe point", signal.Signals(signum).name)
        stop.request()

    signal.signal(signal.SIGTERM, handler)
