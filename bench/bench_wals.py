"""WALS training: our numba WALS against implicit's CPU ``AlternatingLeastSquares`` (the anchor), same
factors, regularization, sweeps, threads and initial factors, interleaved in one invocation.

Implicit form (``bench.wals_data.implicit_counts``: 100k x 20k, 5M counts, 20% of each row held out): for each
solver (cholesky, cg with 3 steps), factors and thread count, both models train from the same uniform
[0, 0.01) factors; ours with ``alpha=A, unobserved_weight=1`` and implicit with the confidence ``1 + A·count``
as its data and ``alpha=1``, which is the same objective (docs/wals.md). Reported: median seconds per sweep
(our ``on_epoch`` seconds, implicit's callback time; neither includes loss or metrics), the ratio
implicit / ours, the training loss (the objective, regularization included, computed by the same code for
both), precision@10 on the held-out entries (training entries excluded; ``algorithm.ranking_metrics`` for
both) and the peak memory of each fit above the memory before it (``VmHWM`` after resetting it), next to
the size of CSR + CSC + factors. A popularity ranking gives the floor of the quality figures; an extra cg run
of both with ``--quality-sweeps`` sweeps shows the converged quality.

Scaling (``--scaling-nnz``): seconds per sweep of ours on the same shape with 1M, 5M and 20M counts.

Explicit form (``bench.wals_data.ratings``, the FM benchmark's MovieLens-1M-shaped ratings and split): test
RMSE and seconds per sweep of ours (implicit has no explicit objective) for a few regularizations, next to
the global-mean and Bayes (hidden model) RMSE.

    .venv/bin/python -m bench.bench_wals --factors 32 64 128 --threads 1 2 --sweeps 3

BLAS runs single-threaded (threadpoolctl) for both, as implicit's own check asks. Results also go to
``bench/results/wals.json``.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import re
import statistics
import time
import warnings
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from algorithm import _wals_kernels as kernels
from algorithm.ranking_metrics import ranking_metrics
from algorithm.wals import WALS, _entries, warm_up
from bench.wals_data import holdout, implicit_counts, ratings

RESULTS = Path(__file__).resolve().parent / "results" / "wals.json"
MIB = 1 << 20


def _implicit_als() -> Any:
    from implicit.cpu.als import AlternatingLeastSquares

    return AlternatingLeastSquares


def _peak_rss_reset() -> int:
    """Give freed heap memory back to the system (so the fit's allocations show in the RSS), reset the peak
    resident set size (Linux ``clear_refs``) and return the current RSS in bytes."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    Path("/proc/self/clear_refs").write_text("5")
    return _status("VmRSS")


def _status(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text()).group(1)) * 1024


def measured(fit: Callable[[], Any]) -> tuple[Any, int]:
    """(fit's result, peak RSS during the fit above the RSS before it, in bytes)."""
    before = _peak_rss_reset()
    result = fit()
    return result, _status("VmHWM") - before


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


def training_loss(train: sp.csr_matrix, U: np.ndarray, V: np.ndarray, alpha: float, regularization: float,
                  threads: int) -> float:
    """The objective of docs/wals.md (w0 = 1, regularization included) for factors U, V: the same code scores
    both models."""
    n, m = train.shape
    rows = _entries(train, np.ones(n, np.float32), np.ones(m, np.float32), alpha)
    U, V = np.ascontiguousarray(U, np.float32), np.ascontiguousarray(V, np.float32)
    sparse_part = float(kernels.row_losses(rows, U, V, 1.0, threads).sum())
    gram_u, gram_v = U.T.astype(np.float64) @ U, V.T.astype(np.float64) @ V
    return sparse_part + float((gram_u * gram_v).sum()) + regularization * float(np.trace(gram_u)
                                                                                  + np.trace(gram_v))


def structure_bytes(train: sp.csr_matrix, factors: int, ours: bool) -> int:
    """CSR + CSC + factors as each implementation stores them: ours int64 indptr/indices with float32 targets
    and extra weights per side; implicit int32 indptr/indices with float32 confidences per side."""
    n, m = train.shape
    per_entry, per_pointer = (16, 8) if ours else (8, 4)
    return 2 * per_entry * train.nnz + per_pointer * (n + m + 2) + 4 * factors * (n + m)


def _initial(train: sp.csr_matrix, factors: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([seed, factors])
    return (rng.random((train.shape[0], factors), dtype=np.float32) * 0.01,
            rng.random((train.shape[1], factors), dtype=np.float32) * 0.01)


def implicit_benchmark(args: argparse.Namespace) -> list[dict[str, Any]]:
    train, test = holdout(implicit_counts(args.seed, nnz=args.nnz), args.seed)
    print(f"implicit data: {train.shape[0]} x {train.shape[1]}, train nnz {train.nnz}, test nnz {test.nnz}")
    popularity = np.asarray(train.sum(axis=0)).ravel().astype(np.float32)[:, None]
    floor = ranking_metrics(np.ones((train.shape[0], 1), np.float32), popularity, test, 10, exclude=train)
    print(f"popularity ranking: precision@10 {floor['precision_at_k']:.4f} ndcg@10 {floor['ndcg_at_k']:.4f}")
    results = []
    turn = 0  # which model goes first alternates from run to run
    for solver in args.solvers:
        for factors in args.factors:
            init = _initial(train, factors, args.seed)
            for threads in args.threads:
                timings: dict[str, list[float]] = {"ours": [], "implicit": []}
                models: dict[str, tuple[np.ndarray, np.ndarray]] = {}
                memory: dict[str, int] = {}
                for _ in range(args.repeat):
                    order = ("ours", "implicit") if turn % 2 == 0 else ("implicit", "ours")
                    turn += 1
                    for name in order:
                        runner = run_ours if name == "ours" else run_implicit
                        (seconds, model), peak = measured(partial(
                            runner, train, solver, factors, threads, args.sweeps, args.alpha, args.regularization,
                            init))
                        timings[name] += seconds
                        memory[name] = max(memory.get(name, 0), peak)
                        models[name] = ((model.row_factors_, model.col_factors_) if name == "ours"
                                        else (model.user_factors, model.item_factors))
                row: dict[str, Any] = {"solver": solver, "factors": factors, "threads": threads,
                                       "sweeps": args.sweeps}
                for name, (U, V) in models.items():
                    quality = ranking_metrics(U, V, test, 10, exclude=train)
                    row[f"{name}_s_per_sweep"] = statistics.median(timings[name])
                    row[f"{name}_loss"] = training_loss(train, U, V, args.alpha, args.regularization, threads)
                    row[f"{name}_precision_at_10"] = quality["precision_at_k"]
                    row[f"{name}_ndcg_at_10"] = quality["ndcg_at_k"]
                    row[f"{name}_peak_mib"] = memory[name] / MIB
                    row[f"{name}_structure_mib"] = structure_bytes(train, factors, name == "ours") / MIB
                row["ratio"] = row["implicit_s_per_sweep"] / row["ours_s_per_sweep"]
                row["loss_ratio"] = row["ours_loss"] / row["implicit_loss"]
                print(f"{solver:8s} k={factors:3d} threads={threads}: "
                      f"ours {row['ours_s_per_sweep']:.3f} s/sweep, "
                      f"implicit {row['implicit_s_per_sweep']:.3f} s/sweep, ratio {row['ratio']:.2f}; "
                      f"loss ours/implicit {row['loss_ratio']:.6f}; "
                      f"P@10 {row['ours_precision_at_10']:.4f} / {row['implicit_precision_at_10']:.4f}; "
                      f"peak MiB {row['ours_peak_mib']:.0f} (structures {row['ours_structure_mib']:.0f}) / "
                      f"{row['implicit_peak_mib']:.0f} ({row['implicit_structure_mib']:.0f})", flush=True)
                results.append(row)
    results.append({"popularity_precision_at_10": floor["precision_at_k"],
                    "popularity_ndcg_at_10": floor["ndcg_at_k"]})
    if args.quality_sweeps:
        k = args.quality_factors
        init = _initial(train, k, args.seed)
        row = {"quality_run": "cg", "factors": k, "sweeps": args.quality_sweeps}
        for name, runner in (("ours", run_ours), ("implicit", run_implicit)):
            _, model = runner(train, "cg", k, max(args.threads), args.quality_sweeps, args.alpha,
                              args.regularization, init)
            U, V = ((model.row_factors_, model.col_factors_) if name == "ours"
                    else (model.user_factors, model.item_factors))
            quality = ranking_metrics(U, V, test, 10, exclude=train)
            row.update({f"{name}_{metric}": value for metric, value in quality.items()})
            row[f"{name}_loss"] = training_loss(train, U, V, args.alpha, args.regularization, max(args.threads))
        print(f"quality, cg k={k}, {args.quality_sweeps} sweeps (ours / implicit): loss "
              f"{row['ours_loss']:.6g} / {row['implicit_loss']:.6g}, "
              + ", ".join(f"{metric} {row['ours_' + metric]:.4f} / {row['implicit_' + metric]:.4f}"
                          for metric in quality), flush=True)
        results.append(row)
    return results


def scaling_benchmark(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Seconds per sweep of ours on the default shape with each of ``--scaling-nnz`` counts (all entries
    trained; no held-out split)."""
    results = []
    threads = max(args.threads)
    for nnz in args.scaling_nnz:
        train = implicit_counts(args.seed, nnz=nnz)
        init = _initial(train, args.scaling_factors, args.seed)
        for solver in args.solvers:
            (seconds, _), peak = measured(partial(
                run_ours, train, solver, args.scaling_factors, threads, args.scaling_sweeps, args.alpha,
                args.regularization, init))
            row = {"nnz": nnz, "solver": solver, "factors": args.scaling_factors, "threads": threads,
                   "s_per_sweep": statistics.median(seconds)}
            row["s_per_sweep_per_million_nnz"] = row["s_per_sweep"] / (nnz / 1e6)
            row["peak_mib"] = peak / MIB
            row["structure_mib"] = structure_bytes(train, args.scaling_factors, True) / MIB
            print(f"scaling {solver:8s} nnz={nnz:>10,d} k={args.scaling_factors} threads={threads}: "
                  f"{row['s_per_sweep']:.3f} s/sweep ({row['s_per_sweep_per_million_nnz']:.3f} s per 1M nnz), "
                  f"peak {row['peak_mib']:.0f} MiB (structures {row['structure_mib']:.0f} MiB)", flush=True)
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
    parser.add_argument("--nnz", type=int, default=5_000_000, help="counts of the implicit data set")
    parser.add_argument("--alpha", type=float, default=40.0)
    parser.add_argument("--regularization", type=float, default=10.0)
    parser.add_argument("--quality-sweeps", type=int, default=15,
                        help="sweeps of the extra cg quality run of both models (0 skips it)")
    parser.add_argument("--quality-factors", type=int, default=64)
    parser.add_argument("--scaling-nnz", type=int, nargs="*", default=[1_000_000, 5_000_000, 20_000_000],
                        help="counts of the scaling run of ours (none skips it)")
    parser.add_argument("--scaling-factors", type=int, default=64)
    parser.add_argument("--scaling-sweeps", type=int, default=2)
    parser.add_argument("--explicit-factors", type=int, default=32)
    parser.add_argument("--explicit-sweeps", type=int, default=10)
    parser.add_argument("--explicit-regularization", type=float, nargs="+", default=[5.0, 20.0, 50.0])
    parser.add_argument("--skip-implicit", action="store_true")
    parser.add_argument("--skip-explicit", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", message="OpenBLAS is configured")
    started = time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"):
        warm_up()
        results: dict[str, Any] = {"args": vars(args)}
        if not args.skip_implicit:
            results["implicit"] = implicit_benchmark(args)
        if args.scaling_nnz:
            results["scaling"] = scaling_benchmark(args)
        if not args.skip_explicit:
            results["explicit"] = explicit_benchmark(args)
    results["seconds"] = time.perf_counter() - started
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
