"""FM on streamed data: what the block shuffle costs in quality, what an epoch from the on-disk cache costs in
time, and the memory and throughput of streaming jobs.

    .venv/bin/python -m bench.bench_fm_stream --part shuffle     # full shuffle vs block shuffle: AUC/RMSE
    .venv/bin/python -m bench.bench_fm_stream --part cache       # CTR epoch: in memory vs from the cache
    .venv/bin/python -m bench.bench_fm_stream --part jobs        # train jobs: Pipe rows/s, peak RSS vs data

``shuffle``: the CTR and ratings sets trained with shuffle=full (a permutation of every row per epoch) and
with the block order streaming uses (``fit_blocks`` over the rows in stored order, cut into blocks as a
streaming job cuts them for ``--buffer-mb``; ``--orders``: the rows within each block shuffled, ``blocks``, or
in shuffled runs of stored rows, ``runs``), held-out metrics after each epoch; also on the ratings rows sorted
by user (data that arrives clustered). ``cache``: the anchor is the in-memory epoch (``fit``) on the same
rows, threads and settings; the cache is read through the page cache (the second and later epochs).
``jobs``: ``train`` as a subprocess on generated sparse RecordIO (Pipe mode through a FIFO per epoch, and File
mode), its peak RSS against the data's decoded size, beside the built-in's ~105k rows/s per instance.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from algorithm.csr import CSR
from algorithm.fm import BLOCKS_PER_BUFFER, FactorizationMachines
from algorithm.row_blocks import MemoryBlocks, row_range
from bench import fm_data
from bench.fm_anchors import held_out_metrics
from container.block_cache import BlockCache, write_cache
from container.formats.recordio import write_spmatrix_to_sparse_tensor

REPO = Path(__file__).resolve().parent.parent
SAGEMAKER_ROWS_PER_S = 105_000
CACHE_GOAL = 1.3  # epoch from the cache / in-memory epoch


def _model(data: fm_data.BenchData, epochs: int, threads: int, k: int = 8, **params: Any) -> FactorizationMachines:
    return FactorizationMachines(feature_dim=data.feature_dim, num_factors=k, predictor_type=data.task,
                                 epochs=epochs, num_threads=threads, **params)


def _block_rows(rows: CSR, buffer_mb: int) -> int:
    """Rows per block of a streaming job with ``stream_buffer_mb=buffer_mb`` (blocks of a quarter of it)."""
    return max(1, int(buffer_mb * 2**20 / BLOCKS_PER_BUFFER / (rows.nbytes / rows.n_rows)))


def _sorted_by_first_column(rows: CSR) -> CSR:
    """The rows ordered by their first column (the user of a ratings row): data that arrives clustered."""
    order = np.argsort(rows.indices[rows.indptr[:-1]], kind="stable")
    lengths = np.diff(rows.indptr)[order]
    indptr = np.r_[0, np.cumsum(lengths)].astype(np.int64)
    take = np.concatenate([np.arange(rows.indptr[r], rows.indptr[r + 1]) for r in order])
    assert rows.labels is not None
    return CSR(rows.data[take], rows.indices[take], indptr, rows.n_cols, rows.labels[order])


def shuffle_quality(sets: list[str], epochs: int, threads: int, buffers: list[int], seeds: list[int],
                    orders: list[str]) -> list[dict[str, Any]]:
    results = []
    for name in sets:
        data = fm_data.load(name.split("-")[0])
        train = _sorted_by_first_column(data.train) if name.endswith("by-user") else data.train
        test = data.test
        variants = [("full", None, "full")] + [(f"{order} {mb} MB", mb, order) for order in orders for mb in buffers]
        for (label, buffer_mb, order), seed in ((variant, seed) for variant in variants for seed in seeds):
            model = _model(data, 1, threads, deterministic=True, seed=seed, shuffle=order)
            per_epoch: list[dict[str, float]] = []
            for epoch in range(epochs):  # one epoch per fit, warm-started: held-out metrics after each
                if epoch:
                    model.warm_start_from(model)
                if buffer_mb is None:
                    model.fit(train, train.labels)
                else:
                    model.fit_blocks(MemoryBlocks(train, _block_rows(train, buffer_mb)))
                per_epoch.append(held_out_metrics(data.task, test.labels, model.predict_scores(test)))
            n_blocks = 1 if buffer_mb is None else -(-train.n_rows // _block_rows(train, buffer_mb))
            results.append({"set": name, "order": label, "seed": seed, "blocks": n_blocks, "per_epoch": per_epoch})
            metric = "auc" if data.task == "binary_classifier" else "rmse"
            print(f"{name:16} {label:14} seed={seed} blocks={n_blocks:4d} " + " ".join(
                f"{m[metric]:.4f}" for m in per_epoch), flush=True)
    return results


def _later_epochs(fit: Any) -> list[float]:
    """The training seconds of every epoch but the first of ``fit(on_epoch)``."""
    seconds: list[float] = []
    fit(lambda epoch, train, test, s: seconds.append(s))
    return seconds[1:]


def cache_speed(epochs: int, threads: int, buffer_mb: int, repeat: int) -> dict[str, Any]:
    data = fm_data.load("ctr")
    train = data.train
    memory_seconds: list[float] = []
    cache_seconds: list[float] = []
    with tempfile.TemporaryDirectory(dir=REPO / "bench") as tmp:
        list(write_cache(Path(tmp) / "ctr", train.n_cols, MemoryBlocks(train, _block_rows(train, buffer_mb))
                         .blocks(None)))
        cache = BlockCache(Path(tmp) / "ctr")
        _model(data, 1, threads).fit(row_range(train, 0, 2000), train.labels[:2000])  # compile first
        for _ in range(repeat):  # interleaved: anchor, then ours
            memory_seconds += _later_epochs(lambda on_epoch: _model(data, epochs, threads).fit(
                train, train.labels, on_epoch=on_epoch))
            cache_seconds += _later_epochs(lambda on_epoch: _model(data, epochs, threads).fit_blocks(
                cache, on_epoch=on_epoch))  # later epochs: the first one reads the files into the page cache
    memory, from_cache = statistics.median(memory_seconds), statistics.median(cache_seconds)
    ratio = from_cache / memory
    result = {"rows": train.n_rows, "threads": threads, "buffer_mb": buffer_mb, "blocks": cache.n_blocks,
              "memory_epoch_s": memory, "cache_epoch_s": from_cache, "ratio": ratio,
              "memory_rows_per_s": train.n_rows / memory, "cache_rows_per_s": train.n_rows / from_cache}
    verdict = "PASS" if ratio <= CACHE_GOAL else "MISS"
    print(f"CTR epoch, {threads} thread(s): in memory {memory:.3f} s, from the cache {from_cache:.3f} s "
          f"({cache.n_blocks} blocks): {ratio:.2f}x (goal <= {CACHE_GOAL}x: {verdict}); "
          f"{train.n_rows / from_cache:,.0f} rows/s (built-in ~{SAGEMAKER_ROWS_PER_S:,})", flush=True)
    return result


JOB_FIELDS, JOB_VALUES = 20, 2_000
JOB_ROW_BYTES = JOB_FIELDS * 12 + 8 + 4  # decoded: float32 value + int64 index per nonzero, indptr, label
JOB_FILE_ROWS = 200_000


def _job_data(directory: Path, decoded_bytes: int) -> int:
    """RecordIO files of one-hot rows (labels from a hidden linear model) decoding to ``decoded_bytes``; the
    row count."""
    rng = np.random.default_rng(0)
    weights = rng.normal(0, 0.4, JOB_FIELDS * JOB_VALUES)
    rows = decoded_bytes // JOB_ROW_BYTES
    directory.mkdir(parents=True)
    for i, r0 in enumerate(range(0, rows, JOB_FILE_ROWS)):
        n = min(JOB_FILE_ROWS, rows - r0)
        cols = (rng.integers(0, JOB_VALUES, (n, JOB_FIELDS)) + np.arange(JOB_FIELDS) * JOB_VALUES).ravel()
        x = CSR(np.ones(n * JOB_FIELDS, np.float32), cols.astype(np.int64),
                np.arange(0, n * JOB_FIELDS + 1, JOB_FIELDS, dtype=np.int64), JOB_FIELDS * JOB_VALUES).to_scipy()
        y = (rng.random(n) < 1 / (1 + np.exp(-(x @ weights - 1.0)))).astype(np.float32)
        with open(directory / f"part-{i:03d}.pbr", "wb") as out:
            write_spmatrix_to_sparse_tensor(out, x, y)
    return rows


def _run_job(opt_ml: Path, data: Path, mode: str, epochs: int, buffer_mb: int) -> dict[str, Any]:
    """``train`` as a subprocess streaming ``data`` (File mode: the directory is the channel; Pipe mode: a
    writer thread feeds a FIFO per epoch); its peak RSS and the rows/s of its epochs (decoding included)."""
    shutil.rmtree(opt_ml, ignore_errors=True)
    (opt_ml / "input" / "config").mkdir(parents=True)
    hp = {"feature_dim": str(JOB_FIELDS * JOB_VALUES), "num_factors": "8", "predictor_type": "binary_classifier",
          "epochs": str(epochs), "num_threads": "1", "data_loading": "stream", "stream_buffer_mb": str(buffer_mb)}
    (opt_ml / "input" / "config" / "hyperparameters.json").write_text(json.dumps(hp))
    (opt_ml / "input" / "config" / "inputdataconfig.json").write_text(json.dumps(
        {"train": {"TrainingInputMode": mode, "ContentType": "application/x-recordio-protobuf"}}))
    channels = opt_ml / "input" / "data"
    channels.mkdir(parents=True)
    files = sorted(data.iterdir())
    if mode == "File":
        (channels / "train").symlink_to(data)
    else:
        def feed() -> None:
            for epoch in range(epochs):
                fifo = channels / f"train_{epoch}"
                os.mkfifo(fifo)
                with open(fifo, "wb") as out:
                    for path in files:
                        out.write(path.read_bytes())

        threading.Thread(target=feed, daemon=True).start()
    started = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(REPO / "train")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={"SAGEMAKER_BASE_DIR": str(opt_ml), "PATH": "/usr/bin:/bin"})
    output = proc.communicate()[0]
    if proc.returncode != 0:
        raise RuntimeError(f"train exited {proc.returncode}:\n{output[-3000:]}")
    peak = re.search(r"Peak memory \(RSS\) of the job: ([\d.]+) MiB", output)
    rates = [float(v) for v in re.findall(r"#throughput_metric: host=\S+, train throughput=([\d.]+)", output)]
    return {"mode": mode, "peak_rss_mb": float(peak.group(1)) if peak else None, "epoch_rows_per_s": rates[-epochs:],
            "seconds": time.monotonic() - started}


def jobs(multiples: list[float], limit_mb: int, epochs: int, buffer_mb: int) -> list[dict[str, Any]]:
    results = []
    with tempfile.TemporaryDirectory(dir=REPO / "bench") as tmp:
        for multiple in multiples:
            data = Path(tmp) / f"data-{multiple:g}x"
            rows = _job_data(data, int(multiple * limit_mb * 2**20))
            for mode in ("File", "Pipe"):
                run = _run_job(Path(tmp) / "opt_ml", data, mode, epochs, buffer_mb)
                run.update(multiple=multiple, rows=rows, decoded_mb=rows * JOB_ROW_BYTES / 2**20)
                results.append(run)
                print(f"{multiple:4g}x {limit_mb} MB ({run['decoded_mb']:7.0f} MB decoded, {rows:,} rows) {mode:4}: "
                      f"peak RSS {run['peak_rss_mb']:.0f} MB, epochs at "
                      + ", ".join(f"{r:,.0f}" for r in run["epoch_rows_per_s"])
                      + f" rows/s (built-in ~{SAGEMAKER_ROWS_PER_S:,}); {run['seconds']:.0f} s", flush=True)
            shutil.rmtree(data)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("shuffle", "cache", "jobs"), required=True)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--buffer-mb", type=int, nargs="+", default=[256, 16])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--sets", nargs="+", default=["ctr", "ratings", "ratings-by-user"],
                        choices=("ctr", "ratings", "ratings-by-user"), help="shuffle: the data sets")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="shuffle: seeds of each variant")
    parser.add_argument("--orders", nargs="+", default=["blocks"], choices=("blocks", "runs"),
                        help="shuffle: the streamed orders (the shuffle setting) set against shuffle=full")
    parser.add_argument("--multiples", type=float, nargs="+", default=[1, 3, 10],
                        help="jobs: data sizes, in multiples of --limit-mb")
    parser.add_argument("--limit-mb", type=int, default=256, help="jobs: the memory the data is measured against")
    args = parser.parse_args()
    if args.part == "shuffle":
        result: Any = shuffle_quality(args.sets, args.epochs, args.threads, args.buffer_mb, args.seeds, args.orders)
    elif args.part == "cache":
        result = cache_speed(args.epochs, args.threads, args.buffer_mb[0], args.repeat)
    else:
        result = jobs(args.multiples, args.limit_mb, args.epochs, args.buffer_mb[0])
    out = REPO / "bench" / "results" / f"fm_stream_{args.part}_{time.strftime('%Y%m%d_%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"results: {out}")


if __name__ == "__main__":
    main()
