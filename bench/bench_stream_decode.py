"""Streaming decode of a training channel (``container.channel_stream``, blocks of bounded size read from the
file as it goes) against today's whole-body path (``container.channels.read_channel``: the file read into memory,
decoded in one call), on the same file in the page cache, and in Pipe mode (the file written into a FIFO by a
``cat`` process, one FIFO per run as the platform does per epoch), runs interleaved, medians reported; then each
path's
peak memory: a fresh process per path decodes the file once, and ``used MiB`` is its peak RSS (VmHWM, reset
after imports and kernel warm-up) above its RSS before decoding.

    .venv/bin/python -m bench.bench_stream_decode --rows 1000000 --repeat 3
"""

from __future__ import annotations

import argparse
import gzip
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from container.channel_stream import iter_channel_blocks
from container.channels import read_channel
from container.config import ChannelConfig
from container.formats import chunking, recordio, registry
from container.paths import SageMakerPaths

FORMATS = ("recordio", "recordio.gz", "csv", "libsvm")


def make_rows(rows: int, nnz: int, n_cols: int, seed: int) -> tuple[sp.csr_matrix, np.ndarray]:
    """~nnz sorted random columns per row with short decimal values, and 0/1 labels."""
    rng = np.random.default_rng(seed)
    per_row = rng.integers(nnz // 2, nnz + nnz // 2 + 1, size=rows)
    indptr = np.concatenate([[0], np.cumsum(per_row)])
    columns = rng.integers(0, n_cols, size=int(indptr[-1]))
    row_of = np.repeat(np.arange(rows), per_row)
    columns = columns[np.lexsort((columns, row_of))]
    values = np.round(rng.uniform(0.01, 9.99, len(columns)), 2).astype(np.float32)
    matrix = sp.csr_matrix((values, columns, indptr), shape=(rows, n_cols))
    return matrix, rng.integers(0, 2, size=rows).astype(np.float32)


def encode(fmt: str, matrix: sp.csr_matrix, labels: np.ndarray) -> tuple[str, bytes]:
    """(content type, body) of the rows in ``fmt``; CSV is dense, so it gets the first 40 columns only."""
    if fmt.startswith("recordio"):
        out = io.BytesIO()
        recordio.write_spmatrix_to_sparse_tensor(out, matrix, labels)
        body = out.getvalue()
        return registry.RECORDIO, gzip.compress(body, 1) if fmt.endswith(".gz") else body
    if fmt == "csv":
        dense = matrix[:, :40].toarray()
        lines = [f"{label:g}," + ",".join(f"{v:g}" for v in row) for label, row in zip(labels, dense, strict=True)]
        return registry.CSV, ("\n".join(lines) + "\n").encode()
    lines = [f"{label:g} " + " ".join(f"{c}:{v:g}" for c, v in zip(matrix.indices[s:e], matrix.data[s:e], strict=True))
             for label, s, e in zip(labels, matrix.indptr[:-1], matrix.indptr[1:], strict=True)]
    return registry.LIBSVM, ("\n".join(lines) + "\n").encode()


def timed(run: Callable[[], int], repeat: int) -> tuple[float, int]:
    times, rows = [], 0
    for _ in range(repeat):
        start = time.perf_counter()
        rows = run()
        times.append(time.perf_counter() - start)
    return statistics.median(times), rows


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def used_mib(base: str, channel: str, content_type: str, width: int, block_mib: int) -> float:
    """Peak RSS above the start of decoding, of a fresh process decoding the channel once (block_mib 0: whole)."""
    command = [sys.executable, "-m", "bench.bench_stream_decode", "--worker", base, channel, content_type,
               str(width), str(block_mib)]
    return float(subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()[-1])


def worker(base: str, channel: str, content_type: str, width: int, block_mib: int) -> None:
    recordio.warm_up()
    registry.warm_up()
    chunking.warm_up()
    paths, config = SageMakerPaths(Path(base)), ChannelConfig(channel, content_type=content_type)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _status_kib("VmRSS")
    if block_mib:
        for _ in iter_channel_blocks(paths, config, feature_dim=width, block_bytes=block_mib << 20):
            pass
    else:
        read_channel(paths, config, feature_dim=width)
    print(f"{(_status_kib('VmHWM') - before) / 1024:.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--nnz", type=int, default=39, help="mean nonzeros per row (libsvm, RecordIO)")
    parser.add_argument("--cols", type=int, default=1_000_000)
    parser.add_argument("--formats", nargs="+", choices=FORMATS, default=list(FORMATS))
    parser.add_argument("--block-mib", type=int, nargs="+", default=[64, 8])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", nargs=5, metavar=("BASE", "CHANNEL", "TYPE", "WIDTH", "BLOCK_MIB"),
                        help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        base, channel, content_type, width, block_mib = args.worker
        worker(base, channel, content_type, int(width), int(block_mib))
        return

    recordio.warm_up()
    registry.warm_up()
    chunking.warm_up()
    matrix, labels = make_rows(args.rows, args.nnz, args.cols, args.seed)
    dim = args.cols
    print(f"{args.rows:,} rows; streaming blocks of {', '.join(f'{b} MiB' for b in args.block_mib)}; "
          f"median of {args.repeat}, runs interleaved")
    print(f"{'format':<12} {'MiB':>6} {'path':<16} {'median s':>9} {'rows/s':>12} {'whole/stream':>13} "
          f"{'used MiB':>9}")
    with tempfile.TemporaryDirectory() as tmp:
        paths = SageMakerPaths(Path(tmp))
        fifos = iter(range(1 << 30))  # a new FIFO per Pipe-mode run, as per epoch
        for fmt in args.formats:
            content_type, body = encode(fmt, matrix, labels)
            directory = paths.channel_dir(fmt.replace(".", "-"))
            directory.mkdir(parents=True)
            (directory / "part-0").write_bytes(body)
            config = ChannelConfig(directory.name, content_type=content_type)
            width = 40 if fmt == "csv" else dim

            def whole(config: ChannelConfig = config, width: int = width) -> int:
                return read_channel(paths, config, feature_dim=width).n_rows

            def streamed(block_mib: int, config: ChannelConfig = config, width: int = width) -> int:
                blocks = iter_channel_blocks(paths, config, feature_dim=width, block_bytes=block_mib << 20)
                return sum(block.n_rows for _, block in blocks)

            def piped(block_mib: int, content_type: str = content_type, width: int = width,
                      file: Path = directory / "part-0") -> int:
                epoch = next(fifos)
                fifo = paths.pipe_path("pipe", epoch)
                os.mkfifo(fifo)
                writer = subprocess.Popen(["sh", "-c", 'cat "$1" > "$2"', "sh", str(file), fifo])
                config = ChannelConfig("pipe", content_type=content_type, input_mode="Pipe")
                blocks = iter_channel_blocks(paths, config, feature_dim=width, epoch=epoch, block_bytes=block_mib << 20)
                rows = sum(block.n_rows for _, block in blocks)
                writer.wait()
                fifo.unlink()
                return rows

            runs: dict[str, Callable[[], int]] = {"whole body": whole}
            blocks: dict[str, int | None] = {"whole body": 0}
            for block_mib in args.block_mib:
                runs[f"stream {block_mib} MiB"] = lambda b=block_mib: streamed(b)
                blocks[f"stream {block_mib} MiB"] = block_mib
            runs[f"pipe {args.block_mib[-1]} MiB"] = lambda: piped(args.block_mib[-1])
            blocks[f"pipe {args.block_mib[-1]} MiB"] = None  # the same blocks as streaming the file
            times: dict[str, list[float]] = {name: [] for name in runs}
            for _ in range(args.repeat):
                for name, run in runs.items():
                    seconds, rows = timed(run, 1)
                    assert rows == args.rows, (name, rows)
                    times[name].append(seconds)
            anchor = statistics.median(times["whole body"])
            for name in runs:
                median = statistics.median(times[name])
                block = blocks[name]
                used = "-" if block is None else f"{used_mib(tmp, config.name, content_type, width, block):.0f}"
                print(f"{fmt:<12} {len(body) / 2**20:>6.0f} {name:<16} {median:>9.3f} {args.rows / median:>12,.0f} "
                      f"{anchor / median:>12.2f}x {used:>9}")


if __name__ == "__main__":
    main()
