"""What the training layout buys: our epoch kernel on the same rows with the users' feature ids or the ids
renumbered by frequency (``algorithm.feature_layout``), in a full permutation of the rows or in the shuffled
runs of ``shuffle=runs``, interleaved in one process; and what the renumbering costs once.

    .venv/bin/python -m bench.bench_fm_layout --dataset ctr --k 8 --optimizer adam --repeat 8
    .venv/bin/python -m bench.bench_fm_layout --dataset ctr --k 8 --optimizer adagrad --adagrad-state element row

``--adagrad-state element row``: each layout with AdaGrad's second moment per factor and per row (its own table of
that width), interleaved too.

Every variant trains its own copy of one table (the same initial values, permuted for the renumbered ids) with
the kernel ``fit`` runs (serial for one thread, Hogwild for more); each round runs every variant once, with the
order drawn for that round. One thread is timed in CPU seconds (less disturbed by other work on the machine),
more in wall seconds. Prints the median epoch and order time per variant over the rounds after the first (which
compiles) and their ratio to the users' ids in a full permutation (today's layout before renumbering).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

import numba
import numpy as np

from algorithm import _fm_kernels as kernels
from algorithm.feature_layout import FeatureLayout
from algorithm.fm import FactorizationMachines, _training_buffers
from algorithm.row_blocks import RUN_ROWS, rows_order
from bench import fm_data


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", choices=("ctr", "ratings"), default="ctr")
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--optimizer", default="adam", choices=tuple(kernels.STATE_NAMES))
    p.add_argument("--adagrad-state", nargs="+", choices=kernels.ADAGRAD_STATES, default=["element"])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeat", type=int, default=8, help="rounds (the first is left out)")
    p.add_argument("--mini-batch-size", type=int, default=1000)
    args = p.parse_args()
    numba.set_num_threads(args.threads)
    data = fm_data.load(args.dataset)
    train, k, batch = data.train, args.k, args.mini_batch_size
    assert train.labels is not None
    d, n = train.n_cols, train.n_rows

    t0 = time.perf_counter()
    layout = FeatureLayout.by_frequency(train.indices, d)
    renumbered = layout.renumbered(train.indices)
    counted = time.perf_counter() - t0
    states = {state: kernels.state_layout(args.optimizer, k, state) for state in args.adagrad_state}
    factors = np.random.default_rng(0).standard_normal((d, k), dtype=np.float32) * np.float32(0.01)
    initial = np.zeros((d, states[args.adagrad_state[0]].width(k)), np.float32)
    initial[:, 1:1 + k] = factors
    moved = initial.copy()
    layout.to_training(moved, 1 + k)  # compiles
    moved[:] = initial
    t0 = time.perf_counter()
    layout.to_training(moved, 1 + k)
    there = time.perf_counter() - t0
    back = []
    for rows in (None, layout.order, None, layout.order):  # the table's split at a fit's end, plain and permuting
        spare = moved.copy()
        t0 = time.perf_counter()
        first = states[args.adagrad_state[0]]
        kernels.split_in_place(spare, k, first.n_state, rows=rows, factor_width=first.factor_width)
        back.append(time.perf_counter() - t0)
    print(f"renumbering (once per fit): count, order and renumber the ids {counted:.3f} s; move [w, V] into the "
          f"layout {there:.3f} s; split the table at the end {min(back[0::2]):.3f} s in place, "
          f"{min(back[1::2]):.3f} s back into the users' ids", flush=True)

    def full(rng: np.random.Generator) -> np.ndarray:
        order = np.arange(n, dtype=np.int32)
        rng.shuffle(order)
        return order

    def runs(rng: np.random.Generator) -> np.ndarray:
        return rows_order(n, rng, RUN_ROWS).astype(np.int32)

    variants: dict[str, tuple[np.ndarray, np.ndarray, Callable[[np.random.Generator], np.ndarray],
                              kernels.StateLayout]] = {}
    for state, state_layout in states.items():
        start = np.zeros((d, state_layout.width(k)), np.float32)
        start[:, 1:1 + k] = factors
        start_moved = start.copy()
        layout.to_training(start_moved)
        suffix = f", h per {state}" if len(states) > 1 else ""
        variants.update({
            f"users' ids, full{suffix}": (train.indices, start.copy(), full, state_layout),
            f"renumbered, full{suffix}": (renumbered, start_moved.copy(), full, state_layout),
            f"users' ids, runs{suffix}": (train.indices, start, runs, state_layout),
            f"renumbered, runs{suffix}": (renumbered, start_moved, runs, state_layout),
        })
    model = FactorizationMachines(feature_dim=d, num_factors=k, predictor_type=data.task, optimizer=args.optimizer)
    hp = model._hyperparameter_vector()
    loss = kernels.LOGISTIC if data.task == "binary_classifier" else kernels.REGRESSION
    kernel = kernels.train_epoch_serial if args.threads == 1 else kernels.train_epoch_hogwild
    clock = time.process_time if args.threads == 1 else time.perf_counter
    buffers = _training_buffers(args.threads, train, batch, d, k, split_batches=False)
    scores = np.zeros(n, np.float32)
    epochs: dict[str, list[float]] = {name: [] for name in variants}
    orders: dict[str, list[float]] = {name: [] for name in variants}
    for rnd in range(args.repeat):
        for name, (indices, table, draw, state_layout) in variants.items():
            t0 = time.perf_counter()
            order = draw(np.random.default_rng([0, rnd]))
            drawn = time.perf_counter() - t0
            t0 = clock()
            kernel((train.data, indices, train.indptr), train.labels, np.empty(0, np.float32), order, batch,
                   np.zeros(1 + state_layout.n_state, np.float32), table, k, state_layout.code, loss, hp,
                   True, True, rnd * n // batch, buffers, scores)
            if rnd:
                epochs[name].append(clock() - t0)
                orders[name].append(drawn)
    base = statistics.median(epochs[next(iter(variants))])
    print(f"| variant | epoch s | order s | / users' ids, full |  ({args.dataset}, k={k}, {args.optimizer}, "
          f"{args.threads} thread(s), {args.repeat - 1} rounds, load {os.getloadavg()[0]:.1f})")
    print("| --- | --- | --- | --- |")
    for name in variants:
        epoch = statistics.median(epochs[name])
        print(f"| {name} | {epoch:.3f} | {statistics.median(orders[name]):.4f} | {epoch / base:.2f} |")


if __name__ == "__main__":
    main()
