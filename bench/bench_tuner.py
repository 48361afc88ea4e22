"""Bayesian (optuna TPE) against Random search with the same budget, on the local_process back end.

The bench problem is an FM regression whose target has pairwise interactions, so the learning rates, the
factor weight decay and the number of factors all matter and the good region is a small corner of the
log-scaled space. Each strategy runs ``--jobs`` real training jobs (``--parallel`` at a time) per seed; the
figure of merit is the best held-out RMSE (``test:rmse``, minimized), median over ``--seeds`` seeds.

    python -m bench.bench_tuner            # 3 seeds x 2 strategies x 12 jobs: about 6 minutes on 2 busy cores

Exits 1 unless Bayesian's median best RMSE is at most Random's.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import numpy as np

from fmwals import FactorizationMachines
from fmwals.parameter import ContinuousParameter, IntegerParameter
from fmwals.tuner import HyperparameterTuner

RANGES = {
    "bias_lr": ContinuousParameter(1e-5, 1.0, "Logarithmic"),
    "linear_lr": ContinuousParameter(1e-5, 1.0, "Logarithmic"),
    "factors_lr": ContinuousParameter(1e-5, 1.0, "Logarithmic"),
    "factors_wd": ContinuousParameter(1e-8, 1e-1, "Logarithmic"),
    "num_factors": IntegerParameter(2, 16),
}


def problem(rows: int = 4000, features: int = 30, rank: int = 4, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Sparse binary features; target = bias + linear + rank-``rank`` pairwise interactions + noise."""
    rng = np.random.default_rng(seed)
    x = (rng.random((rows, features)) < 0.2).astype(np.float32)
    w = rng.normal(0, 1, features)
    v = rng.normal(0, 0.7, (features, rank))
    pairwise = 0.5 * (((x @ v) ** 2).sum(axis=1) - ((x**2) @ (v**2)).sum(axis=1))
    y = (1.0 + x @ w + pairwise + rng.normal(0, 0.1, rows)).astype(np.float32)
    split = rows * 3 // 4
    return x[:split], y[:split], x[split:], y[split:]


def best_rmse(strategy: str, seed: int, jobs: int, parallel: int, channels: list) -> float:
    fm = FactorizationMachines(
        "role", 1, "local_process", num_factors=4, predictor_type="regressor", epochs=8, mini_batch_size=100
    )
    tuner = HyperparameterTuner(
        fm,
        "test:rmse",
        RANGES,
        strategy=strategy,
        objective_type="Minimize",
        max_jobs=jobs,
        max_parallel_jobs=parallel,
        random_seed=seed,
    )
    tuner.fit(channels)
    values = [v for v in tuner.analytics()["FinalObjectiveValue"] if v is not None and np.isfinite(v)]
    return min(values) if values else float("inf")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=12)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args(argv)
    os.environ.setdefault("FMWALS_HOME", tempfile.mkdtemp(prefix="bench-tuner-"))
    x, y, xt, yt = problem()
    fm = FactorizationMachines("role", 1, "local_process", predictor_type="regressor")
    channels = [fm.record_set(x, y), fm.record_set(xt, yt, channel="test")]
    print(
        f"bench problem: {x.shape[0]} train / {xt.shape[0]} test rows, {x.shape[1]} features; "
        f"{args.jobs} jobs per run, {args.parallel} in parallel; target std {yt.std():.3f}"
    )
    results: dict[str, list[float]] = {"Bayesian": [], "Random": []}
    for seed in range(args.seeds):
        for strategy in results:
            started = time.monotonic()
            results[strategy].append(best_rmse(strategy, seed, args.jobs, args.parallel, channels))
            print(
                f"seed {seed} {strategy:<8} best test:rmse {results[strategy][-1]:.4f} "
                f"({time.monotonic() - started:.0f} s)",
                flush=True,
            )
    medians = {strategy: statistics.median(values) for strategy, values in results.items()}
    for strategy, values in results.items():
        print(
            f"{strategy:<8} median best test:rmse {medians[strategy]:.4f}  (per seed: "
            f"{', '.join(f'{v:.4f}' for v in values)})"
        )
    ok = medians["Bayesian"] <= medians["Random"]
    print(f"Bayesian {'<=' if ok else '>'} Random: ratio {medians['Bayesian'] / medians['Random']:.3f}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
