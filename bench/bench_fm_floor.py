"""The memory floors of an FM training epoch, timed between our own epochs: what an epoch has to touch, with no
maths and no updates, in two layouts: a fresh permutation of every row with the users' feature ids (the
"permuted floor") and the layout our fit trains in (features renumbered by frequency, ``algorithm.feature_layout``,
and the row order of its ``shuffle``: the "layout floor").

    .venv/bin/python -m bench.bench_fm_floor --dataset ratings --k 8 --threads 1
    .venv/bin/python -m bench.bench_fm_floor --dataset ctr --k 8 32 --threads 1 2 --shuffle runs

For each (k, threads) it fits our FM (Adam, the built-in's optimizer, unless ``--optimizer``; ``--shuffle``,
default full) in a fresh subprocess, and after every epoch (``on_epoch``, same process, same threads) times on
the same data: ``shuffle`` (a per-epoch permutation of an int32 row order), ``rows`` (each row's offsets,
nonzeros and label read and its score written, in that order, prefetched like our kernel), ``rows+table``
(``rows`` plus the read of each nonzero's [w, V] from a table with our training row stride, in the users' ids)
and ``rows+table r/w`` (plus one read-modify-write of each touched table row per mini-batch, as the lazy update
does): ``permuted floor`` = shuffle + rows+table r/w. Then ``layout order`` (the fit's own order of the epoch)
and ``layout r/w`` (rows+table r/w in that order with the renumbered ids): ``layout floor`` = their sum.
Prints the medians, ours over each floor and the cell's goal (``bench_fm.EPOCH_GOALS``), and ``renumbering``:
what a fresh fit does once for the layout (count, order, renumber the ids, move [w, V] into it; the way back is
part of the split of the table that every fit ends with).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from typing import Any

import numpy as np
from numba import njit, prange

from algorithm._fm_kernels import LINE_FLOATS, PREFETCH_PARAMS, PREFETCH_ROWS, _prefetch
from bench.bench_fm import EPOCH_GOALS, _launch


@njit(cache=True, parallel=True)
def touch_rows(data, indices, indptr, y, order, scores, flat, stride, width, write, batch_size, marks):
    """Read every row of ``order`` (offsets, nonzeros, label) and write its score, one chunk of the order per
    thread, prefetching as ``_fm_kernels`` does; with ``width`` > 0 also read each nonzero's first ``width``
    floats of table row ``flat[i * stride:]``, and with ``write`` add to all ``stride`` floats of it (the
    optimizer's read-modify-write) once per mini-batch of ``batch_size`` rows, at the feature's first use in
    it (``marks[t]`` records feature -> last batch, as our slot map does). Returns a checksum so nothing is
    optimized away."""
    n = order.size
    n_chunks = marks.shape[0]
    total = 0.0
    for t in prange(n_chunks):
        mark = marks[t]
        r0, r1 = t * n // n_chunks, (t + 1) * n // n_chunks
        acc = 0.0
        for r in range(r0, r1):
            if r + 2 * PREFETCH_ROWS < r1:
                _prefetch(indptr, order[r + 2 * PREFETCH_ROWS])
            if r + PREFETCH_ROWS < r1:
                ahead = order[r + PREFETCH_ROWS]
                for p in range(indptr[ahead], indptr[ahead + 1], LINE_FLOATS // 2):
                    _prefetch(indices, p)
                for p in range(indptr[ahead], indptr[ahead + 1], LINE_FLOATS):
                    _prefetch(data, p)
                _prefetch(y, ahead)
                _prefetch(scores, ahead)
            if width > 0 and r + PREFETCH_PARAMS < r1:
                ahead = order[r + PREFETCH_PARAMS]
                last = (stride if write else width) - 1
                for p in range(indptr[ahead], indptr[ahead + 1]):
                    base = indices[p] * stride
                    for c in range(0, last, LINE_FLOATS):
                        _prefetch(flat, base + c)
                    _prefetch(flat, base + last)
                    if write:
                        _prefetch(mark, indices[p])
            row = order[r]
            s = np.float32(y[row])
            for p in range(indptr[row], indptr[row + 1]):
                x = data[p]
                if width > 0:
                    base = indices[p] * stride
                    for c in range(width):
                        s += flat[base + c] * x
                    if write and mark[indices[p]] != r // batch_size:
                        mark[indices[p]] = r // batch_size
                        for c in range(stride):
                            flat[base + c] += x
                else:
                    s += x
            scores[row] = s
            acc += s
        total += acc
    return total


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Fit ours on the set and time the floors after each epoch; returns the per-epoch seconds."""
    from algorithm import _fm_kernels as kernels
    from algorithm.feature_layout import FeatureLayout
    from algorithm.fm import FactorizationMachines
    from bench import fm_data

    data = fm_data.load(spec["dataset"], seed=spec["seed"])
    train = data.train
    k, threads = spec["k"], spec["threads"]
    stride = (1 + k) * (1 + kernels.STATE_ARRAYS[spec["optimizer"]])
    table = np.zeros(train.n_cols * stride, np.float32)
    compiled = min(train.n_cols, 2**15 + 1)  # the layout's kernels for the width of these ids, outside the timing
    warm = FeatureLayout.from_order(np.arange(compiled))
    warm.to_training(np.zeros((compiled, stride), np.float32), 1 + k)
    warm.renumbered(train.indices[:8])
    t0 = time.perf_counter()  # what a fresh fit adds once: count, order, renumber, move [w, V] into the layout
    layout = FeatureLayout.by_frequency(train.indices, train.n_cols)
    renumbered = layout.renumbered(train.indices)
    layout.to_training(table.reshape(train.n_cols, stride), 1 + k)
    renumbering = time.perf_counter() - t0
    marks = np.full((threads, train.n_cols), -1, np.int32)
    order = np.arange(train.n_rows, dtype=np.int32)
    scores = np.zeros(train.n_rows, np.float32)
    rng = np.random.default_rng(spec["seed"])
    times: dict[str, list[float]] = {"ours": [], "shuffle": [], "rows": [], "rows+table": [], "rows+table r/w": [],
                                     "layout order": [], "layout r/w": []}
    model = FactorizationMachines(feature_dim=train.n_cols, num_factors=k, predictor_type=data.task,
                                  epochs=spec["epochs"], mini_batch_size=spec["mini_batch_size"],
                                  optimizer=spec["optimizer"], num_threads=threads, seed=spec["seed"],
                                  shuffle=spec["shuffle"])
    block_rows = model._block_rows(train)
    epochs = iter(range(10**9))

    def floors() -> None:
        t0 = time.perf_counter()
        rng.shuffle(order)
        times["shuffle"].append(time.perf_counter() - t0)
        for name, width, write in (("rows", 0, False), ("rows+table", 1 + k, False),
                                   ("rows+table r/w", 1 + k, True)):
            t0 = time.perf_counter()
            marks[:] = -1
            touch_rows(train.data, train.indices, train.indptr, train.labels, order, scores, table, stride,
                       width, write, spec["mini_batch_size"], marks)
            times[name].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        model._shuffle(order, next(epochs), block_rows)
        times["layout order"].append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        marks[:] = -1
        touch_rows(train.data, renumbered, train.indptr, train.labels, order, scores, table, stride, 1 + k, True,
                   spec["mini_batch_size"], marks)
        times["layout r/w"].append(time.perf_counter() - t0)

    def on_epoch(epoch: int, train_metrics: dict[str, float], test: Any, seconds: float) -> None:
        times["ours"].append(seconds)
        floors()

    floors()  # compiles the floor kernel (or loads its cache) outside the timed epochs
    for values in times.values():
        values.clear()
    model.fit(train, train.labels, on_epoch=on_epoch)
    return {**spec, "times": times, "renumbering": renumbering, "load_avg_1min": os.getloadavg()[0]}


def summarize(result: dict[str, Any]) -> str:
    """One table row: medians over the epochs after the first."""
    med = {name: statistics.median(values[1:] or values) for name, values in result["times"].items()}
    floor = med["shuffle"] + med["rows+table r/w"]
    layout = med["layout order"] + med["layout r/w"]
    goal = EPOCH_GOALS.get((result["dataset"], result["k"], result["threads"]))
    goal_text = "-" if goal is None else f"{goal:.2f} ({'above' if goal >= layout else 'BELOW'} the layout floor)"
    return (f"| {result['dataset']} | {result['k']} | {result['threads']} | {result['shuffle']} | "
            f"{med['shuffle']:.4f} | {med['rows']:.4f} | {med['rows+table']:.4f} | {med['rows+table r/w']:.4f} | "
            f"{floor:.4f} | {med['layout order']:.4f} | {med['layout r/w']:.4f} | {layout:.4f} | "
            f"{result['renumbering']:.3f} | "
            f"{med['ours']:.4f} | {med['ours'] / floor:.2f} | {med['ours'] / layout:.2f} | {goal_text} | "
            f"{result['load_avg_1min']:.1f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=("ctr", "ratings"), default="ratings")
    p.add_argument("--k", type=int, nargs="+", default=[8])
    p.add_argument("--threads", type=int, nargs="+", default=[1])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--optimizer", default="adam")
    p.add_argument("--mini-batch-size", type=int, default=1000)
    p.add_argument("--shuffle", choices=("full", "blocks", "runs"), default="full",
                   help="our fit's row order, and the layout floor's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=1800.0, help="seconds per (k, threads) run")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        with open(args.result, "w") as fh:
            json.dump(worker(json.loads(args.worker)), fh)
        return
    print("| set | k | threads | order | shuffle s | rows s | rows+table s | rows+table r/w s | permuted floor s "
          "| layout order s | layout r/w s | layout floor s | renumbering s (once) | ours s | ours / permuted floor "
          "| ours / layout floor | goal s | load |")
    print("|" + " --- |" * 18)
    for k in args.k:
        for threads in args.threads:
            spec = {"dataset": args.dataset, "k": k, "threads": threads, "epochs": args.epochs,
                    "optimizer": args.optimizer, "seed": args.seed, "mini_batch_size": args.mini_batch_size,
                    "shuffle": args.shuffle}
            result = _launch(spec, args.timeout, module="bench.bench_fm_floor")
            if "error" in result:
                raise SystemExit(f"k={k} threads={threads}: {result['error']}")
            print(summarize(result), flush=True)


if __name__ == "__main__":
    main()
