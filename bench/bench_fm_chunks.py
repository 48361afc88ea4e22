"""FM epochs in bounded kernel calls (at most ``algorithm.fm.CHUNK_ROWS`` rows and about ``CHUNK_SECONDS`` each,
so a stop request is seen between them; ``--chunk-seconds`` and ``--chunk-rows`` try other bounds) against the
anchor, one kernel call per epoch; and the time a checkpoint of the model takes to write.

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
from collections.abc import Callable
from pathlib import Path

from algorithm import fm as fm_module
from algorithm.checkpoint import Checkpoints
from algorithm.fm import FactorizationMachines
from bench import fm_data

RATIO_GOAL = 1.03
CHUNKED = fm_module._chunk_rows


def _whole_epoch(batch_size: int, rows_per_second: float = 0.0) -> int:
    """The anchor's chunk: every row of the epoch in one kernel call."""
    return 1 << 62


def _epoch_seconds(model: FactorizationMachines, data: fm_data.BenchData, chunking: Callable[..., int]) -> float:
    fm_module._chunk_rows = chunking
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
    parser.add_argument("--chunk-seconds", type=float, default=fm_module.CHUNK_SECONDS,
                        help="the fit's target seconds per kernel call (default: algorithm.fm.CHUNK_SECONDS)")
    parser.add_argument("--chunk-rows", type=int, default=fm_module.CHUNK_ROWS,
                        help="the fit's most rows per kernel call (default: algorithm.fm.CHUNK_ROWS)")
    args = parser.parse_args()
    fm_module.CHUNK_SECONDS, fm_module.CHUNK_ROWS = args.chunk_seconds, args.chunk_rows
    data = fm_data.load("ctr", data_dir=args.data_dir, rows=args.rows)
    for deterministic in (False, True):
        model = FactorizationMachines(feature_dim=data.feature_dim, num_factors=args.k, epochs=1,
                                      predictor_type="binary_classifier", num_threads=args.threads,
                                      deterministic=deterministic)
        model.fit(data.train.head(256), data.train.labels[:256])  # compile (or load the cache)
        times: dict[Callable[..., int], list[float]] = {CHUNKED: [], _whole_epoch: []}
        for _ in range(args.repeats):
            for chunking in times:
                times[chunking].append(_epoch_seconds(model, data, chunking))
        fm_module._chunk_rows = CHUNKED
        ours, anchor = statistics.median(times[CHUNKED]), statistics.median(times[_whole_epoch])
        ratio = ours / anchor
        print(f"deterministic={deterministic} threads={args.threads} k={args.k} rows={data.train.n_rows} chunks of "
              f"<= {args.chunk_rows} rows, ~{args.chunk_seconds:g} s: "
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
