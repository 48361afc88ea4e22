"""FM top-k: the top 10 of 100,000 one-hot item candidates for a user context at k = 64 factors, through a top-k
query of the real server (one worker) and ``FMTopK`` in this process, against brute-force scoring of all
100,000 (context, item) rows through ``/invocations`` (what the built-in allows) and against faiss-cpu's exact
``IndexFlatIP`` on the same vectors (the AWS blog's recipe: items [V_c, w_c], user [Σ ctx V, 1], so the inner
product is the score minus the context's constant), interleaved in one invocation.

Reported: single-request latency p50/p99 (ms) and batched candidate rows/s (``--batch`` users a request, rows =
users x candidates), with the ratios ours / anchor, and the share of top-10 lists equal to faiss's.

    .venv/bin/python -m bench.bench_fm_topk --candidates 100000 --factors 64 --rounds 200 --batch 256
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import requests

from algorithm import artifact
from algorithm.fm import FactorizationMachines
from algorithm.fm_topk import Candidates, FMTopK, TopKQuery
from bench.bench_serve import ours

JSON = "application/json"
USERS, SIDE = 10_000, 100  # one-hot user block, then side features, then the item block
TOP = 10


def _model(n_items: int, factors: int) -> FactorizationMachines:
    d = USERS + SIDE + n_items
    rng = np.random.default_rng(0)
    arrays = {"w0": np.array([-1.0], np.float32), "w": rng.standard_normal(d).astype(np.float32) * 0.1,
              "V": rng.standard_normal((d, factors)).astype(np.float32) * 0.1}
    meta = {"hyperparameters": {"feature_dim": d, "num_factors": factors, "predictor_type": "binary_classifier"}}
    return FactorizationMachines.from_artifact(meta, arrays)


def _context(rng: np.random.Generator) -> dict[str, list[Any]]:
    return {"keys": [int(rng.integers(USERS)), USERS + int(rng.integers(SIDE)), USERS + int(rng.integers(SIDE))],
            "values": [1.0, 1.0, 0.5]}


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def _ms(times: list[float]) -> str:
    ordered = sorted(times)
    return f"{1e3 * statistics.median(ordered):.2f} / {1e3 * ordered[int(0.99 * (len(ordered) - 1))]:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candidates", type=int, default=100_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--brute-every", type=int, default=40, help="one brute-force request every N rounds")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--batch-rounds", type=int, default=10)
    args = parser.parse_args()
    # faiss's OpenMP threads otherwise spin after each search, taking the cores the server needs next
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import faiss

    model = _model(args.candidates, args.factors)
    lo, hi = USERS + SIDE, USERS + SIDE + args.candidates
    ranker = FMTopK(model)
    index = faiss.IndexFlatIP(args.factors + 1)
    index.add(np.ascontiguousarray(np.column_stack([model.V_[lo:hi], model.w_[lo:hi]]), dtype=np.float32))
    items = Candidates(features=np.arange(lo, hi))

    def user_vectors(contexts: list[dict[str, list[Any]]]) -> np.ndarray:
        sums = np.stack([np.float32(c["values"]) @ model.V_[c["keys"]] for c in contexts])
        return np.ascontiguousarray(np.column_stack([sums, np.ones(len(contexts))]), dtype=np.float32)

    def in_process(contexts: list[dict[str, list[Any]]]) -> list[np.ndarray]:
        queries = [TopKQuery(np.array(c["keys"]), np.float32(c["values"]), items, TOP) for c in contexts]
        return [lo + r.positions for r in ranker.rank(queries)]

    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as scratch:
        artifact.save(Path(scratch) / "model", model)
        env = {"SAGEMAKER_MODEL_SERVER_WORKERS": "1", "SAGEMAKER_MAX_PAYLOAD_IN_MB": "100"}
        with ours(Path(scratch), env=env) as url:
            session = requests.Session()

            def post(body: bytes) -> Any:
                response = session.post(url + "/invocations", data=body, timeout=300,
                                        headers={"Content-Type": JSON, "Accept": JSON})
                response.raise_for_status()
                return orjson.loads(response.content)["predictions"]

            def served(contexts: list[dict[str, list[Any]]]) -> list[list[int]]:
                queries = [{"context": c, "candidates": {"range": [lo, hi]}, "k": TOP} for c in contexts]
                return [p["candidates"] for p in post(orjson.dumps({"queries": queries}))]

            def brute_force(context: dict[str, list[Any]]) -> np.ndarray:
                keys, values = context["keys"], context["values"]
                rows = [{"data": {"features": {"keys": [*keys, c], "values": [*values, 1.0]}}} for c in range(lo, hi)]
                body = orjson.dumps({"instances": rows})
                scores = np.float32([p["score"] for p in post(body)])
                best = np.argpartition(-scores, TOP)[:TOP]
                return lo + best[np.lexsort((best, -scores[best]))]

            times: dict[str, list[float]] = {"served": [], "in-process": [], "faiss": [], "brute force": []}
            same = []
            for round_ in range(args.rounds):
                context = _context(rng)
                t, got = _timed(lambda: served([context]))  # noqa: B023
                times["served"].append(t)
                t, _ = _timed(lambda: in_process([context]))  # noqa: B023
                times["in-process"].append(t)
                t, (_, found) = _timed(lambda: index.search(user_vectors([context]), TOP))  # noqa: B023
                times["faiss"].append(t)
                same.append(set(got[0]) == set((lo + found[0]).tolist()))
                if round_ % args.brute_every == 0:
                    t, best = _timed(lambda: brute_force(context))  # noqa: B023
                    times["brute force"].append(t)
                    same.append(set(got[0]) == set(best.tolist()))

            batch_times: dict[str, list[float]] = {"served": [], "in-process": [], "faiss": []}
            for _ in range(args.batch_rounds):
                contexts = [_context(rng) for _ in range(args.batch)]
                batch_times["served"].append(_timed(lambda: served(contexts))[0])  # noqa: B023
                batch_times["in-process"].append(_timed(lambda: in_process(contexts))[0])  # noqa: B023
                batch_times["faiss"].append(_timed(lambda: index.search(user_vectors(contexts), TOP))[0])  # noqa: B023

    n = args.candidates
    print(f"top-{TOP} of {n:,} candidates, {args.factors} factors; server: 1 worker; faiss {faiss.__version__} "
          f"({faiss.omp_get_max_threads()} threads); top-10 sets equal to faiss's and brute force's: "
          f"{np.mean(same):.3f}")
    print("\n| single request | p50 / p99 ms | p50 / served p50 |")
    print("| --- | ---: | ---: |")
    served_p50 = statistics.median(times["served"])
    for name in ("served", "in-process", "faiss", "brute force"):
        print(f"| {name} | {_ms(times[name])} | {statistics.median(times[name]) / served_p50:.2f} |")
    rate = {name: args.batch * n / statistics.median(t) for name, t in batch_times.items()}
    rate["brute force"] = n / statistics.median(times["brute force"])
    print(f"\n| batched ({args.batch} users a request) | candidate rows/s | ours / faiss |")
    print("| --- | ---: | ---: |")
    for name, value in rate.items():
        print(f"| {name} | {value:,.0f} | {value / rate['faiss']:.2f} |")


if __name__ == "__main__":
    main()
