"""A host's share of a FullyReplicated train channel: read block by block against the whole channel read then sliced.

    .venv/bin/python -m bench.bench_share_read                  # CTR set as RecordIO, host 1 of 2, 3 repeats
    .venv/bin/python -m bench.bench_share_read --hosts 4 --repeats 5

Ours: ``container.channel_stream.read_every_nth`` (every N-th row kept as the 64 MB blocks are decoded); the
anchor: ``container.channels.read_channel`` (the whole channel decoded) and every N-th row taken, as multi-host FM
read its share before. Interleaved, medians: seconds and the peak of Python-tracked allocations (tracemalloc: numpy
arrays included) while reading; the shares are checked equal.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

from algorithm.csr import CSR
from container.channel_stream import read_every_nth
from container.channels import read_channel
from container.config import ChannelConfig
from container.paths import SageMakerPaths


def _measured(read: Callable[[], CSR]) -> tuple[float, float, CSR]:
    tracemalloc.start()
    started = time.perf_counter()
    rows = read()
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return seconds, peak / 2**20, rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    from bench import fm_data
    from container.formats.recordio import write_spmatrix_to_sparse_tensor

    data = fm_data.load("ctr")
    with tempfile.TemporaryDirectory(prefix="bench-share-") as tmp:
        paths = SageMakerPaths(Path(tmp))
        paths.channel_dir("train").mkdir(parents=True)
        with open(paths.channel_dir("train") / "part.rec", "wb") as out:
            write_spmatrix_to_sparse_tensor(out, data.train.to_scipy(), data.train.labels)
        config = ChannelConfig("train", "application/x-recordio-protobuf")
        size = (paths.channel_dir("train") / "part.rec").stat().st_size / 2**20
        runs: dict[str, list[tuple[float, float]]] = {"whole read, then sliced": [], "block by block": []}
        for _ in range(args.repeats):
            seconds, peak, whole = _measured(lambda: read_channel(paths, config, feature_dim=data.feature_dim))
            sliced = whole.to_scipy()[1::args.hosts]
            del whole
            runs["whole read, then sliced"].append((seconds, peak))
            seconds, peak, share = _measured(lambda: read_every_nth(paths, config, feature_dim=data.feature_dim,
                                                                    first=1, step=args.hosts))
            runs["block by block"].append((seconds, peak))
            assert share.n_rows == sliced.shape[0] and (share.to_scipy() != sliced).nnz == 0
    print(f"CTR train set: {data.train.n_rows} rows, {size:.0f} MiB of RecordIO; host 2 of {args.hosts}'s share, "
          f"medians of {args.repeats}")
    medians = {name: tuple(statistics.median(r[i] for r in results) for i in (0, 1))
               for name, results in runs.items()}
    for name, (seconds, peak) in medians.items():
        print(f"{name:24s} {seconds:6.2f} s  peak {peak:7.0f} MiB")
    (anchor_s, anchor_mib), (ours_s, ours_mib) = medians.values()
    print(f"block by block: {anchor_s / ours_s:.2f}x the speed, {ours_mib / anchor_mib:.2f}x the peak memory")
    return 0


if __name__ == "__main__":
    sys.exit(main())
