"""A training job as the estimator sees it (``estimator.latest_training_job``) and its per-epoch metrics."""

from __future__ import annotations

from typing import Any

from container import metrics_log
from fmwals.backends import backend_for_job
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


class TrainingJobAnalytics:
    """The metrics a job printed, read from its log lines with the container's own regexes.

    ``metrics()`` maps a metric definition name (``train:rmse:epoch``, ``test:rmse``, ...) to its values in
    order; ``dataframe()`` has one row per value (``metric_name``, ``epoch``, ``value``), a pandas DataFrame
    when pandas is installed, else a list of dicts.
    """

    def __init__(
        self,
        training_job_name: str,
        metric_names: list[str] | None = None,
        backend: Backend | None = None,
        sagemaker_session: Any = None,
    ) -> None:
        self.name = training_job_name
        self.metric_names = metric_names
        self.backend = backend or backend_for_job(training_job_name, sagemaker_session)

    def metrics(self) -> dict[str, list[float]]:
        found = metrics_log.parse_log(self.backend.training_log(self.name))
        if self.metric_names is None:
            return found
        return {k: v for k, v in found.items() if k in self.metric_names}

    def dataframe(self, force_refresh: bool = False) -> Any:
        rows = [
            {"metric_name": name, "epoch": epoch if name.endswith(":epoch") else None, "value": value}
            for name, values in self.metrics().items()
            for epoch, value in enumerate(values)
        ]
        try:
            import pandas as pd
        except ImportError:
            return rows
        return pd.DataFrame(rows, columns=["metric_name", "epoch", "value"])
