"""Tuning with ``fmwals.preset_ranges("fm")`` as is, against the defaults, on the local_process back end.

On each bench set (``bench.fm_data``; ``--rows`` subsamples the training rows of ratings and ctr, the test rows in
proportion), three things run as real training jobs with a test channel and ``--k`` factors on one thread each: a
job that sets nothing else (one epoch, as the built-in), the same with ``epochs=10`` (what the FM quality goals
measure), and a Bayesian tuning job of ``--jobs`` training jobs (``--parallel`` at a time) over
``preset_ranges("fm")`` and nothing else. The figure of merit is the held-out objective (``test:rmse`` for
ratings, ``test:binary_classification_cross_entropy`` for the classifiers) of the model each job keeps; the
script exits 1 unless the tuned best beats both default jobs on every set.

    python -m bench.bench_tuner_preset                  # ratings (200,000 rows) and digits: about 1 minute
    python -m bench.bench_tuner_preset --dataset ctr    # 200,000 click rows: about 3 minutes
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from typing import Any

from bench import fm_data
from fmwals import FactorizationMachines, preset_ranges
from fmwals.tuner import HyperparameterTuner

OBJECTIVE = {"regressor": "test:rmse", "binary_classifier": "test:binary_classification_cross_entropy"}
REPORTED = {"regressor": ("test:rmse",), "binary_classifier": ("test:auc", "test:binary_classification_cross_entropy")}
DEFAULT_ROWS = {"ratings": 200_000, "digits": None, "ctr": 200_000}


def _estimator(data: fm_data.BenchData, k: int, **hyperparameters: Any) -> FactorizationMachines:
    """A job on one thread (``--parallel`` jobs share the cores) that sets ``hyperparameters`` and nothing else."""
    return FactorizationMachines("role", 1, "local_process", num_factors=k, predictor_type=data.task,
                                 feature_dim=data.feature_dim, num_threads=1, **hyperparameters)


def _final(fm: FactorizationMachines, task: str) -> dict[str, float]:
    metrics = fm.training_job_analytics.metrics()
    return {name: metrics[name][-1] for name in REPORTED[task]}


def _text(values: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:.4f}" for name, value in values.items())


def run(name: str, rows: int | None, k: int, jobs: int, parallel: int, seed: int) -> bool:
    """The default jobs and the tuning job on one set; whether the tuned best beats both."""
    data = fm_data.load(name, rows=rows)
    writer = _estimator(data, k)
    channels = [writer.record_set(data.train.to_scipy(), data.train.labels),
                writer.record_set(data.test.to_scipy(), data.test.labels, channel="test")]
    print(f"{name}: {data.train.n_rows:,} train / {data.test.n_rows:,} test rows, feature_dim {data.feature_dim:,}, "
          f"k={k}", flush=True)
    objective = OBJECTIVE[data.task]
    scores: dict[str, float] = {}
    for label, extra in (("defaults (1 epoch)", {}), ("defaults, epochs=10", {"epochs": 10})):
        started = time.monotonic()
        fm = _estimator(data, k, **extra)
        fm.fit(channels, logs=False)
        final = _final(fm, data.task)
        scores[label] = final[objective]
        print(f"  {label:<22} {_text(final)}  ({time.monotonic() - started:.0f} s)", flush=True)
    started = time.monotonic()
    tuner = HyperparameterTuner(_estimator(data, k), objective, preset_ranges("fm"), strategy="Bayesian",
                                objective_type="Minimize", max_jobs=jobs, max_parallel_jobs=parallel,
                                random_seed=seed)
    tuner.fit(channels)
    table = tuner.analytics()
    values = [v for v in table["FinalObjectiveValue"] if v is not None]
    best_job = tuner.best_training_job()
    best = _final(FactorizationMachines.attach(best_job), data.task)
    tuned = {name: value for name, value in table.loc[table["TrainingJobName"] == best_job].iloc[0].items()
             if name in preset_ranges("fm")}
    first = next((i for i, v in enumerate(values, 1) if v < min(scores.values())), None)
    print(f"  {'tuned, ' + str(jobs) + ' jobs':<22} {_text(best)}  ({time.monotonic() - started:.0f} s); "
          f"{len(values)} jobs completed, the first to beat both defaults: job {first}", flush=True)
    print(f"  best: {', '.join(f'{name}={value}' for name, value in tuned.items())}", flush=True)
    print(f"  every job, in order: {', '.join(f'{v:.4f}' for v in values)}", flush=True)
    print(f"  ratio tuned / best default job: {best[objective] / min(scores.values()):.3f}", flush=True)
    return best[objective] < min(scores.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", nargs="+", choices=tuple(DEFAULT_ROWS), default=["ratings", "digits"])
    parser.add_argument("--rows", type=int, default=None,
                        help="training rows (default: 200,000 of ratings and ctr, all of digits)")
    parser.add_argument("--k", type=int, default=8, help="num_factors of every job")
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault("FMWALS_HOME", tempfile.mkdtemp(prefix="bench-tuner-preset-"))
    print(f"preset_ranges('fm'): {preset_ranges('fm')}", flush=True)
    beaten = [run(name, args.rows or DEFAULT_ROWS[name], args.k, args.jobs, args.parallel, args.seed)
              for name in args.dataset]
    print("tuned beats the defaults on every set" if all(beaten) else "MISS: the defaults were not beaten")
    return 0 if all(beaten) else 1


if __name__ == "__main__":
    sys.exit(main())
