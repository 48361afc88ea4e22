"""FM training benchmark: our ``algorithm.fm.FactorizationMachines`` against xLearn, libFM (when built: ``--libfm``),
myfm and a numpy/scipy SGD floor, interleaved per configuration, one subprocess per run (so peak RSS is per run).

    .venv/bin/python -m bench.bench_fm --dataset all                      # the full comparison
    .venv/bin/python -m bench.bench_fm --dataset ctr --rows 100000 --k 8 --threads 2 --epochs 3

Prints one line per run as it finishes, then a table (medians; ratios = anchor seconds / our Adam seconds at
the same dataset, k and threads) and PASS/MISS per goal. Results go to ``bench/results/fm_<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from algorithm.schemas import FM_SCHEMA

REPO = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO / "bench" / "results"
SAGEMAKER_ROWS_PER_S = 105_000  # the built-in's logged throughput on a multi-core instance
# Our variants: "default" leaves the optimizer unset (what a job that sets nothing trains with), the others
# set it and leave its rates at their defaults.
OUR_OPTIMIZERS = ("default", "adam", "sgd", "adagrad", "ftrl")
ADAGRAD_STATE_DEFAULT = FM_SCHEMA["adagrad_state"].default  # --adagrad-state names the others' runs
DIGITS = {"k": 10, "mini_batch_size": 100, "epochs": 100}

# Goals (seconds per epoch at the full data set size; scaled by rows when --rows subsamples).
EPOCH_GOALS = {("ctr", 8, 2): 0.6, ("ctr", 32, 2): 1.2, ("ctr", 8, 1): 1.3, ("ctr", 32, 1): 2.5,
               ("ratings", 8, 1): 0.05}
CTR_AUC_GOAL, CTR_LOGLOSS_GOAL, RATINGS_RMSE_GOAL, DIGITS_ACCURACY_GOAL = 0.767, 0.478, 0.805, 0.98
ADAM_VS_FASTEST_GOAL, MEMORY_GOAL, QUALITY_EPOCHS = 1.5, 1.5, 10
# Against the anchors on one thread (epoch seconds): our SGD <= libFM's SGD, our default optimizer <= 1.5x libFM's
# and <= 0.5x xLearn's (the faster of its variants run).
LIBFM_SGD_GOAL, LIBFM_DEFAULT_GOAL, XLEARN_DEFAULT_GOAL = 1.0, 1.5, 0.5
# CTR epoch of the default optimizer and of our fastest one, at most this share of tuned xLearn's, by threads.
CTR_VS_XLEARN_GOALS = {1: 0.6, 2: 0.5}

LEGEND = """\
ratio   = this row's median epoch seconds / our Adam's at the same data, k and threads (> 1: we are faster)
JIT s   = our warm-up fit on 256 rows before the data is loaded (numba compiling, or loading its cache)
1st s   = first timed epoch; epoch s = median of the other epochs (myfm: per sampler iteration, "it")
CPU s   = CPU seconds of the epoch (median of the others): ours on 1 thread, the epoch kernel calls' thread time;
          libFM, its time_learn (its epoch s too); not measured elsewhere (nan)
quality = held-out, at the epoch (@n) of lowest test logloss/RMSE among the first 10 (myfm, digits: final);
          the goals also give epoch 10's, the model a job of 10 epochs keeps
default = our FM with the optimizer unset (adagrad), as a job that sets nothing
rows/s  = training rows / epoch s; the SageMaker built-in logs ~{sagemaker:,} rows/s on a multi-core instance
used MB = peak RSS - RSS after imports (and our warm-up); need MB = data + model + optimizer state"""

# Not measured here: reference figures on real data of the same shape as each set.
QUOTED = {
    "ctr": "Reference on a real CTR set of this shape: xLearn AUC 0.738 / logloss 0.490 (defaults), "
           "0.767 / 0.478 (tuned); myfm Gibbs 0.783 / 0.459.",
    "ratings": "Reference on MovieLens-1M: libFM SGD RMSE 0.806, xLearn 0.816, myfm Gibbs (k=16) 0.791. libFM's "
               "epoch seconds are its rlog time_learn (user CPU time), ours and xLearn's wall-clock.",
}


# ---------------------------------------------------------------------------------------------------------
# worker: one run in its own process


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _quality_per_epoch(task: str, test: dict[str, float] | None) -> dict[str, float]:
    if not test:
        return {}
    if task == "binary_classifier":
        return {"auc": test.get("auc", math.nan),
                "logloss": test.get("binary_classification_cross_entropy", math.nan),
                "accuracy": test.get("binary_classification_accuracy", math.nan)}
    return {"rmse": test.get("rmse", math.nan)}


def _optimizer_param(variant: str) -> str | None:
    """The ``optimizer`` argument of our variant ("default": unset; "<optimizer>/<order>" for a shuffle other than
    full)."""
    optimizer = variant.split("/")[0]
    return None if optimizer == "default" else optimizer


def warm_up_ours(data: Any, k: int, threads: int, optimizer: str, task: str) -> float:
    """Fit on the first 256 rows of ``data`` once as a ``task`` model (its 0/1 labels serve both tasks), so
    that numba compiles (or loads its cache) the kernels of the timed run before it; returns the seconds it
    took (the JIT cost a cold process pays once)."""
    from algorithm.fm import FactorizationMachines

    small = data.subsample(256)
    t0 = time.perf_counter()
    FactorizationMachines(feature_dim=data.feature_dim, num_factors=k, predictor_type=task, epochs=1,
                          mini_batch_size=64, optimizer=_optimizer_param(optimizer), num_threads=threads).fit(
        small.train, small.train.labels, eval_set=(small.test, small.test.labels))
    return time.perf_counter() - t0


def run_ours(data: Any, k: int, threads: int, epochs: int, optimizer: str, seed: int,
             mini_batch_size: int = 1000, shuffle: str = "full", adagrad_state: str | None = None) -> Any:
    """Our FM with the default learning rates of ``optimizer`` (a variant of ``OUR_OPTIMIZERS``); times from
    ``on_epoch``. ``adagrad_state``: AdaGrad's (None: the product default)."""
    from algorithm.fm import FactorizationMachines
    from bench.fm_anchors import RunResult, held_out_metrics

    seconds: list[float] = []
    per_epoch: list[dict[str, float]] = []
    cpu = _KernelCpu() if threads == 1 else None

    def on_epoch(epoch: int, train: dict[str, float], test: dict[str, float] | None, secs: float) -> None:
        seconds.append(secs)
        per_epoch.append(_quality_per_epoch(data.task, test))
        if cpu is not None:
            cpu.epoch_done()

    model = FactorizationMachines(feature_dim=data.feature_dim, num_factors=k, predictor_type=data.task,
                                  epochs=epochs, mini_batch_size=mini_batch_size,
                                  optimizer=_optimizer_param(optimizer), num_threads=threads, seed=seed,
                                  shuffle=shuffle,
                                  **({} if adagrad_state is None else {"adagrad_state": adagrad_state}))
    if cpu is None:
        model.fit(data.train, data.train.labels, eval_set=(data.test, data.test.labels), on_epoch=on_epoch)
    else:
        with cpu:
            model.fit(data.train, data.train.labels, eval_set=(data.test, data.test.labels), on_epoch=on_epoch)
    score = model.predict_scores(data.test)
    params = model.resolved_params()
    state = FactorizationMachines.state_bytes(data.feature_dim, k, params["optimizer"], threads,
                                              adagrad_state=params["adagrad_state"])
    quality = held_out_metrics(data.task, data.test.labels, score)
    return RunResult("ours", data.name, k, threads, optimizer, seconds, quality, per_epoch, data.train.n_rows,
                     state, f"mini_batch_size={mini_batch_size}; shuffle={shuffle}; default learning rates; epoch "
                     "time excludes the per-epoch test scoring", cpu_seconds=[] if cpu is None else cpu.seconds)


class _KernelCpu:
    """Within the block, the CPU seconds of this thread in the serial epoch kernel's calls, per epoch
    (``epoch_done`` closes one): what libFM's ``time_learn`` measures, robust to the other processes of a shared
    machine, which inflate wall-clock seconds. It wraps ``train_epoch_serial`` of this process (one run per
    process); one thread only."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.current = 0.0

    def __enter__(self) -> None:
        from algorithm import _fm_kernels

        self.kernel = kernel = _fm_kernels.train_epoch_serial

        def timed(*args: Any) -> Any:
            started = time.thread_time()
            try:
                return kernel(*args)
            finally:
                self.current += time.thread_time() - started

        _fm_kernels.train_epoch_serial = timed

    def __exit__(self, *exc: object) -> None:
        from algorithm import _fm_kernels

        _fm_kernels.train_epoch_serial = self.kernel

    def epoch_done(self) -> None:
        self.seconds.append(self.current)
        self.current = 0.0


def worker(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one configuration and return its result with memory figures (called in a fresh process)."""
    import numpy as np

    from bench import fm_anchors, fm_data

    trainer, k, threads = spec["trainer"], spec["k"], spec["threads"]
    __import__({"ours": "algorithm.fm", "xlearn": "xlearn", "myfm": "myfm"}.get(trainer, "scipy.sparse"))
    rss_import = _status_kb("VmRSS")
    warm_up_seconds = 0.0
    if trainer == "ours":  # JIT (or numba cache loading) before the data, so its memory is not counted
        task = "regressor" if spec["dataset"] == "ratings" else "binary_classifier"
        warm_up_seconds = warm_up_ours(fm_data.load("digits"), k, threads, spec["variant"], task)
    rss_base = _status_kb("VmRSS")
    data = fm_data.load(spec["dataset"], seed=spec["seed"], rows=spec["rows"])
    data = fm_data.BenchData(data.name, data.task, _own(data.train, np), _own(data.test, np), data.meta)
    rss_loaded = _status_kb("VmRSS")
    peak_reset = _reset_peak()
    t0 = time.perf_counter()
    if trainer == "ours":
        result = run_ours(data, k, threads, spec["epochs"], spec["variant"], spec["seed"],
                          spec.get("mini_batch_size", 1000), spec.get("shuffle", "full"), spec.get("adagrad_state"))
    elif trainer == "xlearn":
        result = fm_anchors.run_xlearn(data, k, threads, spec["epochs"], tuned=spec["variant"] == "tuned")
    elif trainer == "libfm":
        result = fm_anchors.run_libfm(data, k, spec["epochs"], spec["libfm"], seed=spec["seed"])
    elif trainer == "myfm":
        result = fm_anchors.run_myfm(data, k, spec["epochs"], method=spec["variant"], seed=spec["seed"])
    elif trainer == "numpy":
        result = fm_anchors.run_numpy(data, k, threads, spec["epochs"], seed=spec["seed"],
                                      batch=spec.get("mini_batch_size", 1000))
    else:
        raise ValueError(f"unknown trainer {trainer!r}")
    wall = time.perf_counter() - t0
    peak = _status_kb("VmHWM") if peak_reset else _peak_rusage_kb()
    out = result.to_dict()
    data_bytes = data.train.nbytes + data.test.nbytes
    if trainer == "ours" and spec.get("shuffle", "full") != "full":
        out["variant"] = f"{out['variant']}/{spec['shuffle']}"
    if trainer == "ours" and spec.get("adagrad_state") not in (None, ADAGRAD_STATE_DEFAULT):
        out["variant"] = f"{out['variant']}/{spec['adagrad_state'][:4]}"
    out.update(load_avg_1min=os.getloadavg()[0], wall_seconds=wall, warm_up_seconds=warm_up_seconds,
               rss_import_mb=rss_import / 1024,
               rss_base_mb=rss_base / 1024, rss_loaded_mb=rss_loaded / 1024, peak_mb=peak / 1024,
               data_mb=data_bytes / 2**20, state_mb=result.state_bytes / 2**20,
               peak_since_load_only=peak_reset)
    return out


def _own(ds: Any, np: Any) -> Any:
    """The set with its views copied, so that a subsample does not keep the full arrays alive."""
    from algorithm.csr import CSR

    def own(a: Any) -> Any:
        return a if a.base is None else np.array(a)

    return CSR(own(ds.data), own(ds.indices), own(ds.indptr), ds.n_cols, own(ds.labels))


def _peak_rusage_kb() -> int:
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


# ---------------------------------------------------------------------------------------------------------
# driver


def _launch(spec: dict[str, Any], timeout: float, extra_env: dict[str, str] | None = None,
            module: str = "bench.bench_fm") -> dict[str, Any]:
    """Run ``python -m module --worker SPEC`` with the run's thread count; its result, or ``spec`` + error."""
    env = dict(os.environ)
    threads = str(spec["threads"])
    env.update(OMP_NUM_THREADS=threads, OPENBLAS_NUM_THREADS=threads, MKL_NUM_THREADS=threads,
               NUMBA_NUM_THREADS=threads)
    env.update(extra_env or {})
    env.setdefault("USER", "bench")  # xLearn crashes without it
    with tempfile.TemporaryDirectory() as tmp:
        out_path = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", module, "--worker", json.dumps(spec), "--result", str(out_path)]
        try:
            proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {**spec, "error": f"timed out after {timeout:.0f} s"}
        if proc.returncode != 0 or not out_path.exists():
            tail = (proc.stderr or proc.stdout)[-1500:]
            return {**spec, "error": f"exit {proc.returncode}: {tail}"}
        return json.loads(out_path.read_text())


def _myfm_iters(text: str) -> dict[str, int]:
    out = {"ctr": 3, "ratings": 30, "digits": 30}
    for part in filter(None, text.split(",")):
        name, _, value = part.partition("=")
        out[name.strip()] = int(value)
    return out


def plan(args: argparse.Namespace) -> list[dict[str, Any]]:
    """The runs, ours and the anchors interleaved within each (dataset, k, threads) configuration."""
    datasets = ["ctr", "ratings", "digits"] if args.dataset == "all" else [args.dataset]
    anchors = [a for a in args.anchors.split(",") if a]
    myfm_iters = _myfm_iters(args.myfm_iters)
    runs: list[dict[str, Any]] = []
    for name in datasets:
        configs = [(DIGITS["k"], 1)] if name == "digits" else [(k, t) for k in args.k for t in args.threads]
        rows = None if name == "digits" else args.rows
        for rep in range(args.repeat):
            for k, threads in configs:
                base = {"dataset": name, "k": k, "threads": threads, "rows": rows, "seed": args.seed,
                        "repeat": rep}
                epochs = DIGITS["epochs"] if name == "digits" else args.epochs
                batch = {"mini_batch_size": DIGITS["mini_batch_size"]} if name == "digits" else {}
                ours = [dict(base, trainer="ours", variant=o, epochs=epochs, shuffle=order, adagrad_state=state,
                             **batch)
                        for o in ([] if args.skip_ours else args.optimizers) for order in args.shuffle
                        for state in (args.adagrad_state if o in ("default", "adagrad") else [None])]
                others: list[dict[str, Any]] = []
                if "xlearn" in anchors:
                    variants = ["tuned"] if name != "digits" else []
                    if (k, threads) == (configs[0][0], max(t for _, t in configs)) or name == "digits":
                        variants.insert(0, "defaults")
                    others += [dict(base, trainer="xlearn", variant=v, epochs=epochs) for v in variants]
                if "libfm" in anchors and threads == 1 and name != "digits" and args.libfm_path:
                    others.append(dict(base, trainer="libfm", variant="sgd", epochs=epochs, libfm=args.libfm_path))
                if "numpy" in anchors and threads == 1:
                    others.append(dict(base, trainer="numpy", variant="sgd",
                                       epochs=min(epochs, args.floor_epochs) if name != "digits" else epochs,
                                       **batch))
                if "myfm" in anchors and threads == 1 and (name != "ctr" or k == configs[0][0]):
                    methods = args.myfm_methods or ("gibbs" if name == "ctr" else "gibbs,vb")
                    others += [dict(base, trainer="myfm", variant=m, epochs=myfm_iters[name])
                               for m in methods.split(",") if m]
                # interleave: ours, anchor, ours, anchor, ...
                merged: list[dict[str, Any]] = []
                while ours or others:
                    if ours:
                        merged.append(ours.pop(0))
                    if others:
                        merged.append(others.pop(0))
                runs += merged
    return runs


def prepare(runs: list[dict[str, Any]]) -> None:
    """Generate and cache the data sets (and xLearn's text files) before any timed run."""
    from bench import fm_anchors, fm_data

    sets: dict[tuple, bool] = {}
    for r in runs:
        key = (r["dataset"], r["seed"], r["rows"])
        sets[key] = sets.get(key, False) or r["trainer"] in ("xlearn", "libfm")  # (libFM reads the same files)
    for (name, seed, rows), xlearn in sets.items():
        t0 = time.perf_counter()
        data = fm_data.load(name, seed=seed, rows=rows)
        if xlearn:
            fm_anchors.xlearn_files(data)
        facts = {k: v for k, v in data.meta.items() if k.startswith(("bayes", "click", "rating_m"))}
        print(f"# data {name}: {data.train.n_rows} train / {data.test.n_rows} test rows, "
              f"feature_dim {data.feature_dim}, ready in {time.perf_counter() - t0:.1f} s; "
              f"{json.dumps(facts)}", flush=True)


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def _steady(r: dict[str, Any]) -> list[float]:
    secs = r.get("epoch_seconds") or []
    return secs[1:] if len(secs) > 1 else secs


def _quality_text(r: dict[str, Any], best: bool = False) -> str:
    """Held-out quality after the last epoch, or (``best``) at the best of the first 10 epochs ("@epoch")."""
    m, at = (_best_epoch_quality(r), _best_epoch(r)) if best and r["dataset"] != "digits" else (
        r.get("metrics", {}), None)
    where = f" @{at + 1}" if at is not None else ""
    if "auc" in m:
        return f"AUC {m['auc']:.4f} LL {m['logloss']:.4f}" + (
            f" acc {m['accuracy']:.4f}" if r["dataset"] == "digits" else "") + where
    if "rmse" in m:
        return f"RMSE {m['rmse']:.4f}{where}"
    return "-"


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (dataset, k, threads, trainer, variant): medians over epochs and repeats."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in results:
        if "error" in r:
            continue
        groups.setdefault((r["dataset"], r["k"], r["threads"], r["trainer"], r["variant"]), []).append(r)
    rows = []
    for (name, k, threads, trainer, variant), rs in groups.items():
        steady = _median([_median(_steady(r)) for r in rs])
        first = _median([r["epoch_seconds"][0] for r in rs if r["epoch_seconds"]])
        n = rs[0]["train_rows"]
        cpu = [_median(c[1:] if len(c) > 1 else c) for c in (r.get("cpu_seconds") or [] for r in rs) if c]
        rows.append({"dataset": name, "k": k, "threads": threads, "trainer": trainer, "variant": variant,
                     "first_s": first, "epoch_s": steady, "cpu_s": _median(cpu),
                     "rows_per_s": n / steady if steady else math.nan,
                     "epochs": len(rs[0]["epoch_seconds"]), "quality": _quality_text(rs[-1], best=True),
                     "metrics": rs[-1]["metrics"], "epoch_metrics": rs[-1]["epoch_metrics"],
                     "peak_mb": max(r["peak_mb"] for r in rs),
                     "used_mb": max(r["peak_mb"] - r["rss_base_mb"] for r in rs),
                     "runtime_mb": max(r["rss_base_mb"] for r in rs),
                     "warm_up_s": _median([r.get("warm_up_seconds", 0.0) for r in rs]),
                     "expected_mb": rs[0]["data_mb"] + rs[0]["state_mb"], "train_rows": n, "runs": len(rs)})
    return rows


def print_table(rows: list[dict[str, Any]]) -> None:
    ours_adam = {(r["dataset"], r["k"], r["threads"]): r["epoch_s"] for r in rows
                 if r["trainer"] == "ours" and r["variant"] == "adam"}
    head = (f"{'data':8}{'k':>3}{'thr':>4} {'trainer':8}{'variant':18}{'JIT s':>6}{'1st s':>8}{'epoch s':>9}"
            f"{'CPU s':>7}"
            f"{'rows/s':>12}{'/core':>12}{'ratio':>7}  {'held-out quality (best epoch)':33}{'peak MB':>8}"
            f"{'used MB':>8}{'need MB':>8}")
    print("\n" + head + "\n" + "-" * len(head))
    for r in sorted(rows, key=lambda r: (r["dataset"], r["k"], r["threads"], r["trainer"] != "ours",
                                         r["trainer"], r["variant"])):
        base = ours_adam.get((r["dataset"], r["k"], r["threads"]))
        ratio = r["epoch_s"] / base if base else math.nan
        unit = "it" if r["trainer"] == "myfm" else ""
        jit = f"{r['warm_up_s']:6.2f}" if r["trainer"] == "ours" else f"{'-':>6}"
        print(f"{r['dataset']:8}{r['k']:>3}{r['threads']:>4} {r['trainer']:8}{r['variant'][:17]:18}{jit}"
              f"{r['first_s']:>8.3f}{r['epoch_s']:>8.3f}{unit:1}{r.get('cpu_s', math.nan):>7.3f}"
              f"{r['rows_per_s']:>12,.0f}"
              f"{r['rows_per_s'] / r['threads']:>12,.0f}{ratio:>7.2f}  {r['quality']:33}"
              f"{r['peak_mb']:>8.0f}{r['used_mb']:>8.0f}{r['expected_mb']:>8.0f}")
    print(LEGEND.format(sagemaker=SAGEMAKER_ROWS_PER_S))


def _best_epoch(r: dict[str, Any], limit: int = QUALITY_EPOCHS) -> int | None:
    """Index of the epoch with the lowest test logloss (or RMSE) among the first ``limit``; None without
    per-epoch metrics."""
    per = [(m.get("logloss", m.get("rmse", math.inf)), i) for i, m in enumerate(r["epoch_metrics"][:limit])
           if m]
    return min(per)[1] if per else None


def _best_epoch_quality(r: dict[str, Any], limit: int = QUALITY_EPOCHS) -> dict[str, float]:
    at = _best_epoch(r, limit)
    return r["metrics"] if at is None else r["epoch_metrics"][at]


def _ctr_ok(quality: dict[str, float]) -> bool:
    return quality.get("auc", 0) >= CTR_AUC_GOAL and quality.get("logloss", 9) <= CTR_LOGLOSS_GOAL


def _last_epoch_quality(r: dict[str, Any], limit: int = QUALITY_EPOCHS) -> dict[str, float]:
    """Held-out quality after epoch ``limit`` (or the last epoch run, if fewer): the model such a job keeps."""
    per = r["epoch_metrics"][:limit]
    return per[-1] if per and per[-1] else r["metrics"]


def goals(rows: list[dict[str, Any]], full_rows: dict[str, int]) -> list[tuple[str, str, str]]:
    """(goal, PASS/MISS/n/a, measured) for each goal."""
    ours = {(r["dataset"], r["k"], r["threads"], r["variant"]): r for r in rows if r["trainer"] == "ours"}
    out: list[tuple[str, str, str]] = []

    def verdict(ok: bool | None) -> str:
        return "n/a" if ok is None else ("PASS" if ok else "MISS")

    def quality_verdict(ok: bool, r: dict[str, Any]) -> str:
        """A miss counts only when the run had all the epochs the goal allows."""
        return "PASS" if ok else ("MISS" if r["epochs"] >= QUALITY_EPOCHS else "n/a")

    def ran(r: dict[str, Any]) -> str:
        return "" if r["epochs"] >= QUALITY_EPOCHS else f" (only {r['epochs']} epochs run)"

    out += _anchor_goals(rows, ours, verdict)
    for (name, k, threads), limit in EPOCH_GOALS.items():
        r = ours.get((name, k, threads, "adam"))
        label = f"{name} k={k} {threads} thread{'s' if threads > 1 else ''}: Adam epoch <= {limit} s"
        if r is None:
            out.append((label, "n/a", "not run"))
            continue
        scale = r["train_rows"] / full_rows.get(name, r["train_rows"])
        scaled = limit * scale
        note = f" (goal scaled to {r['train_rows']:,} rows: {scaled:.3f} s)" if scale < 1 else ""
        out.append((label, verdict(r["epoch_s"] <= scaled), f"{r['epoch_s']:.3f} s{note}"))
    for key, r in sorted(ours.items()):
        name, k, threads, optimizer = key
        best, last = _best_epoch_quality(r), _last_epoch_quality(r)
        where = f"best epoch (@{_best_epoch(r) + 1}) " if _best_epoch(r) is not None else "best epoch "
        last_epoch = f"epoch {min(r['epochs'], QUALITY_EPOCHS)}"
        if name == "ctr":
            out.append((f"ctr k={k} thr={threads} {optimizer}: AUC >= {CTR_AUC_GOAL} and logloss <= "
                        f"{CTR_LOGLOSS_GOAL} at epoch {QUALITY_EPOCHS} (and at the best epoch)",
                        quality_verdict(_ctr_ok(last) and _ctr_ok(best), r),
                        f"{where}AUC {best.get('auc', math.nan):.4f} logloss {best.get('logloss', math.nan):.4f}; "
                        f"{last_epoch} AUC {last.get('auc', math.nan):.4f} logloss "
                        f"{last.get('logloss', math.nan):.4f}{ran(r)}"))
        elif name == "ratings":
            ok = max(last.get("rmse", 9), best.get("rmse", 9)) <= RATINGS_RMSE_GOAL
            out.append((f"ratings k={k} thr={threads} {optimizer}: RMSE <= {RATINGS_RMSE_GOAL} at epoch "
                        f"{QUALITY_EPOCHS} (and at the best epoch)", quality_verdict(ok, r),
                        f"{where}RMSE {best.get('rmse', math.nan):.4f}; {last_epoch} RMSE "
                        f"{last.get('rmse', math.nan):.4f}{ran(r)}"))
        elif name == "digits":
            acc = r["metrics"].get("accuracy", 0)
            out.append((f"digits 'is it a 0' {optimizer}: accuracy >= {DIGITS_ACCURACY_GOAL}",
                        verdict(acc >= DIGITS_ACCURACY_GOAL) if optimizer in ("default", "adam") else "info",
                        f"accuracy {acc:.4f} after {r['epochs']} epochs"))
    xlearn = {(r["dataset"], r["k"], r["threads"]): r for r in rows
              if r["trainer"] == "xlearn" and r["variant"] == "tuned"}
    for (name, k, threads) in sorted({key[:3] for key in ours}):
        if name == "digits":
            continue
        rs = [r for key, r in ours.items() if key[:3] == (name, k, threads)]
        anchor, share = xlearn.get((name, k, threads)), CTR_VS_XLEARN_GOALS.get(threads)
        if name == "ctr" and anchor is not None and share is not None:
            fastest = min(rs, key=lambda r: r["epoch_s"])
            for r in {id(r): r for r in rs if r["variant"].split("/")[0] == "default" or r is fastest}.values():
                ratio = r["epoch_s"] / anchor["epoch_s"]
                out.append((f"ctr k={k} thr={threads} {r['variant']}: epoch <= {share}x tuned xLearn's",
                            verdict(ratio <= share),
                            f"{ratio:.2f}x ({r['epoch_s']:.3f} s against {anchor['epoch_s']:.3f} s)"))
        adam = next((r for r in rs if r["variant"] == "adam"), None)
        fastest = min(rs, key=lambda r: r["epoch_s"])
        if adam and len(rs) > 1:
            ratio = adam["epoch_s"] / fastest["epoch_s"]
            out.append((f"{name} k={k} thr={threads}: Adam epoch <= {ADAM_VS_FASTEST_GOAL}x the fastest "
                        "optimizer's",
                        verdict(ratio <= ADAM_VS_FASTEST_GOAL),
                        f"{ratio:.2f}x ({fastest['variant']} {fastest['epoch_s']:.3f} s)"))
        for r in rs:
            ratio = r["used_mb"] / r["expected_mb"]
            out.append((f"{name} k={k} thr={threads} {r['variant']}: peak memory <= {MEMORY_GOAL}x "
                        "data+model+state", verdict(ratio <= MEMORY_GOAL),
                        f"{r['used_mb']:.0f} MB used / {r['expected_mb']:.0f} MB = {ratio:.2f}x"))
    return out


def _anchor_goals(rows: list[dict[str, Any]], ours: dict[tuple, dict[str, Any]],
                  verdict: Callable[[bool | None], str]) -> list[tuple[str, str, str]]:
    """Epoch-time goals against libFM's SGD and xLearn at the same data, k and one thread."""
    out: list[tuple[str, str, str]] = []
    for lib in (r for r in rows if r["trainer"] == "libfm"):
        name, k, threads = lib["dataset"], lib["k"], lib["threads"]
        where = f"{name} k={k} {threads} thread"
        xlearn = [r for r in rows if r["trainer"] == "xlearn" and (r["dataset"], r["k"], r["threads"]) ==
                  (name, k, threads)]
        fastest_xlearn = min(xlearn, key=lambda r: r["epoch_s"]) if xlearn else None
        sgd, default = ours.get((name, k, threads, "sgd")), ours.get((name, k, threads, "default"))
        for r, label, limit in ((sgd, "our SGD", LIBFM_SGD_GOAL), (default, "default optimizer's", LIBFM_DEFAULT_GOAL)):
            if r is None:
                continue
            cpu = r.get("cpu_s", math.nan)
            mine, what = (cpu, "CPU") if math.isfinite(cpu) else (r["epoch_s"], "wall-clock")
            ratio = mine / lib["epoch_s"]
            out.append((f"{where}: {label} epoch <= {limit}x libFM's SGD epoch (CPU seconds: its time_learn)",
                        verdict(ratio <= limit), f"{mine:.3f} s {what} / {lib['epoch_s']:.3f} s = {ratio:.2f}x "
                        f"(wall-clock {r['epoch_s']:.3f} s)"))
        if default and fastest_xlearn:
            ratio = default["epoch_s"] / fastest_xlearn["epoch_s"]
            out.append((f"{where}: default optimizer's epoch <= {XLEARN_DEFAULT_GOAL}x xLearn's",
                        verdict(ratio <= XLEARN_DEFAULT_GOAL),
                        f"{default['epoch_s']:.3f} s / {fastest_xlearn['epoch_s']:.3f} s "
                        f"({fastest_xlearn['variant']}) = {ratio:.2f}x"))
    return out


def main(argv: list[str] | None = None) -> int:
    """The benchmark CLI (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", choices=("ctr", "ratings", "digits", "all"), default="all")
    p.add_argument("--k", type=int, nargs="+", default=[8, 32], help="num_factors values")
    p.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    p.add_argument("--epochs", type=int, default=10, help="epochs for ours and xLearn (digits: 100)")
    p.add_argument("--repeat", type=int, default=1, help="runs per configuration (medians over them)")
    p.add_argument("--rows", type=int, default=None, help="subsample the training rows (quick runs)")
    p.add_argument("--anchors", default="xlearn,libfm,myfm,numpy", help="comma list of xlearn, libfm, myfm, numpy")
    p.add_argument("--libfm", default=None, metavar="PATH",
                   help="the libFM binary (default: $LIBFM, else libFM on PATH; the runs are skipped when absent)")
    p.add_argument("--optimizers", nargs="+", default=list(OUR_OPTIMIZERS), choices=OUR_OPTIMIZERS)
    p.add_argument("--skip-ours", action="store_true", help="run the anchors only")
    p.add_argument("--shuffle", nargs="+", choices=("full", "blocks", "runs"), default=["full"],
                   help="our row orders (each a variant of ours; other than full, named optimizer/order)")
    p.add_argument("--adagrad-state", nargs="+", choices=("element", "row"), default=[ADAGRAD_STATE_DEFAULT],
                   help="AdaGrad's second moment, for the default and adagrad variants (each a variant; other "
                   "than the product default, named optimizer/elem or optimizer/row)")
    p.add_argument("--floor-epochs", type=int, default=2, help="epochs of the numpy floor (timing only)")
    p.add_argument("--myfm-iters", default="", help="e.g. ctr=3,ratings=30 (defaults: ctr 3, others 30)")
    p.add_argument("--myfm-methods", default="",
                   help="comma list of gibbs, vb (default: gibbs on ctr, where vb takes ~1 min an iteration; "
                        "both elsewhere)")
    p.add_argument("--env", action="append", default=[], metavar="KEY=VALUE",
                   help="extra environment for every run, e.g. OMP_WAIT_POLICY=passive")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=1200.0, help="seconds per run")
    p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
    p.add_argument("--from-results", nargs="+", metavar="JSON",
                   help="print the table and goals of saved results (several files are merged) and exit")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.worker:
        Path(args.result).write_text(json.dumps(worker(json.loads(args.worker))))
        return 0

    if args.from_results:
        saved = [json.loads(Path(f).read_text()) for f in args.from_results]
        report([r for s in saved for r in s["runs"]])
        return 0
    args.libfm_path = None
    if "libfm" in args.anchors.split(","):
        from bench.fm_anchors import libfm_binary

        args.libfm_path, why = libfm_binary(args.libfm)
        if why:
            print(f"# {why}", flush=True)
    runs = plan(args)
    print(f"# {len(runs)} runs: " + " ".join(sys.argv[1:]), flush=True)
    if args.env:
        print(f"# extra environment: {' '.join(args.env)}", flush=True)
    if args.dry_run:
        for r in runs:
            print(json.dumps(r))
        return 0
    prepare(runs)
    results = []
    started = time.perf_counter()
    for i, spec in enumerate(runs, 1):
        r = _launch(spec, args.timeout, dict(e.split("=", 1) for e in args.env))
        results.append(r)
        tag = f"[{i}/{len(runs)}] {spec['dataset']} k={spec['k']} thr={spec['threads']} {spec['trainer']}/" \
              f"{spec['variant']}"
        if "error" in r:
            print(f"{tag}: ERROR {r['error']}", flush=True)
            continue
        secs = r["epoch_seconds"]
        print(f"{tag}: first {secs[0] if secs else math.nan:.3f} s, median {_median(_steady(r)):.3f} s "
              f"over {len(secs)}, {_quality_text(r)}, peak {r['peak_mb']:.0f} MB, "
              f"wall {r['wall_seconds']:.1f} s", flush=True)
    rows = report(results)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"fm_{time.strftime('%Y%m%d_%H%M%S')}.json"
    path.write_text(json.dumps({"argv": sys.argv[1:], "runs": results, "summary": rows}, indent=1))
    print(f"\n# {len(runs)} runs in {time.perf_counter() - started:.0f} s; "
          f"results in {path.relative_to(REPO)}")
    return 0


def report(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Print the table, the quoted figures and the goals of ``results``; returns the summary rows."""
    rows = summarize(results)
    print_table(rows)
    loads = [r["load_avg_1min"] for r in results if "load_avg_1min" in r]
    if loads:
        print(f"1-min load average at the end of the runs: {min(loads):.1f} to {max(loads):.1f} on "
              f"{os.cpu_count()} cores (other work on the machine competes for the same cores)")
    for name in sorted({r["dataset"] for r in results}):
        if name in QUOTED:
            print(QUOTED[name])
    from bench.fm_data import CTR_ROWS, ML_RATINGS

    full = {"ctr": round(CTR_ROWS * 0.9), "ratings": ML_RATINGS - ML_RATINGS // 10}
    print("\nGoals:")
    for label, verdict, measured in goals(rows, full):
        print(f"  {verdict:5} {label}: {measured}")
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
