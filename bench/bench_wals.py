"""WALS training: our numba WALS against implicit's CPU ``AlternatingLeastSquares`` (the anchor), same
factors, regularization, sweeps, threads and initial factors, interleaved in one invocation.

Implicit form (``bench.wals_data.implicit_counts``, 25k x 8k, ~1.1M counts, 20% held out): for each solver
(cholesky, cg with 3 steps), factors and thread count, both models train from the same uniform [0, 0.01)
factors; ours with ``alpha=A, unobserved_weight=1`` and implicit with the confidence ``1 + A·count`` as its
data and ``alpha=1``, which is the same objective (docs/wals.md). Reported: median seconds per sweep (our
``on_epoch`` seconds, implicit's callback time; neither includes loss or metrics), the ratio
implicit / ours, precision@10 and NDCG@10 on the held-out entries (training entries excluded; our
``algorithm.ranking_metrics`` for both) and the largest factor difference between the two models, relative
to the largest factor. A popularity ranking gives the floor of the quality figures; an extra cg run of both
with ``--quality-sweeps`` sweeps shows the converged quality.

Explicit form (``bench.wals_data.ratings``, the FM benchmark's MovieLens-1M-shaped ratings and split): test
RMSE and seconds per sweep of ours (implicit has no explicit objective) for a few regularizations, next to
the global-mean and Bayes (hidden model) RMSE.

    .venv/bin/python -m bench.bench_wals --factors 32 64 128 --threads 1 2 --sweeps 3

BLAS runs single-threaded (threadpoolctl) for both, as implicit's own check asks. Results also go to
``bench/results/wals.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from algorithm.ranking_metrics import ranking_metrics
from algorithm.wals import WALS, warm_up
from bench.wals_data import holdout, implicit_counts, ratings

RESULTS = Path(__file__).resolve().parent / "results" / "wals.json"


def _implicit_als() -> Any:
    from implicit.cpu.als import AlternatingLeastSquares

    return AlternatingLeastSquares


def run_ours(train: sp.csr_matrix, solver: str, factors: int, threads: int, sweeps: int, alpha: float,
             regularization: float, init: tuple[np.ndarray, np.ndarray]) -> tuple[list[float], WALS]:
    seconds: list[float] = []
    model = WALS(embedding_dimension=factors, alpha=alpha, unobserved_weight=1.0,
                 regularization_coeff=regularization, solver=solver, cg_steps=3, max_sweeps=sweeps,
                 num_threads=threads, row_init="model", col_init="model")
    model.fit(train, on_epoch=lambda sweep, train_metrics, test, s: seconds.append(s),
              init_row_factors=init[0], init_col_factors=init[1])
    return seconds, model


def run_implicit(train: sp.csr_matrix, solver: str, factors: int, threads: int, sweeps: int, alpha: float,
                 regularization: float, init: tuple[np.ndarray, np.ndarray]) -> tuple[list[float], Any]:
    seconds: list[float] = []
    model = _implicit_als()(factors=factors, regularization=regularization, alpha=1.0, use_cg=solver == "cg",
                            iterations=sweeps, num_threads=threads, random_state=0)
    model.cg_steps = 3
    model.user_factors, model.item_factors = init[0].copy(), init[1].copy()
    confidence = train.copy()
    confidence.data = (1.0 + alpha * confidence.data).astype(np.float32)
    model.fit(confidence, show_progress=False, callback=lambda it, elapsed, loss: seconds.append(elapsed))
    return seconds, model


def implicit_benchmark(args: argparse.Namespace) -> list[dict[str, Any]]:
    train, test = holdout(implicit_counts(args.seed), args.seed)
    print(f"implicit data: {train.shape[0]} x {train.shape[1]}, train nnz {train.nnz}, test nnz {test.nnz}")
    popularity = np.asarray(train.sum(axis=0)).ravel().astype(np.float32)[:, None]
    floor = ranking_metrics(np.ones((train.shape[0], 1), np.float32), popularity, test, 10, exclude=train)
    print(f"popularity ranking: precision@10 {floor['precision_at_k']:.4f} ndcg@10 {floor['ndcg_at_k']:.4f}")
    results = []
    turn = 0  # which model goes first alternates from run to run
    for solver in args.solvers:
        for factors in args.factors:
            rng = np.random.default_rng([args.seed, factors])
            init = (rng.random((train.shape[0], factors), dtype=np.float32) * 0.01,
                    rng.random((train.shape[1], factors), dtype=np.float32) * 0.01)
            for threads in args.threads:
                timings: dict[str, list[float]] = {"ours": [], "implicit": []}
                models: dict[str, tuple[np.ndarray, np.ndarray]] = {}
                for _ in range(args.repeat):
                    order = ("ours", "implicit") if turn % 2 == 0 else ("implicit", "ours")
                    turn += 1
                    for name in order:
                        runner = run_ours if name == "ours" else run_implicit
                        seconds, model = runner(train, solver, factors, threads, args.sweeps, args.alpha,
                                                args.regularization, init)
                        timings[name] += seconds
                        models[name] = ((model.row_factors_, model.col_factors_) if name == "ours"
                                        else (model.user_factors, model.item_factors))
                row = {"solver": solver, "factors": factors, "threads": threads, "sweeps": args.sweeps}
                for name, (U, V) in models.items():
                    quality = ranking_metrics(U, V, test, 10, exclude=train)
                    row[f"{name}_s_per_sweep"] = statistics.median(timings[name])
                    row[f"{name}_precision_at_10"] = quality["precision_at_k"]
                    row[f"{name}_ndcg_at_10"] = quality["ndcg_at_k"]
                row["ratio"] = row["implicit_s_per_sweep"] / row["ours_s_per_sweep"]
                theirs = np.concatenate([models["implicit"][0], models["implicit"][1]])
                ours = np.concatenate([models["ours"][0], models["ours"][1]])
                row["max_factor_difference"] = float(np.abs(ours - theirs).max() / np.abs(theirs).max())
                print(f"{solver:8s} k={factors:3d} threads={threads}: "
                      f"ours {row['ours_s_per_sweep']:.3f} s/sweep, "
                      f"implicit {row['implicit_s_per_sweep']:.3f} s/sweep, ratio {row['ratio']:.2f}; "
                      f"P@10 {row['ours_precision_at_10']:.4f} / {row['implicit_precision_at_10']:.4f}, "
                      f"NDCG@10 {row['ours_ndcg_at_10']:.4f} / {row['implicit_ndcg_at_10']:.4f}; "
                      f"factor diff {row['max_factor_difference']:.1e}", flush=True)
                results.append(row)
    results.append({"popularity_precision_at_10": floor["precision_at_k"],
                    "popularity_ndcg_at_10": floor["ndcg_at_k"]})
    if args.quality_sweeps:
        rng = np.random.default_rng([args.seed, 0])
        k = args.quality_factors
        init = (rng.random((train.shape[0], k), dtype=np.float32) * 0.01,
                rng.random((train.shape[1], k), dtype=np.float32) * 0.01)
        row = {"quality_run": "cg", "factors": k, "sweeps": args.quality_sweeps}
        for name, runner in (("ours", run_ours), ("implicit", run_implicit)):
            _, model = runner(train, "cg", k, max(args.threads), args.quality_sweeps, args.alpha,
                              args.regularization, init)
            U, V = ((model.row_factors_, model.col_factors_) if name == "ours"
                    else (model.user_factors, model.item_factors))
            quality = ranking_metrics(U, V, test, 10, exclude=train)
            row.update({f"{name}_{metric}": value for metric, value in quality.items()})
        print(f"quality, cg k={k}, {args.quality_sweeps} sweeps (ours / implicit): "
              + ", ".join(f"{metric} {row['ours_' + metric]:.4f} / {row['implicit_' + metric]:.4f}"
                          for metric in quality), flush=True)
        results.append(row)
    return results


def explicit_benchmark(args: argparse.Namespace) -> list[dict[str, Any]]:
    train, test, reference = ratings(args.seed)
    print(f"ratings: {train.shape[0]} x {train.shape[1]}, train {train.nnz}, test {test.nnz}; "
          f"global-mean RMSE {reference['global_mean_rmse']:.4f}, Bayes RMSE {reference['bayes_rmse']:.4f}")
    results = []
    for solver in args.solvers:
        for regularization in args.explicit_regularization:
            history: list[tuple[float, float]] = []

            def record(sweep: int, train_metrics: dict, test_metrics: dict, seconds: float,
                       history: list[tuple[float, float]] = history) -> None:
                history.append((test_metrics["rmse"], seconds))

            model = WALS(embedding_dimension=args.explicit_factors, unobserved_weight=0.0,
                         regularization_coeff=regularization, solver=solver, max_sweeps=args.explicit_sweeps,
                         num_threads=max(args.threads))
            model.fit(train, eval_set=test, on_epoch=record)
            row = {"solver": solver, "factors": args.explicit_factors, "regularization": regularization,
                   "threads": max(args.threads), "sweeps": args.explicit_sweeps,
                   "test_rmse": history[-1][0], "best_test_rmse": min(r for r, _ in history),
                   "s_per_sweep": statistics.median(s for _, s in history), **reference}
            print(f"explicit {solver:8s} k={args.explicit_factors} lambda={regularization:g}: test RMSE "
                  f"{row['test_rmse']:.4f} (best {row['best_test_rmse']:.4f}), "
                  f"{row['s_per_sweep']:.3f} s/sweep", flush=True)
            results.append(row)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--factors", type=int, nargs="+", default=[32, 64, 128])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--solvers", nargs="+", default=["cholesky", "cg"], choices=["cholesky", "cg"])
    parser.add_argument("--sweeps", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=1, help="fits per model and setting (interleaved)")
    parser.add_argument("--alpha", type=float, default=10.0)
    parser.add_argument("--regularization", type=float, default=0.05)
    parser.add_argument("--quality-sweeps", type=int, default=10,
                        help="sweeps of the extra cg quality run of both models (0 skips it)")
    parser.add_argument("--quality-factors", type=int, default=64)
    parser.add_argument("--explicit-factors", type=int, default=32)
    parser.add_argument("--explicit-sweeps", type=int, default=10)
    parser.add_argument("--explicit-regularization", type=float, nargs="+", default=[5.0, 20.0, 50.0])
    parser.add_argument("--skip-implicit", action="store_true")
    parser.add_argument("--skip-explicit", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="OpenBLAS is configured")
    with threadpool_limits(limits=1, user_api="blas"):
        warm_up()
        results = {"args": vars(args)}
        if not args.skip_implicit:
            results["implicit"] = implicit_benchmark(args)
        if not args.skip_explicit:
            results["explicit"] = explicit_benchmark(args)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
