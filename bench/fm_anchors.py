"""Anchor FM trainers for the benchmark: xLearn (C++, file input), libFM (C++, built from its public source:
not on PyPI), myfm (Bayesian: Gibbs / variational) and a plain numpy/scipy minibatch SGD (the floor of effort).

Every runner returns a :class:`RunResult` with one wall-clock time per epoch (or per sampler iteration) and
the held-out quality, computed here with the same metric functions for every trainer. Runners are meant to
be called once per process (``bench_fm.py`` starts one subprocess per configuration, so that peak memory is
per run and thread settings do not leak).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from algorithm.csr import CSR
from bench.fm_data import DATA_DIR, BenchData, accuracy, auc, logloss, rmse

XLEARN_DEFAULTS = {"lr": 0.2, "lambda": 0.00002}  # xLearn's own defaults (opt=adagrad, instance-wise norm on)
# libFM's plain SGD as its documentation runs MovieLens: per-row steps in file order, 2-way factors N(0, 0.1²).
LIBFM_SGD = {"learn_rate": "0.01", "regular": "0,0,0.04", "init_stdev": "0.1"}
LIBFM_ENV = "LIBFM"  # path of the libFM binary (its source's bin/libFM after `make all`)
# Best of a small grid (lr, lambda, instance-wise norm) on the seed-0 sets at k=8, 2 threads (see README).
XLEARN_TUNED = {"ctr": {"lr": 0.05, "lambda": 0.0002, "norm": False},
                "ratings": {"lr": 0.3, "lambda": 0.0001, "norm": True}}


@dataclass
class RunResult:
    """One trainer on one configuration: per-epoch seconds and held-out quality after the last epoch."""

    trainer: str
    dataset: str
    k: int
    threads: int
    variant: str = ""
    epoch_seconds: list[float] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    epoch_metrics: list[dict[str, float]] = field(default_factory=list)
    train_rows: int = 0
    state_bytes: int = 0
    notes: str = ""
    cpu_seconds: list[float] = field(default_factory=list)  # per epoch, where measured (libFM: its time_learn)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def held_out_metrics(task: str, y: np.ndarray, score: np.ndarray) -> dict[str, float]:
    """AUC, logloss and accuracy (classifier) or RMSE (regressor) of ``score`` against ``y``."""
    if task == "binary_classifier":
        return {"auc": auc(y, score), "logloss": logloss(y, score), "accuracy": accuracy(y, score)}
    return {"rmse": rmse(y, score)}


# ---------------------------------------------------------------------------------------------------------
# xLearn


def write_libsvm(ds: CSR, path: Path, chunk: int = 50_000) -> None:
    """Write ``ds`` as libsvm text (``label idx:val ...``, 0-based ids) atomically; fast for one-hot rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    nnz_per_row = np.diff(ds.indptr)
    fixed = len(nnz_per_row) > 0 and bool(np.all(nnz_per_row == nnz_per_row[0]) and np.all(ds.data == 1))
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        if fixed:
            m = int(nnz_per_row[0])
            labels = ds.labels.astype(np.int64) if np.all(ds.labels == np.rint(ds.labels)) else ds.labels
            lab_fmt = "%d" if labels.dtype == np.int64 else "%.6g"
            for s in range(0, ds.n_rows, chunk):
                e = min(ds.n_rows, s + chunk)
                block = np.empty((e - s, m + 1), dtype=object)
                block[:, 0] = labels[s:e].tolist()
                block[:, 1:] = ds.indices[s * m : e * m].reshape(-1, m).tolist()
                fh.write(((lab_fmt + " %d:1" * m + "\n") * (e - s)) % tuple(block.ravel().tolist()))
        else:
            for r in range(ds.n_rows):
                a, b = ds.indptr[r], ds.indptr[r + 1]
                feats = " ".join(f"{i}:{v:.6g}" for i, v in zip(ds.indices[a:b], ds.data[a:b], strict=True))
                fh.write(f"{ds.labels[r]:.6g} {feats}\n")
    os.replace(tmp, path)


def xlearn_files(data: BenchData) -> tuple[Path, Path]:
    """libsvm text files of the train and test rows for xLearn, written once under ``bench/data/xlearn``."""
    meta = data.meta
    tag = f"{data.name}_s{meta.get('seed', 0)}_v{meta.get('generator_version', 0)}_r{data.train.n_rows}"
    folder = DATA_DIR / "xlearn"
    paths = folder / f"{tag}_train.txt", folder / f"{tag}_test.txt"
    for ds, p in zip((data.train, data.test), paths, strict=True):
        if not p.exists():
            write_libsvm(ds, p)
    return paths


_XL_EPOCH = re.compile(r"^\[\s*[\d.]+%\s*\]\s*(\d+)\s+([-\d.eE+nainf\s]+)$")


def _parse_xlearn_log(text: str) -> list[tuple[int, list[float]]]:
    """Rows of xLearn's per-epoch table: (epoch, [columns...]); the last column is the epoch's seconds."""
    rows = []
    for line in re.sub(r"\x1b\[[0-9;]*m", "", text).splitlines():
        m = _XL_EPOCH.match(line.strip())
        if m:
            try:
                rows.append((int(m.group(1)), [float(v) for v in m.group(2).split()]))
            except ValueError:
                continue
    return rows


def run_xlearn(data: BenchData, k: int, threads: int, epochs: int, tuned: bool = False) -> RunResult:
    """xLearn FM (AdaGrad; defaults or the tuned settings), per-epoch time from its own log table.

    xLearn's "Time cost" column covers the epoch's training pass plus its validation pass, so we validate on
    the test set (needed for its per-epoch AUC/loss) and say so in the notes.
    """
    os.environ.setdefault("USER", "bench")  # xLearn segfaults when USER is unset
    import xlearn as xl

    train_path, test_path = xlearn_files(data)
    settings = dict(XLEARN_TUNED[data.name] if tuned and data.name in XLEARN_TUNED else XLEARN_DEFAULTS)
    norm = settings.pop("norm", True)
    task = "binary" if data.task == "binary_classifier" else "reg"
    param = {"task": task, "k": k, "epoch": epochs, "nthread": threads, "opt": "adagrad",
             "metric": "auc" if task == "binary" else "rmse", **settings}
    with tempfile.TemporaryDirectory() as tmp:
        model_path, out_path, log_path = (os.path.join(tmp, n) for n in ("model.out", "pred.txt", "log.txt"))
        fm = xl.create_fm()
        fm.setTrain(str(train_path))
        fm.setValidate(str(test_path))
        fm.disableEarlyStop()
        if not norm:
            fm.disableNorm()
        with _capture_fd1(log_path):
            t0 = time.perf_counter()
            fm.fit(param, model_path)
            fit_seconds = time.perf_counter() - t0
            fm.setTest(str(test_path))
            if task == "binary":
                fm.setSigmoid()
            fm.predict(model_path, out_path)
        log = Path(log_path).read_text(errors="replace")
        pred = np.loadtxt(out_path, dtype=np.float64).reshape(-1)
    table = _parse_xlearn_log(log)
    epoch_seconds = [cols[-1] for _, cols in table]
    # columns: train loss, test loss, test metric (AUC or RMSE), seconds
    key = "auc" if task == "binary" else "rmse"
    epoch_metrics = [{key: c[2], **({"logloss": c[1]} if task == "binary" else {})}
                     for _, c in table if len(c) >= 4]
    state = (data.feature_dim * (k + 1) + 1) * 4 * 2  # model + AdaGrad accumulators, float32
    notes = (f"lr={param['lr']} lambda={param['lambda']} norm={'on' if norm else 'off'}; epoch time includes "
             f"xLearn's validation pass; fit wall {fit_seconds:.2f}s incl. reading the binary cache")
    if not epoch_seconds:
        notes += "; could not parse xLearn's per-epoch table:\n" + log[-2000:]
    return RunResult("xlearn", data.name, k, threads, "tuned" if tuned else "defaults", epoch_seconds,
                     held_out_metrics(data.task, data.test.labels, pred), epoch_metrics, data.train.n_rows,
                     state, notes)


def libfm_binary(path: str | None = None) -> tuple[str | None, str]:
    """The libFM executable: ``path``, else $LIBFM, else ``libFM`` on PATH; (None, why) when there is none."""
    wanted = path or os.environ.get(LIBFM_ENV) or shutil.which("libFM")
    if not wanted:
        return None, (f"libFM: not run (not on PyPI; build it from github.com/srendle/libfm with `make all` "
                      f"and pass --libfm PATH/bin/libFM or set ${LIBFM_ENV})")
    if not (os.path.isfile(wanted) and os.access(wanted, os.X_OK)):
        return None, f"libFM: not run ({wanted} is not an executable file)"
    return wanted, ""


def run_libfm(data: BenchData, k: int, epochs: int, binary: str, seed: int = 0) -> RunResult:
    """libFM's plain SGD (``-method sgd``, ``LIBFM_SGD``; one thread, rows in file order, one step per row) on the
    libsvm files xLearn reads. Seconds per epoch are its own ``-rlog`` ``time_learn`` (user CPU time of the
    training pass; ours are wall-clock), the per-epoch test RMSE / accuracy its own ``rlog`` columns, the final
    quality from its ``-out`` predictions."""
    train_path, test_path = xlearn_files(data)
    classifier = data.task == "binary_classifier"
    with tempfile.TemporaryDirectory() as tmp:
        rlog, out = os.path.join(tmp, "rlog.txt"), os.path.join(tmp, "pred.txt")
        cmd = [binary, "-task", "c" if classifier else "r", "-train", str(train_path), "-test", str(test_path),
               "-dim", f"1,1,{k}", "-iter", str(epochs), "-method", "sgd", "-learn_rate", LIBFM_SGD["learn_rate"],
               "-regular", LIBFM_SGD["regular"], "-init_stdev", LIBFM_SGD["init_stdev"], "-seed", str(seed),
               "-rlog", rlog, "-out", out]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"libFM exited {proc.returncode}: {(proc.stderr or proc.stdout)[-1500:]}")
        lines = [line.split("\t") for line in Path(rlog).read_text().splitlines() if line.strip()]
        pred = np.loadtxt(out, dtype=np.float64).reshape(-1)
    table = [dict(zip(lines[0], map(float, row), strict=True)) for row in lines[1:]]
    epoch_seconds = [row["time_learn"] for row in table]
    key = "accuracy" if classifier else "rmse"
    epoch_metrics = [{key: row[key]} for row in table]
    state = (data.feature_dim * (k + 1) + 1) * 8  # model, float64 (plain SGD keeps no optimizer state)
    notes = (f"-method sgd -learn_rate {LIBFM_SGD['learn_rate']} -regular '{LIBFM_SGD['regular']}' -init_stdev "
             f"{LIBFM_SGD['init_stdev']}; epoch time = its rlog time_learn (user CPU seconds); run wall "
             f"{wall:.2f}s incl. reading the text files")
    return RunResult("libfm", data.name, k, 1, "sgd", epoch_seconds,
                     held_out_metrics(data.task, data.test.labels, pred), epoch_metrics, data.train.n_rows, state,
                     notes, cpu_seconds=epoch_seconds)


class _capture_fd1:  # noqa: N801 - used as a context manager
    """Send this process's file descriptor 1 (C++ stdout) to a file while inside the block."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __enter__(self) -> None:
        import sys

        sys.stdout.flush()
        self.saved = os.dup(1)
        self.fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(self.fd, 1)

    def __exit__(self, *exc: object) -> None:
        import ctypes
        import sys

        sys.stdout.flush()
        ctypes.CDLL(None).fflush(None)  # C/C++ stdio buffers
        os.dup2(self.saved, 1)
        os.close(self.saved)
        os.close(self.fd)


# ---------------------------------------------------------------------------------------------------------
# myfm


def run_myfm(data: BenchData, k: int, iterations: int, method: str = "gibbs", seed: int = 0) -> RunResult:
    """myfm (single-threaded C++): Gibbs sampling (posterior mean of the second half of the samples) or
    variational Bayes; seconds per iteration from its callback, quality after ``iterations``."""
    import myfm

    X, Xt = data.train.to_scipy(), data.test.to_scipy()
    y = data.train.labels.astype(np.float64)
    stamps = [time.perf_counter()]

    def callback(*_: object) -> tuple[bool, None]:
        stamps.append(time.perf_counter())
        return False, None

    classifier = data.task == "binary_classifier"
    if method == "gibbs":
        model = (myfm.MyFMClassifier if classifier else myfm.MyFMRegressor)(rank=k, random_seed=seed)
        model.fit(X, y, n_iter=iterations, n_kept_samples=max(1, iterations // 2), callback=callback)
    elif method == "vb":
        model = (myfm.VariationalFMClassifier if classifier else myfm.VariationalFMRegressor)(
            rank=k, random_seed=seed)
        model.fit(X, y, n_iter=iterations, callback=callback)
    else:
        raise ValueError(f"unknown myfm method {method!r}")
    score = model.predict_proba(Xt) if classifier else model.predict(Xt)
    kept = max(1, iterations // 2) if method == "gibbs" else 1
    state = (data.feature_dim * (k + 1) + 1) * 8 * (kept + (1 if method == "gibbs" else 2))
    notes = f"{iterations} iterations" + (f", posterior mean of the last {kept}" if kept > 1 else "")
    quality = held_out_metrics(data.task, data.test.labels, score)
    return RunResult("myfm", data.name, k, 1, method, list(np.diff(stamps)), quality, [], data.train.n_rows,
                     state, notes)


# ---------------------------------------------------------------------------------------------------------
# numpy / scipy floor


def _batches(n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[s : s + size] for s in range(0, n, size)]


def numpy_fm_epoch(X: sp.csr_matrix, y: np.ndarray, w0: np.ndarray, w: np.ndarray, V: np.ndarray,
                   classifier: bool, lr: float, wd: float, batch: int, rng: np.random.Generator) -> None:
    """One epoch of minibatch SGD on an FM with scipy sparse products over the batch's own columns.

    Gradients are averaged over the batch; only the columns present in a batch are read and updated (with
    L2 decay ``wd`` on them), which is what keeps a 1M-feature epoch from being 1M-wide per step.
    """
    for rows in _batches(X.shape[0], batch, rng):
        B = X[rows]
        cols, local = np.unique(B.indices, return_inverse=True)
        Bl = sp.csr_matrix((B.data, local.reshape(-1), B.indptr), shape=(B.shape[0], len(cols)))
        Bl2 = Bl.multiply(Bl).tocsr()
        Vc, wc = V[cols], w[cols]
        XV = Bl @ Vc
        score = w0[0] + Bl @ wc + 0.5 * ((XV * XV).sum(axis=1) - Bl2 @ (Vc * Vc).sum(axis=1))
        g = 1.0 / (1.0 + np.exp(-score)) - y[rows] if classifier else score - y[rows]
        g = (g / len(rows)).astype(np.float32)
        BT = Bl.T.tocsr()
        grad_w = BT @ g
        grad_V = BT @ (g[:, None] * XV) - (Bl2.T @ g)[:, None] * Vc
        w0[0] -= lr * float(g.sum())
        w[cols] = wc - lr * (grad_w + wd * wc)
        V[cols] = Vc - lr * (grad_V + wd * Vc)


def run_numpy(data: BenchData, k: int, threads: int, epochs: int, lr: float | None = None, wd: float = 1e-6,
              batch: int = 1000, seed: int = 0,
              on_epoch: Callable[[int, float], None] | None = None) -> RunResult:
    """The numpy/scipy floor: vectorized minibatch SGD, float32 arrays, BLAS threads = ``threads``."""
    from threadpoolctl import threadpool_limits

    classifier = data.task == "binary_classifier"
    lr = (0.5 if classifier else 0.05) if lr is None else lr
    rng = np.random.default_rng(seed)
    X, Xt = data.train.to_scipy(), data.test.to_scipy()
    y = data.train.labels
    w0 = np.array([0.0 if classifier else float(y.mean())], np.float64)
    w = np.zeros(data.feature_dim, np.float32)
    V = (rng.standard_normal((data.feature_dim, k)) * 0.01).astype(np.float32)
    seconds, per_epoch = [], []
    with threadpool_limits(threads):
        for epoch in range(epochs):
            t0 = time.perf_counter()
            numpy_fm_epoch(X, y, w0, w, V, classifier, lr, wd, batch, rng)
            seconds.append(time.perf_counter() - t0)
            per_epoch.append(held_out_metrics(data.task, data.test.labels, numpy_fm_predict(Xt, w0, w, V,
                                                                                            classifier)))
            if on_epoch:
                on_epoch(epoch, seconds[-1])
    return RunResult("numpy", data.name, k, threads, "sgd", seconds, per_epoch[-1], per_epoch,
                     data.train.n_rows, (data.feature_dim * (k + 1) + 1) * 4,
                     f"minibatch {batch}, lr={lr}, wd={wd}; scipy sparse products are single-threaded")


def numpy_fm_predict(X: sp.csr_matrix, w0: np.ndarray, w: np.ndarray, V: np.ndarray, classifier: bool
                     ) -> np.ndarray:
    """FM scores of ``X`` (probabilities for the classifier)."""
    XV = X @ V
    score = w0[0] + X @ w + 0.5 * ((XV * XV).sum(axis=1) - X.multiply(X).tocsr() @ (V * V).sum(axis=1))
    return 1.0 / (1.0 + np.exp(-score)) if classifier else score
