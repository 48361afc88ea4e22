"""WALS serving: one 1,000-instance request through our ``WALSServable`` (JSON in, ids mapped, JSON out) and
the same queries through ``WALS`` directly, against implicit 0.7's batched ``recommend`` / ``similar_items``
(the anchor) with the same factors, interleaved in one invocation.

Queries: top-10 for known rows with their training columns left out; top-10 for new rows folded in from two
observed columns (implicit: ``recalculate_user=True`` on the confidence ``1 + alpha·count``, the same
objective, docs/wals.md); 10 most similar columns (cosine for both). Reported: instances/s (median of
``--repeat``), the ratio ours / implicit, and the mean overlap of the top-10 lists (1.0 = same answers).

    .venv/bin/python -m bench.bench_wals_serving --rows 50000 --cols 10000 --k 32 --repeat 5
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import numpy as np
import orjson
import scipy.sparse as sp
from threadpoolctl import threadpool_limits

from algorithm.wals import WALS
from algorithm.wals_model import IdMap, WALSModel
from serve.wals_servable import WALSServable

JSON = "application/json"
ALPHA, REG = 10.0, 1.0


def _counts(n_rows: int, n_cols: int, nnz: int, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    popularity = 1.0 / np.arange(1, n_cols + 1) ** 0.8
    cols = rng.choice(n_cols, nnz, p=popularity / popularity.sum())
    R = sp.csr_matrix((np.ones(nnz, np.float32), (rng.integers(0, n_rows, nnz), cols)), shape=(n_rows, n_cols))
    R.sum_duplicates()
    return R


def _implicit(model: WALSModel, k: int) -> Any:
    from implicit.cpu.als import AlternatingLeastSquares

    als = AlternatingLeastSquares(factors=k, regularization=REG, alpha=1.0, num_threads=1, random_state=0)
    als.user_factors = np.ascontiguousarray(model.wals.row_factors_)
    als.item_factors = np.ascontiguousarray(model.wals.col_factors_)
    return als


def _overlap(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean([len(set(x) & set(y)) / len(x) for x, y in zip(a.tolist(), b.tolist(), strict=True)]))


def _served_cols(answer: bytes, col_ids: IdMap) -> np.ndarray:
    lookup = {name: j for j, name in enumerate(col_ids.to_list(np.arange(len(col_ids))))}
    return np.array([[lookup[c] for c in p["cols"]] for p in orjson.loads(answer)["predictions"]])


def _timed(fn: Callable[[], Any], sink: dict[str, Any], name: str) -> float:
    start = time.perf_counter()
    sink[name] = fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--cols", type=int, default=10_000)
    parser.add_argument("--nnz", type=int, default=1_000_000)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--instances", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with threadpool_limits(1):
        _run(args)


def _run(args: argparse.Namespace) -> None:
    R = _counts(args.rows, args.cols, args.nnz, seed=0)
    wals = WALS(embedding_dimension=args.k, max_sweeps=2, alpha=ALPHA, unobserved_weight=1.0,
                regularization_coeff=REG, num_threads=1, seed=0).fit(R)
    row_ids = IdMap(np.array([f"u{i:06d}" for i in range(args.rows)]))
    col_ids = IdMap(np.array([f"item-{j:06d}" for j in range(args.cols)]))
    model = WALSModel(wals, row_ids, col_ids, R)
    servable = WALSServable(model)
    servable.warm_up()
    als = _implicit(model, args.k)

    rng = np.random.default_rng(1)
    rows = rng.integers(0, args.rows, args.instances)
    cols = rng.integers(0, args.cols, (args.instances, 2))
    R_new = sp.csr_matrix((np.full(2 * args.instances, 3.0, np.float32),
                           (np.repeat(np.arange(args.instances), 2), cols.ravel())),
                          shape=(args.instances, args.cols))
    R_new.sum_duplicates()
    confidence = R_new.copy()
    confidence.data = 1.0 + ALPHA * confidence.data
    names = col_ids.to_list(np.arange(args.cols))
    bodies = {
        "top-10 known rows": [{"row": f"u{r:06d}", "k": 10} for r in rows],
        "top-10 new rows (fold-in)": [
            {"observed": {"cols": [names[c] for c in R_new.indices[R_new.indptr[i]:R_new.indptr[i + 1]]],
                          "values": R_new.data[R_new.indptr[i]:R_new.indptr[i + 1]].tolist()}, "k": 10}
            for i in range(args.instances)],
        "similar columns": [{"similar_to_col": names[c], "k": 10} for c in cols[:, 0]],
    }
    direct: dict[str, Callable[[], np.ndarray]] = {
        "top-10 known rows": lambda: wals.recommend(rows, 10, exclude_seen=R[rows])[0],
        "top-10 new rows (fold-in)": lambda: wals.recommend_from_factors(wals.project_rows(R_new), 10,
                                                                         exclude_seen=R_new)[0],
        "similar columns": lambda: np.array([wals.similar_cols(int(c), 10)[0] for c in cols[:, 0]]),
    }
    anchor: dict[str, Callable[[], np.ndarray]] = {
        "top-10 known rows": lambda: als.recommend(rows, R[rows], N=10)[0],
        "top-10 new rows (fold-in)": lambda: als.recommend(np.arange(args.instances), confidence, N=10,
                                                           recalculate_user=True)[0],
        "similar columns": lambda: als.similar_items(cols[:, 0], N=11)[0][:, 1:],
    }

    print(f"model {args.rows:,} rows x {args.cols:,} cols, {R.nnz:,} entries, k={args.k}; "
          f"{args.instances:,} instances per request; 1 thread")
    print("| query | served (JSON) inst/s | WALS API inst/s | implicit inst/s | served / implicit "
          "| API / implicit | top-10 overlap |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, instances in bodies.items():
        body = orjson.dumps({"instances": instances})
        out: dict[str, Any] = {}
        times: dict[str, list[float]] = {"served": [], "api": [], "implicit": []}
        for _ in range(args.repeat):
            times["served"].append(_timed(partial(servable.invoke, body, JSON, JSON), out, "served"))
            times["api"].append(_timed(direct[name], out, "api"))
            times["implicit"].append(_timed(anchor[name], out, "implicit"))
        rate = {key: args.instances / statistics.median(t) for key, t in times.items()}
        served = _served_cols(out["served"], col_ids)
        overlap = min(_overlap(served, out["implicit"]), _overlap(out["api"], out["implicit"]))
        print(f"| {name} | {rate['served']:,.0f} | {rate['api']:,.0f} | {rate['implicit']:,.0f} | "
              f"{rate['served'] / rate['implicit']:.2f} | {rate['api'] / rate['implicit']:.2f} | {overlap:.3f} |")


if __name__ == "__main__":
    main()
