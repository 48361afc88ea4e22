"""gzip channel files: our bounded, chunked inflation (``container.bounded_gzip.gunzip``, the limit checked
after every chunk) vs ``gzip.decompress`` (the whole body at once, unbounded: what channels did before).

    .venv/bin/python -m bench.bench_gunzip --megabytes 64 --repeat 5

Data: ``--megabytes`` MB of libsvm-like text (random indices and values), gzip level 6. Runs are interleaved
and medians reported; the ratio is our time / the anchor's (< 1.1: the bound costs under 10 %). Also reported:
the peak memory of each (``tracemalloc``), since the chunks and the joined body exist side by side.
"""

from __future__ import annotations

import argparse
import gzip
import io
import statistics
import time
import tracemalloc
from collections.abc import Callable

import numpy as np

from container.bounded_gzip import gunzip


def make_body(megabytes: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    lines = []
    size = 0
    while size < megabytes << 20:
        keys = np.sort(rng.choice(100_000, 20, replace=False))
        line = f"{rng.integers(0, 2)} " + " ".join(f"{k}:{v:.4f}" for k, v in zip(keys, rng.random(20), strict=True))
        lines.append(line)
        size += len(line) + 1
    return gzip.compress(("\n".join(lines) + "\n").encode(), compresslevel=6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    body = make_body(args.megabytes, args.seed)
    readers: dict[str, Callable[[], bytes]] = {
        "bounded_gzip.gunzip": lambda: gunzip(io.BytesIO(body), "bench.gz", limit=1 << 40),
        "gzip.decompress (anchor)": lambda: gzip.decompress(body),
    }
    expected = gzip.decompress(body)
    times: dict[str, list[float]] = {name: [] for name in readers}
    for _ in range(args.repeat):
        for name, read in readers.items():
            started = time.perf_counter()
            out = read()
            times[name].append(time.perf_counter() - started)
            assert out == expected
    peaks = {}
    for name, read in readers.items():
        tracemalloc.start()
        read()
        peaks[name] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    print(f"{len(body) / 1e6:.1f} MB gzip -> {len(expected) / 1e6:.1f} MB text, median of {args.repeat}")
    anchor = statistics.median(times["gzip.decompress (anchor)"])
    for name in readers:
        median = statistics.median(times[name])
        print(f"{name:28s} {median:7.3f} s  {len(expected) / median / 1e6:7.1f} MB/s  ratio {median / anchor:5.2f}  "
              f"peak {peaks[name] / 1e6:7.1f} MB")


if __name__ == "__main__":
    main()
