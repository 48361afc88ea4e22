"""Hyperparameter tuning on the local back ends: optuna proposes, training jobs run in parallel, per-epoch
metrics read from their logs drive early stopping, and the tuning record on disk describes it all in the
shape of DescribeHyperParameterTuningJob (plus ``TrainingJobs``, one summary per job).

Strategies: Bayesian (optuna's TPE), Random, Grid (every combination) and Hyperband (TPE with optuna's
HyperbandPruner on per-epoch metrics). ``early_stopping_type='Auto'`` adds a median-rule pruner: a job whose
per-epoch objective is behind the median of earlier jobs at the same epoch is stopped.
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import re
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal

from fmwals import jobs
from fmwals.estimator import Estimator
from fmwals.inputs import Inputs
from fmwals.parameter import IntegerParameter, Range, grid_values

POLL_SECONDS = 0.5
TPE_STARTUP_TRIALS = 3  # random trials before TPE models the objective (small budgets need an early model)
TERMINAL = ("Completed", "Failed", "Stopped")


def _sampler(strategy: str, seed: int | None) -> Any:
    import optuna

    if strategy in ("Random", "Grid"):  # Grid: every combination is enqueued, in order (see ``grid``)
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=TPE_STARTUP_TRIALS)


def _pruner(strategy: str, early_stopping: str) -> Any:
    import optuna

    if strategy == "Hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1)
    if early_stopping == "Auto":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=1)
    return optuna.pruners.NopPruner()


def grid(ranges: dict[str, Range]) -> list[dict[str, Any]]:
    """Every combination of the ranges' values, the first range varying slowest."""
    values = [
        [int(v) for v in grid_values(r)] if isinstance(r, IntegerParameter) else grid_values(r)
        for r in ranges.values()
    ]
    return [dict(zip(ranges, combination, strict=True)) for combination in itertools.product(*values)]


def metric_values(definitions: list[dict[str, str]], name: str, log: str) -> list[float]:
    """Every value of the metric definition ``name`` in a training log, in order (none if not defined)."""
    regex = next((d["Regex"] for d in definitions if d["Name"] == name), None)
    return [float(v) for v in re.findall(regex, log)] if regex else []


class LocalTuningJob:
    """Runs the CreateHyperParameterTuningJob ``request`` in a background thread: training jobs of copies of
    ``estimator`` with values suggested from ``ranges``, objective values read from their logs with
    ``metric_definitions``. ``wait()`` joins it."""

    def __init__(
        self,
        request: dict[str, Any],
        estimator: Estimator,
        ranges: dict[str, Range],
        metric_definitions: list[dict[str, str]],
        inputs: Inputs,
    ) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        config = request["HyperParameterTuningJobConfig"]
        objective = config["HyperParameterTuningJobObjective"]
        self.name = request["HyperParameterTuningJobName"]
        self.estimator = estimator
        self.ranges = ranges
        self.metric_definitions = metric_definitions
        self.inputs = inputs
        self.objective = objective["MetricName"]
        self.maximize = objective["Type"] == "Maximize"
        self.max_parallel_jobs = config["ResourceLimits"]["MaxParallelTrainingJobs"]
        self.max_jobs = config["ResourceLimits"].get("MaxNumberOfTrainingJobs", 0)
        self.lock = threading.Lock()
        self.stop_requested = threading.Event()
        direction: Literal["maximize", "minimize"] = "maximize" if self.maximize else "minimize"
        strategy = config["Strategy"]
        self.study = optuna.create_study(
            direction=direction,
            sampler=_sampler(strategy, config.get("RandomSeed")),
            pruner=_pruner(strategy, config["TrainingJobEarlyStoppingType"]),
        )
        if strategy == "Grid":
            points = grid(ranges)
            for params in points:
                self.study.enqueue_trial(params)
            self.max_jobs = min(self.max_jobs or len(points), len(points))
        self.counter = itertools.count()
        parents = request.get("WarmStartConfig", {}).get("ParentHyperParameterTuningJobs", [])
        self._warm_start([p["HyperParameterTuningJobName"] for p in parents])
        jobs.write(
            "tuning",
            self.name,
            {**request, "HyperParameterTuningJobStatus": "InProgress", "CreationTime": jobs.now(), "TrainingJobs": []},
        )
        self.thread = threading.Thread(target=self._run, name=f"tuning-{self.name}", daemon=True)
        self.thread.start()

    def _warm_start(self, parents: list[str]) -> None:
        """Add the parents' finished trials whose values fit today's ranges to the study."""
        import optuna

        for parent in sorted(parents):
            for summary in jobs.read("tuning", parent).get("TrainingJobs", []):
                value = summary.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value")
                if summary["TrainingJobStatus"] != "Completed" or value is None:
                    continue
                params = summary.get("OptunaParams", {})
                probe = optuna.trial.FixedTrial(params)
                # A parent trial outside today's ranges (TransferLearning may change them) is left out.
                with contextlib.suppress(ValueError, KeyError, AttributeError):
                    for name, parameter in self.ranges.items():
                        parameter.suggest(probe, name)
                    self.study.add_trial(
                        optuna.trial.create_trial(
                            params=params, distributions=probe.distributions, value=value
                        )
                    )

    def _run(self) -> None:
        with ThreadPoolExecutor(self.max_parallel_jobs, thread_name_prefix=self.name) as pool:
            workers = [pool.submit(self._worker) for _ in range(self.max_parallel_jobs)]
        errors = [f"{type(e).__name__}: {e}" for e in (w.exception() for w in workers) if e is not None]
        status = "Failed" if errors else "Stopped" if self.stop_requested.is_set() else "Completed"
        fields: dict[str, Any] = {"FailureReason": "; ".join(errors)} if errors else {}
        jobs.update(
            "tuning",
            self.name,
            HyperParameterTuningJobStatus=status,
            HyperParameterTuningEndTime=jobs.now(),
            BestTrainingJob=self._best(),
            **fields,
        )

    def _worker(self) -> None:
        while not self.stop_requested.is_set():
            index = next(self.counter)
            if index >= self.max_jobs:
                return
            self._trial(index)

    def _summary(self, job_name: str, **fields: Any) -> None:
        with self.lock:
            record = jobs.read("tuning", self.name)
            summaries = record["TrainingJobs"]
            for summary in summaries:
                if summary["TrainingJobName"] == job_name:
                    summary.update(fields)
                    break
            else:
                summaries.append({"TrainingJobName": job_name, **fields})
            jobs.write("tuning", self.name, record)

    def _trial(self, index: int) -> None:
        import optuna

        trial = self.study.ask()
        tuned = {n: r.suggest(trial, n) for n, r in self.ranges.items()}
        job_name = f"{self.name}-{index + 1:03d}-{uuid.uuid4().hex[:8]}"
        self._summary(
            job_name,
            TrainingJobStatus="InProgress",
            TunedHyperParameters={k: str(v) for k, v in tuned.items()},
            OptunaParams=dict(trial.params),
            CreationTime=jobs.now(),
        )
        estimator = copy.copy(self.estimator)
        try:
            estimator.set_hyperparameters(**tuned)
            estimator.fit(self.inputs, wait=False, logs=False, job_name=job_name)
        except Exception as err:  # a bad suggestion or input: this job fails, the tuning goes on
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self._summary(job_name, TrainingJobStatus="Failed", FailureReason=str(err))
            return
        assert estimator.latest_training_job is not None
        backend = estimator.latest_training_job.backend
        per_epoch = f"{self.objective}:epoch"
        reported, pruned = 0, False
        while True:
            description = backend.describe_training_job(job_name)
            if not pruned:
                values = metric_values(self.metric_definitions, per_epoch, backend.training_log(job_name))
                for value in values[reported:]:
                    trial.report(value, reported)
                    reported += 1
                    if trial.should_prune():
                        pruned = True
                        backend.stop_training_job(job_name)
                        break
            if description["TrainingJobStatus"] in TERMINAL:
                break
            if self.stop_requested.is_set():
                backend.stop_training_job(job_name)
            time.sleep(POLL_SECONDS)
        self._finish(trial, job_name, description, backend.training_log(job_name), pruned)

    def _finish(self, trial: Any, job_name: str, description: dict[str, Any], log: str, pruned: bool) -> None:
        import optuna

        status = description["TrainingJobStatus"]
        objective = self.objective
        values = metric_values(self.metric_definitions, objective, log)
        if not values and status == "Stopped":  # stopped early: its last per-epoch value stands
            values = metric_values(self.metric_definitions, f"{objective}:epoch", log)
        fields: dict[str, Any] = {
            "TrainingJobStatus": status,
            "TrainingEndTime": jobs.now(),
            "TrainingStartTime": description.get("TrainingStartTime"),
        }
        if values:
            fields["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "MetricName": objective,
                "Value": values[-1],
            }
        if status == "Completed" and values:
            self.study.tell(trial, values[-1])
            fields["ObjectiveStatus"] = "Succeeded"
        elif pruned or status == "Stopped":
            self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            fields["ObjectiveStatus"] = "Pending" if not values else "Succeeded"
            fields["FailureReason"] = (
                "Stopped early by the tuner" if pruned else description.get("FailureReason")
            )
        else:
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            fields["ObjectiveStatus"] = "Failed"
            fields["FailureReason"] = description.get("FailureReason") or (
                f"the job's log has no {objective} line: check objective_metric_name"
            )
        self._summary(job_name, **fields)

    def _best(self) -> dict[str, Any] | None:
        summaries = [
            s
            for s in jobs.read("tuning", self.name)["TrainingJobs"]
            if s["TrainingJobStatus"] == "Completed" and "FinalHyperParameterTuningJobObjectiveMetric" in s
        ]
        if not summaries:
            return None
        sign = 1.0 if self.maximize else -1.0
        return max(summaries, key=lambda s: sign * s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"])

    def wait(self) -> None:
        self.thread.join()

    def stop(self) -> None:
        self.stop_requested.set()
