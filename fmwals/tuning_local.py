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
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal

from fmwals import jobs
from fmwals.inputs import Inputs
from fmwals.parameter import IntegerParameter, Range, grid_values

if TYPE_CHECKING:
    from fmwals.tuner import HyperparameterTuner

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


class LocalTuningJob:
    """Runs one tuning job in a background thread; ``wait()`` joins it."""

    def __init__(self, tuner: HyperparameterTuner, name: str, inputs: Inputs) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.tuner = tuner
        self.name = name
        self.inputs = inputs
        self.lock = threading.Lock()
        self.stop_requested = threading.Event()
        direction: Literal["maximize", "minimize"] = (
            "maximize" if tuner.objective_type == "Maximize" else "minimize"
        )
        self.study = optuna.create_study(
            direction=direction,
            sampler=_sampler(tuner.strategy, tuner.random_seed),
            pruner=_pruner(tuner.strategy, tuner.early_stopping_type),
        )
        self.max_jobs = tuner.max_jobs
        if tuner.strategy == "Grid":
            points = grid(tuner.hyperparameter_ranges_)
            for params in points:
                self.study.enqueue_trial(params)
            self.max_jobs = min(self.max_jobs or len(points), len(points))
        self.counter = itertools.count()
        self._warm_start()
        jobs.write(
            "tuning",
            name,
            {
                **tuner.describe_request(name, tuner.training_definition(name, inputs)),
                "HyperParameterTuningJobStatus": "InProgress",
                "CreationTime": jobs.now(),
                "TrainingJobs": [],
            },
        )
        self.thread = threading.Thread(target=self._run, name=f"tuning-{name}", daemon=True)
        self.thread.start()

    def _warm_start(self) -> None:
        """Add the parents' finished trials whose values fit today's ranges to the study."""
        import optuna

        config = self.tuner.warm_start_config
        if config is None:
            return
        for parent in sorted(config.parents):
            for summary in jobs.read("tuning", parent).get("TrainingJobs", []):
                value = summary.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get("Value")
                if summary["TrainingJobStatus"] != "Completed" or value is None:
                    continue
                params = summary.get("OptunaParams", {})
                probe = optuna.trial.FixedTrial(params)
                # A parent trial outside today's ranges (TransferLearning may change them) is left out.
                with contextlib.suppress(ValueError, KeyError, AttributeError):
                    for name, parameter in self.tuner.hyperparameter_ranges_.items():
                        parameter.suggest(probe, name)
                    self.study.add_trial(
                        optuna.trial.create_trial(
                            params=params, distributions=probe.distributions, value=value
                        )
                    )

    def _run(self) -> None:
        with ThreadPoolExecutor(self.tuner.max_parallel_jobs, thread_name_prefix=self.name) as pool:
            workers = [pool.submit(self._worker) for _ in range(self.tuner.max_parallel_jobs)]
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
        tuned = {n: r.suggest(trial, n) for n, r in self.tuner.hyperparameter_ranges_.items()}
        job_name = f"{self.name}-{index + 1:03d}-{uuid.uuid4().hex[:8]}"
        self._summary(
            job_name,
            TrainingJobStatus="InProgress",
            TunedHyperParameters={k: str(v) for k, v in tuned.items()},
            OptunaParams=dict(trial.params),
            CreationTime=jobs.now(),
        )
        estimator = copy.copy(self.tuner.estimator)
        try:
            estimator.set_hyperparameters(**tuned)
            estimator.fit(self.inputs, wait=False, logs=False, job_name=job_name)
        except Exception as err:  # a bad suggestion or input: this job fails, the tuning goes on
            self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
            self._summary(job_name, TrainingJobStatus="Failed", FailureReason=str(err))
            return
        assert estimator.latest_training_job is not None
        backend = estimator.latest_training_job.backend
        per_epoch = f"{self.tuner.objective_metric_name}:epoch"
        reported, pruned = 0, False
        while True:
            description = backend.describe_training_job(job_name)
            if not pruned:
                values = self.tuner.metric_values(per_epoch, backend.training_log(job_name))
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
        objective = self.tuner.objective_metric_name
        values = self.tuner.metric_values(objective, log)
        if not values and status == "Stopped":  # stopped early: its last per-epoch value stands
            values = self.tuner.metric_values(f"{objective}:epoch", log)
        fields: dict[str, Any] = {
            "TrainingJobStatus": status,
            "TrainingEndTime": jobs.now(),
            "TrainingStartTime": description.get("TrainingStartTime"),
        }
        if values:
            fields["FinalHyperParameterTuningJobObjectiveMetric"] = {
                "MetricName": self.tuner.objective_metric_name,
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
        sign = 1.0 if self.tuner.objective_type == "Maximize" else -1.0
        return max(summaries, key=lambda s: sign * s["FinalHyperParameterTuningJobObjectiveMetric"]["Value"])

    def wait(self) -> None:
        self.thread.join()

    def stop(self) -> None:
        self.stop_requested.set()
