"""What the training layout buys: our epoch kernel on the same rows with the users' feature ids or the ids
renumbered by frequency (``algorithm.feature_layout``), in a full permutation of the rows or in the shuffled
runs of ``shuffle=runs``, interleaved in one process; and what the renumbering costs once.

    .venv/bin/python -m bench.bench_fm_layout --dataset ctr --k 8 --optimizer adam --repeat 8

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
    n_state = kernels.STATE_ARRAYS[args.optimizer]
    initial = np.zeros((d, (1 + k) * (1 + n_state)), np.float32)
    initial[:, 1:1 + k] = np.random.default_rng(0).standard_normal((d, k), dtype=np.float32) * np.float32(0.01)
    moved = initial.copy()
    layout.to_training(moved)  # compiles
    moved[:] = initial
    t0 = time.perf_counter()
    layout.to_training(moved)
    layout.to_users(moved)
    permuted = time.perf_counter() - t0
    layout.to_training(moved)
    print(f"renumbering (once per fit): count, order and renumber the ids {counted:.3f} s; permute the table there "
          f"and back {permuted:.3f} s", flush=True)

    def full(rng: np.random.Generator) -> np.ndarray:
        order = np.arange(n, dtype=np.int32)
        rng.shuffle(order)
        return order

    def runs(rng: np.random.Generator) -> np.ndarray:
        return rows_order(n, rng, RUN_ROWS).astype(np.int32)

    variants: dict[str, tuple[np.ndarray, np.ndarray, Callable[[np.random.Generator], np.ndarray]]] = {
        "users' ids, full": (train.indices, initial.copy(), full),
        "renumbered, full": (renumbered, moved.copy(), full),
        "users' ids, runs": (train.indices, initial.copy(), runs),
        "renumbered, runs": (renumbered, moved, runs),
    }
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
        for name, (indices, table, draw) in variants.items():
            t0 = time.perf_counter()
            order = draw(np.random.default_rng([0, rnd]))
            drawn = time.perf_counter() - t0
            t0 = clock()
            kernel((train.data, indices, train.indptr), train.labels, np.empty(0, np.float32), order, batch,
                   np.zeros(1 + n_state, np.float32), table, k, kernels.OPTIMIZER_CODES[args.optimizer], loss, hp,
                   True, True, rnd * n // batch, buffers, scores)
            if rnd:
                epochs[name].append(clock() - t0)
                orders[name].append(drawn)
    base = statistics.median(epochs["users' ids, full"])
    print(f"| variant | epoch s | order s | / users' ids, full |  ({args.dataset}, k={k}, {args.optimizer}, "
          f"{args.threads} thread(s), {args.repeat - 1} rounds, load {os.getloadavg()[0]:.1f})")
    print("| --- | --- | --- | --- |")
    for name in variants:
        epoch = statistics.median(epochs[name])
        print(f"| {name} | {epoch:.3f} | {statistics.median(orders[name]):.4f} | {epoch / base:.2f} |")


if __name__ == "__main__":
    main()
