"""``TrainingJobAnalytics``: the SDK's class of the same name, for jobs of this image on any back end.

The SDK reads the CloudWatch metrics SageMaker extracts from the job's log with its metric definitions; this
reads the same log lines with the same definitions, so a local job gets the same table. Each line carries the
container's time (``[MM/DD/YYYY HH:MM:SS INFO ...]``), which gives the ``timestamp`` column.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from typing import Any

from container import metrics_log
from fmwals.backends import backend_for_job
from fmwals.backends.backend import Backend

log = logging.getLogger(__name__)

COLUMNS = ("timestamp", "metric_name", "value")
_LINE_TIME = re.compile(r"\[(\d\d/\d\d/\d{4} \d\d:\d\d:\d\d)[ .,\]]")
_LINE_TIME_FORMAT = "%m/%d/%Y %H:%M:%S"

Point = tuple[dt.datetime | None, float]


def _image_definitions() -> dict[str, str]:
    """The image's own metric definitions (both algorithms), for jobs that record none."""
    return {d["Name"]: d["Regex"] for algorithm in ("fm", "wals") for d in metrics_log.metric_definitions(algorithm)}


def _line_time(line: str) -> dt.datetime | None:
    found = _LINE_TIME.search(line)
    return None if found is None else dt.datetime.strptime(found.group(1), _LINE_TIME_FORMAT)


def _naive(moment: dt.datetime | None) -> dt.datetime | None:
    """A datetime on the log's clock (naive local time); aware ones are converted."""
    return moment.astimezone().replace(tzinfo=None) if moment is not None and moment.tzinfo else moment


def read_points(text: str, definitions: dict[str, str]) -> dict[str, list[Point]]:
    """(time of the line or None, value) of every match of each definition's regex, line by line, in log
    order (the first group is the value, as SageMaker reads it)."""
    patterns = {name: re.compile(regex) for name, regex in definitions.items()}
    points: dict[str, list[Point]] = {name: [] for name in definitions}
    for line in text.splitlines():
        moment = None
        for name, pattern in patterns.items():
            found = pattern.search(line)
            if found is None:
                continue
            try:
                value = float(found.group(1))
            except (IndexError, ValueError):
                continue
            moment = moment or _line_time(line)
            points[name].append((moment, value))
    return points


def _averaged(points: list[Point], origin: dt.datetime, period: float) -> list[Point]:
    """One point per ``period`` seconds from ``origin``: the mean of its values at the period's start (what
    CloudWatch's Average statistic returns); values without a time are left out."""
    buckets: dict[int, list[float]] = {}
    for moment, value in points:
        if moment is not None:
            buckets.setdefault(int((moment - origin).total_seconds() // period), []).append(value)
    return [(origin + dt.timedelta(seconds=index * period), sum(values) / len(values))
            for index, values in sorted(buckets.items())]


class TrainingJobAnalytics:
    """The metrics of training job ``training_job_name``, as the SDK's ``TrainingJobAnalytics``.

    ``dataframe()`` has the SDK's columns: ``timestamp`` (seconds since the metric's first value; NaN for a
    line without the container's time), ``metric_name`` and ``value``, the metrics in the order of
    ``metric_names`` (default: the job's metric definitions), each in time order; a pandas DataFrame (a list
    of row dicts when pandas is not installed), cached until ``force_refresh=True`` or ``clear_cache()``.
    Every logged value is a row; with ``period`` (seconds) the values are averaged per period as CloudWatch
    does for the SDK. ``start_time``/``end_time`` keep the values logged between them (datetimes; naive ones
    are on the job's clock). ``metrics()`` maps each metric name to its values in log order.
    """

    def __init__(
        self,
        training_job_name: str,
        metric_names: list[str] | None = None,
        sagemaker_session: Any = None,
        start_time: dt.datetime | None = None,
        end_time: dt.datetime | None = None,
        period: float | None = None,
        backend: Backend | None = None,
    ) -> None:
        if period is not None and not period > 0:
            raise ValueError(f"period={period!r}: expected a number of seconds > 0")
        self._training_job_name = training_job_name
        self._requested_names = list(metric_names) if metric_names else None
        self._start_time, self._end_time = _naive(start_time), _naive(end_time)
        self._period = period
        self.backend = backend or backend_for_job(training_job_name, sagemaker_session)
        self._definitions: dict[str, str] | None = None
        self._dataframe: Any = None

    @property
    def name(self) -> str:
        """The training job's name."""
        return self._training_job_name

    def __repr__(self) -> str:
        return f"<fmwals.TrainingJobAnalytics for {self.name}>"

    def _job_definitions(self) -> dict[str, str]:
        """Name -> regex: the job's MetricDefinitions, else the image's own."""
        if self._definitions is None:
            spec = self.backend.describe_training_job(self.name).get("AlgorithmSpecification", {})
            recorded = {d["Name"]: d["Regex"] for d in spec.get("MetricDefinitions") or []}
            self._definitions = recorded or _image_definitions()
        return self._definitions

    @property
    def metric_names(self) -> list[str]:
        """The metrics this reads: those asked for, else every metric the job defines."""
        return self._requested_names or list(self._job_definitions())

    def _points(self) -> dict[str, list[Point]]:
        definitions = self._job_definitions()
        wanted = {name: definitions[name] for name in self.metric_names if name in definitions}
        points = read_points(self.backend.training_log(self.name), wanted)
        for name in self.metric_names:
            if name not in definitions:
                log.warning("Metric %s is not among the metric definitions of job %s (%s)", name, self.name,
                            ", ".join(definitions))
                points[name] = []
        if self._start_time or self._end_time:
            start, end = self._start_time or dt.datetime.min, self._end_time or dt.datetime.max
            points = {name: [(t, v) for t, v in values if t is not None and start <= t <= end]
                      for name, values in points.items()}
        return points

    def metrics(self) -> dict[str, list[float]]:
        """Each metric's values in log order (metrics with no value left out)."""
        return {name: [value for _, value in values] for name, values in self._points().items() if values}

    def _fetch_dataframe(self) -> Any:
        points = self._points()
        if self._period is not None:
            times = [t for values in points.values() for t, _ in values if t is not None]
            origin = self._start_time or (min(times) if times else dt.datetime.min)
            points = {name: _averaged(values, origin, self._period) for name, values in points.items()}
        rows = []
        for name in self.metric_names:
            if not points[name]:
                log.warning("Warning: No metrics called %s found", name)
                continue
            first = next((t for t, _ in points[name] if t is not None), None)
            for moment, value in points[name]:
                elapsed = math.nan if moment is None or first is None else (moment - first).total_seconds()
                rows.append({"timestamp": elapsed, "metric_name": name, "value": value})
        try:
            import pandas as pd
        except ImportError:
            return rows
        return pd.DataFrame(rows, columns=list(COLUMNS))

    def dataframe(self, force_refresh: bool = False) -> Any:
        """The metrics table (module docstring); ``force_refresh`` re-reads the log."""
        if force_refresh:
            self.clear_cache()
        if self._dataframe is None:
            self._dataframe = self._fetch_dataframe()
        return self._dataframe

    def clear_cache(self) -> None:
        """Forget the table, so the next ``dataframe()`` reads the log again."""
        self._dataframe = None

    def export_csv(self, filename: str) -> None:
        """Write ``dataframe()`` to ``filename`` as CSV (pandas' ``to_csv``, as the SDK)."""
        table = self.dataframe()
        if isinstance(table, list):
            raise ImportError("export_csv needs pandas: pip install pandas")
        table.to_csv(filename)
