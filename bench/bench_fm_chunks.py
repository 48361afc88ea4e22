"""FM epochs in bounded kernel calls (at most ``algorithm.fm.CHUNK_ROWS`` rows and about ``CHUNK_SECONDS`` each,
so a stop request is seen between them) against the anchor, one kernel call per epoch; and the time a
checkpoint of the model takes to write.

    .venv/bin/python -m bench.bench_fm_chunks --threads 2 --k 8 --repeats 5
    .venv/bin/python -m bench.bench_fm_chunks --data-dir /path/to/bench/data   # a cache made elsewhere

Epochs of the two variants alternate (interleaved), after one warm-up fit that compiles the kernels; prints the
median epoch seconds of each, their ratio (chunked / whole, goal <= 1.03) and the seconds of one checkpoint save
of the fitted state (with a kernel call, what a SIGTERM waits for).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from algorithm import fm as fm_module
from algorithm.checkpoint import Checkpoints
from algorithm.fm import FactorizationMachines
from bench import fm_data

WHOLE_EPOCH = 1 << 62
RATIO_GOAL = 1.03


def _epoch_seconds(model: FactorizationMachines, data: fm_data.BenchData, chunk_rows: int) -> float:
    fm_module.CHUNK_ROWS = chunk_rows
    seconds: list[float] = []
    model.fit(data.train, data.train.labels, on_epoch=lambda _e, _tr, _te, s: seconds.append(s))
    return seconds[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=None, help="training rows (default: all 900,000)")
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--data-dir", type=Path, default=None)
    args = parser.parse_args()
    data = fm_data.load("ctr", data_dir=args.data_dir, rows=args.rows)
    chunked = fm_module.CHUNK_ROWS
    for deterministic in (False, True):
        model = FactorizationMachines(feature_dim=data.feature_dim, num_factors=args.k, epochs=1,
                                      predictor_type="binary_classifier", num_threads=args.threads,
                                      deterministic=deterministic)
        model.fit(data.train.head(256), data.train.labels[:256])  # compile (or load the cache)
        times: dict[int, list[float]] = {chunked: [], WHOLE_EPOCH: []}
        for _ in range(args.repeats):
            for rows in times:
                times[rows].append(_epoch_seconds(model, data, rows))
        fm_module.CHUNK_ROWS = chunked
        ours, anchor = statistics.median(times[chunked]), statistics.median(times[WHOLE_EPOCH])
        ratio = ours / anchor
        print(f"deterministic={deterministic} threads={args.threads} k={args.k} rows={data.train.n_rows}: "
              f"chunked {ours:.3f} s/epoch, whole {anchor:.3f} s/epoch: ratio {ratio:.3f} "
              f"{'PASS' if ratio <= RATIO_GOAL else 'MISS'} (goal <= {RATIO_GOAL})")
    with tempfile.TemporaryDirectory() as scratch:
        table = model.V_
        started = time.perf_counter()
        Checkpoints(Path(scratch)).save("fm", {}, {}, {"w0": model.w0_, "w": model.w_, "V": table,
                                                        **(model.optimizer_state_.arrays if model.optimizer_state_
                                                           else {})})
        size = sum(path.stat().st_size for path in Path(scratch).iterdir())
        print(f"checkpoint of the fitted state: {size / 2**20:.1f} MiB written in "
              f"{time.perf_counter() - started:.2f} s (temporary file, fsync, rename)")


if __name__ == "__main__":
    main()
