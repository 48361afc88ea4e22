"""A training job as the estimator sees it (``estimator.latest_training_job``)."""

from __future__ import annotations

from typing import Any

from fmwals.backends.backend import Backend
from fmwals.errors import JobFailedError


class TrainingJob:
    """One training job on some back end: ``name``, ``describe()``, ``wait()``, ``stop()``."""

    def __init__(self, name: str, backend: Backend) -> None:
        self.name = name
        self.job_name = name
        self.backend = backend

    def describe(self) -> dict[str, Any]:
        """DescribeTrainingJob's response (the local record for the local back ends)."""
        return self.backend.describe_training_job(self.name)

    def wait(self, logs: bool = True) -> dict[str, Any]:
        """Block until the job ends; raises ``JobFailedError`` (with the container's failure text) unless it
        completed."""
        description = self.backend.wait_for_training_job(self.name, logs)
        status = description["TrainingJobStatus"]
        if status != "Completed":
            raise JobFailedError(self.name, status, description.get("FailureReason", "(no reason given)"))
        return description

    def stop(self) -> None:
        self.backend.stop_training_job(self.name)

    def log(self) -> str:
        """The job's full log so far."""
        return self.backend.training_log(self.name)

