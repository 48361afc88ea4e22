"""WALS job data on disk (``data_loading=stream``) against in memory (the anchor), interleaved in one invocation.

Data: ``bench.wals_data.implicit_counts`` (100k x 20k, counts) with 1M and 5M entries by default (``--nnz``),
written (``--formats``) as CSV triplets with string ids (``u<row>,i<col>,<count>``) and as RecordIO-protobuf in
the one-hot layout (keys ``[row, 100000 + col]``, label the count; ``num_rows`` and ``num_cols`` set). Each run
is a fresh process that does what the training job does on one of the two paths: the in-memory path
(``wals_data.read_triplets`` -> ``build_matrices`` -> ``WALS.fit`` on the matrix) or the on-disk one
(``wals_ondisk.build`` -> ``OnDiskMatrix.entries`` -> ``WALS.fit`` on the memory-mapped ``Entries``), then fits
``--sweeps`` sweeps (implicit form, alpha 2, k ``--factors``, ``--threads`` threads, kernels compiled before
timing). Reported per run: seconds to read and build (and the build's entries per second), median seconds per
sweep (the fit's ``on_epoch`` seconds) and the ratios stream / memory (the on-disk files are in the page cache,
as on a machine whose memory holds them), the peak anonymous memory (``RssAnon``, sampled every 10 ms by this
process: what the job itself allocates; the mapped files' pages are page cache, which the kernel reclaims under a
memory limit), the part of it above the memory after the kernels' warm-up ("data", and per byte of the file)
and the peak resident set (``VmHWM``, mapped pages included).

    .venv/bin/python -m bench.bench_wals_stream --nnz 1000000 5000000 --formats csv recordio --factors 32 \
        --threads 2 --sweeps 3
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.wals_data import IMPLICIT_COLS, IMPLICIT_ROWS, implicit_counts

MIB = 1 << 20
CONTENT_TYPES = {"csv": "text/csv", "recordio": "application/x-recordio-protobuf"}


def write_csv(path: Path, nnz: int) -> int:
    """The count matrix as CSV triplets with string ids; returns the file's bytes."""
    coo = implicit_counts(nnz=nnz).tocoo()
    with open(path, "w") as handle:
        handle.write("user,item,count\n")
        for start in range(0, coo.nnz, 1 << 20):
            part = slice(start, start + (1 << 20))
            handle.write("".join(f"u{r},i{c},{int(v)}\n" for r, c, v in
                                 zip(coo.row[part].tolist(), coo.col[part].tolist(), coo.data[part].tolist(),
                                     strict=True)))
    return path.stat().st_size


def write_recordio(path: Path, nnz: int) -> int:
    """The count matrix as RecordIO one-hot records (keys [row, IMPLICIT_ROWS + col], label the count), as the
    SDK writes them; returns the file's bytes."""
    import scipy.sparse as sp

    from container.formats.recordio import write_spmatrix_to_sparse_tensor

    coo = implicit_counts(nnz=nnz).tocoo()
    n = coo.nnz
    one_hot = sp.csr_matrix((np.ones(2 * n, np.float32), np.column_stack([coo.row, IMPLICIT_ROWS + coo.col]).ravel(),
                             np.arange(0, 2 * n + 1, 2)), shape=(n, IMPLICIT_ROWS + IMPLICIT_COLS))
    with open(path, "wb") as handle:
        write_spmatrix_to_sparse_tensor(handle, one_hot, coo.data.astype(np.float32))
    return path.stat().st_size


WRITERS = {"csv": write_csv, "recordio": write_recordio}


def child(base: str, loading: str, fmt: str, factors: int, threads: int, sweeps: int) -> None:
    """One run of one path (in a fresh process); prints its figures as JSON."""
    from algorithm.schemas import JOB_SETTINGS, parse_for_algorithm
    from algorithm.wals import WALS
    from algorithm.warmup import warm_up_wals
    from container import wals_data, wals_ondisk
    from container.config import ChannelConfig
    from container.formats import chunking, recordio, triplets
    from container.paths import SageMakerPaths

    warm_up_wals()
    triplets.warm_up()
    recordio.warm_up()
    chunking.warm_up()
    before = _status_bytes("RssAnon")
    paths = SageMakerPaths(Path(base))
    declared = {"num_rows": str(IMPLICIT_ROWS), "num_cols": str(IMPLICIT_COLS)} if fmt == "recordio" else {}
    _, hp = parse_for_algorithm({"algorithm": "wals", "embedding_dimension": str(factors), "alpha": "2",
                                 "max_sweeps": str(sweeps), "num_threads": str(threads), **declared})
    model = WALS(**{k: v for k, v in hp.items() if k not in (*JOB_SETTINGS, "num_rows", "num_cols")})
    config = ChannelConfig("train", CONTENT_TYPES[fmt])
    seconds: list[float] = []
    started = time.perf_counter()
    if loading == "memory":
        data = wals_data.build_matrices(wals_data.read_triplets(paths, config, hp), None, hp)
        fit_input = data.train
        built = time.perf_counter() - started
        model.fit(fit_input, on_epoch=lambda sweep, train, test, s: seconds.append(s))
    else:
        with wals_ondisk.Scratch(paths.scratch_dir) as scratch:
            matrix = wals_ondisk.build(paths, config, None, hp, scratch).train
            ones = (np.ones(matrix.shape[0], np.float32), np.ones(matrix.shape[1], np.float32))
            entries = matrix.entries(*ones, hp["alpha"])
            built = time.perf_counter() - started
            model.fit(entries, on_epoch=lambda sweep, train, test, s: seconds.append(s))
    print(json.dumps({"built": built, "sweep": statistics.median(seconds), "hwm": _status_bytes("VmHWM"),
                      "before": before}))


def _status_bytes(field: str) -> int:
    found = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(found.group(1)) * 1024 if found else 0


def run(base: Path, loading: str, fmt: str, args: argparse.Namespace) -> dict[str, float]:
    """A child run, its anonymous memory sampled every 10 ms."""
    proc = subprocess.Popen([sys.executable, "-m", "bench.bench_wals_stream", "--child", str(base), loading, fmt,
                             str(args.factors[0]), str(args.threads), str(args.sweeps)], stdout=subprocess.PIPE,
                            text=True)
    peak_anon = 0
    status = Path(f"/proc/{proc.pid}/status")
    while proc.poll() is None:
        try:
            found = re.search(r"RssAnon:\s+(\d+) kB", status.read_text())
        except OSError:
            break
        if found:
            peak_anon = max(peak_anon, int(found.group(1)) * 1024)
        time.sleep(0.01)
    out, _ = proc.communicate()
    if proc.returncode:
        raise SystemExit(f"{loading} run failed")
    return {**json.loads(out.strip().splitlines()[-1]), "anon": peak_anon}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nnz", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--formats", nargs="+", choices=list(WRITERS), default=list(WRITERS))
    parser.add_argument("--factors", type=int, nargs=1, default=[32])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--sweeps", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        base, loading, fmt, factors, threads, sweeps = args.child
        child(base, loading, fmt, int(factors), int(threads), int(sweeps))
        return
    print(f"k={args.factors[0]}, {args.threads} thread(s), {args.sweeps} sweeps, implicit form, 100k x 20k "
          "(CSV: string ids; RecordIO: one-hot, ids declared); best of", args.repeat, "interleaved runs; ratios "
          "stream / memory")
    print(f"{'entries':>10} {'format':<8} {'MiB':>7} | {'path':<6} {'build s':>8} {'M ent/s':>8} {'ratio':>6} "
          f"{'sweep s':>8} {'ratio':>6} {'anon MiB':>9} {'data MiB':>9} {'per byte':>9} {'VmHWM MiB':>10}")
    with tempfile.TemporaryDirectory(prefix="bench-wals-stream-") as directory:
        for nnz in args.nnz:
            for fmt in args.formats:
                base = Path(directory) / f"{nnz}-{fmt}"
                (base / "input/data/train").mkdir(parents=True)
                size = WRITERS[fmt](base / f"input/data/train/counts.{fmt}", nnz)
                results: dict[str, list[dict[str, float]]] = {"memory": [], "stream": []}
                for _ in range(args.repeat):
                    for loading in results:
                        results[loading].append(run(base, loading, fmt, args))
                best = {loading: {key: min(r[key] for r in runs) for key in runs[0]}
                        for loading, runs in results.items()}
                for loading, figures in best.items():
                    data = figures["anon"] - figures["before"]
                    print(f"{nnz:>10} {fmt:<8} {size / MIB:>7.1f} | {loading:<6} {figures['built']:>8.2f} "
                          f"{nnz / figures['built'] / 1e6:>8.2f} {figures['built'] / best['memory']['built']:>6.2f} "
                          f"{figures['sweep']:>8.3f} {figures['sweep'] / best['memory']['sweep']:>6.2f} "
                          f"{figures['anon'] / MIB:>9.0f} {data / MIB:>9.0f} {data / size:>9.2f} "
                          f"{figures['hwm'] / MIB:>10.0f}")


if __name__ == "__main__":
    main()
