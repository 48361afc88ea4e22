"""Serving benchmark: our server (serve.sh: nginx in front of serve/gunicorn_conf.py + serve.wsgi when nginx is
on PATH) against a floor, and the handler path.

The floor (``floor_app`` below) is a bare gunicorn + Flask app answering /invocations with a constant, run
with the same worker count, worker class and threads, driven by the same client. Model: a random FM
binary classifier with feature_dim 1,000,000 and k = 64 (256 MB of factors). Requests: sparse rows with 40
nonzeros.

    .venv/bin/python -m bench.bench_serve [--seconds 5] [--rounds 3] [--skip-memory] [--sections 1234567]

Client: ``wrk`` 4.1 (Debian package; ``apt-get install wrk``), one thread, keep-alive connections; the
"50% of saturation" run paces 8 connections with wrk's ``delay()`` hook (closed loop with think time,
calibrated to the target rate; the achieved rate is printed).
Large requests and /ping timings use ``requests`` from Python.

Sections: (1) in-process decode + predict + encode rows/s for 1,000-row requests (``FMServable.invoke``);
(2) single-row JSON requests/s, ours vs floor, interleaved rounds; (3) single-row p99 latency at half the
measured saturation; (4) 1,000-row request latency per format over HTTP; (5) /ping latency while every
worker serves a long request, gthread (ours) vs sync workers; (6) memory of preload_app vs per-worker
loading (RSS and PSS summed over master and workers); (7) each decoder alone against the library reader a
user would reach for (scikit-learn's load_svmlight_file, json.loads + numpy, np.loadtxt).
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import io
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import orjson
import requests
import scipy.sparse as sp
from flask import Flask, Response

ROOT = Path(__file__).resolve().parents[1]
FEATURE_DIM = 1_000_000
NUM_FACTORS = 64
NNZ_PER_ROW = 40
CSV_FEATURE_DIM = 1000
WORKERS = 2
RECORDIO = "application/x-recordio-protobuf"

floor_app = Flask(__name__)
_FLOOR_BODY = b'{"predictions":[{"score":0.5,"predicted_label":1.0}]}'


@floor_app.post("/invocations")
def _floor_invocations() -> Response:
    return Response(_FLOOR_BODY, content_type="application/json")


@floor_app.get("/ping")
def _floor_ping() -> Response:
    return Response(status=200)


# --- model and requests ----------------------------------------------------------------------------------


def make_model(base_dir: Path, seed: int = 0, feature_dim: int = FEATURE_DIM) -> None:
    """A random FM classifier (feature_dim 1M, k 64) saved as the artifact under base_dir/model."""
    from algorithm import artifact
    from algorithm.fm import FactorizationMachines

    rng = np.random.default_rng(seed)
    params = {"feature_dim": feature_dim, "num_factors": NUM_FACTORS, "predictor_type": "binary_classifier"}
    arrays: dict[str, np.ndarray] = {
        "w0": np.array([0.1], dtype=np.float32),
        "w": rng.normal(0, 0.1, feature_dim).astype(np.float32),
        "V": rng.normal(0, 0.05, (feature_dim, NUM_FACTORS)).astype(np.float32),
    }
    artifact.save(base_dir / "model", FactorizationMachines.from_artifact({"hyperparameters": params}, arrays))


def sparse_rows(n_rows: int, seed: int = 1, feature_dim: int = FEATURE_DIM) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.choice(feature_dim, size=(n_rows, NNZ_PER_ROW)), axis=1).ravel()
    indptr = np.arange(n_rows + 1) * NNZ_PER_ROW
    X = sp.csr_matrix((np.ones(indices.size, np.float32), indices, indptr), shape=(n_rows, feature_dim))
    X.sum_duplicates()
    return X


def request_bodies(X: sp.csr_matrix) -> dict[str, tuple[str, str, bytes]]:
    """Format name -> (Content-Type, Accept, body) of the same rows (CSV is dense, so absent at 1M columns)."""
    from container.formats.recordio import write_spmatrix_to_sparse_tensor

    rows = [(X.indices[X.indptr[i]:X.indptr[i + 1]].tolist(), X.data[X.indptr[i]:X.indptr[i + 1]].tolist())
            for i in range(X.shape[0])]
    sparse = [{"data": {"features": {"keys": k, "shape": [FEATURE_DIM], "values": v}}} for k, v in rows]
    recordio = io.BytesIO()
    write_spmatrix_to_sparse_tensor(recordio, X)
    return {
        "json": ("application/json", "application/json", json.dumps({"instances": sparse}).encode()),
        "jsonlines": ("application/jsonlines", "application/jsonlines",
                      "\n".join(json.dumps(s) for s in sparse).encode()),
        "libsvm": ("text/libsvm", "text/csv",
                   "\n".join(" ".join(f"{j}:{x:g}" for j, x in zip(k, v, strict=True)) for k, v in rows).encode()),
        "recordio": (RECORDIO, RECORDIO, recordio.getvalue()),
    }


# --- (1) in-process handler path --------------------------------------------------------------------------


def bench_handler(base_dir: Path, repeats: int = 30) -> None:
    from algorithm import artifact
    from container.formats import responses
    from container.formats.registry import decode
    from serve.model_store import FMServable

    servable = FMServable(artifact.load(base_dir / "model"))
    servable.warm_up()
    gc.freeze()  # as a worker does after warm-up (serve/gunicorn_conf.py)
    n_rows = 1000
    print(f"\n(1) handler path, {n_rows}-row requests, {NNZ_PER_ROW} nnz/row, k={NUM_FACTORS}, "
          f"d={FEATURE_DIM:,} (median of {repeats}; one thread)")
    print(f"    {'format':<10} {'decode ms':>9} {'predict ms':>10} {'encode ms':>9} {'total ms':>8} {'rows/s':>9}")
    for name, (content_type, accept, body) in request_bodies(sparse_rows(n_rows)).items():
        times: dict[str, list[float]] = {"decode": [], "predict": [], "encode": [], "total": []}
        for _ in range(repeats):
            t0 = time.perf_counter()
            X = decode(content_type, body, source="bench", feature_dim=FEATURE_DIM)
            t1 = time.perf_counter()
            columns = servable.predict(X)
            t2 = time.perf_counter()
            responses.encode(accept, columns)
            t3 = time.perf_counter()
            servable.invoke(body, content_type, accept)
            t4 = time.perf_counter()
            for key, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
                times[key].append(dt)
        med = {key: statistics.median(values) for key, values in times.items()}
        print(f"    {name:<10} {med['decode'] * 1e3:9.2f} {med['predict'] * 1e3:10.2f} {med['encode'] * 1e3:9.2f} "
              f"{med['total'] * 1e3:8.2f} {n_rows / med['total']:9,.0f}")


# --- servers and clients ----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def server(args: list[str], env: dict[str, str] | None = None, root: Path = ROOT,
           script: Path | None = None) -> Iterator[str]:
    """gunicorn with ``args`` on a free port (through ``script``, e.g. serve.sh, when given); yields its base URL
    once /ping answers 200."""
    port = free_port()
    environ = {**os.environ, "SAGEMAKER_BIND_TO_PORT": str(port), "SAGEMAKER_MODEL_SERVER_WORKERS": str(WORKERS),
               "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", **(env or {})}
    command = ([str(script)] if script else [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}"]) + [
        "--log-level", "warning", *args]
    process = subprocess.Popen(command, cwd=root, env=environ)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server {args} did not start")
            with contextlib.suppress(requests.RequestException):
                if requests.get(url + "/ping", timeout=5).status_code == 200:
                    break
            time.sleep(0.2)
        yield url
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)


def ours(base_dir: Path, extra: list[str] | None = None, env: dict[str, str] | None = None,
         root: Path = ROOT) -> contextlib.AbstractContextManager[str]:
    """Our server as the image runs it: ``root``'s serve.sh (nginx in front of gunicorn when nginx is on PATH),
    plus ``extra`` gunicorn flags."""
    return server(extra or [], {"SAGEMAKER_BASE_DIR": str(base_dir), **(env or {})}, root, root / "serve.sh")


def floor() -> contextlib.AbstractContextManager[str]:
    """The floor app with our worker count, worker class and threads."""
    return server(["-w", str(WORKERS), "-k", "gthread", "--threads", "2", "bench.bench_serve:floor_app"])


def wrk(url: str, script: Path, connections: int, seconds: int) -> dict[str, float]:
    """Requests/s and latency percentiles (ms) from one wrk run."""
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script),
                          url + "/invocations"], capture_output=True, text=True, check=True).stdout
    result = {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}  # type: ignore[union-attr]
    for pct, value, unit in re.findall(r"^\s+(50|90|99)%\s+([\d.]+)(us|ms|s)$", out, re.M):
        result[f"p{pct}"] = float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(out)
    return result


def wrk_script(directory: Path, body: bytes, delay_ms: float | None = None) -> Path:
    """A wrk script POSTing ``body`` as JSON; with ``delay_ms`` each connection pauses between requests."""
    path = directory / f"post-{delay_ms}.lua"
    lua = [f"wrk.method = 'POST'\nwrk.body = {json.dumps(body.decode())}",
           "wrk.headers['Content-Type'] = 'application/json'", "wrk.headers['Accept'] = 'application/json'"]
    if delay_ms is not None:
        lua.append(f"function delay() return {delay_ms:.3f} end")
    path.write_text("\n".join(lua) + "\n")
    return path


# --- (2)-(3) single-row throughput and latency --------------------------------------------------------------


def bench_single_row(base_dir: Path, scratch: Path, seconds: int, rounds: int, latency: bool = True,
                     baseline: Path | None = None) -> None:
    body = request_bodies(sparse_rows(1))["json"][2]
    script = wrk_script(scratch, body)
    connections = 2 * WORKERS
    print(f"\n(2) single-row JSON requests/s, wrk -t1 -c{connections} -d{seconds}s, {WORKERS} workers, "
          f"gthread x2, rounds interleaved")
    ratios, saturation = [], []
    with contextlib.ExitStack() as stack:
        ours_url, floor_url = stack.enter_context(ours(base_dir)), stack.enter_context(floor())
        baseline_url = None if baseline is None else stack.enter_context(ours(base_dir, root=baseline))
        for r in range(rounds):
            ours_rps = wrk(ours_url, script, connections, seconds)["rps"]
            floor_rps = wrk(floor_url, script, connections, seconds)["rps"]
            ratios.append(ours_rps / floor_rps)
            saturation.append(ours_rps)
            line = f"    round {r}: ours {ours_rps:8.0f}  floor {floor_rps:8.0f}  ratio {ratios[-1]:.2f}"
            if baseline_url is not None:
                baseline_rps = wrk(baseline_url, script, connections, seconds)["rps"]
                line += f"  baseline {baseline_rps:8.0f}  ratio {baseline_rps / floor_rps:.2f}"
            print(line)
        print(f"    median ratio ours/floor: {statistics.median(ratios):.2f}")
        if not latency:
            return
        target = statistics.median(saturation) / 2
        paced_connections = 4 * WORKERS
        period_ms = 1e3 * paced_connections / target
        calibration = wrk(ours_url, wrk_script(scratch, body, period_ms), paced_connections, 2)
        delay_ms = max(0.0, period_ms - calibration["p50"])  # each connection: one request per period
        paced = wrk_script(scratch, body, delay_ms)
        print(f"\n(3) single-row latency at ~50% of saturation ({target:.0f} req/s target; {paced_connections} "
              f"connections, each waiting {delay_ms:.2f} ms after a response)")
        for r in range(rounds):
            result = wrk(ours_url, paced, paced_connections, seconds)
            print(f"    round {r}: {result['rps']:7.0f} req/s  p50 {result['p50']:.2f} ms  "
                  f"p90 {result['p90']:.2f} ms  p99 {result['p99']:.2f} ms")


# --- (4) 1,000-row requests over HTTP ------------------------------------------------------------------------


def csv_body(X: sp.csr_matrix) -> bytes:
    """The rows of X as dense CSV (zeros written as 0)."""
    return "\n".join(",".join(f"{v:g}" for v in row) for row in X.toarray()).encode()


def bench_large_requests(base_dir: Path, repeats: int = 40) -> None:
    print(f"\n(4) 1,000-row requests over HTTP (requests.Session, sequential, {repeats} each; CSV: dense rows of a "
          f"model with feature_dim {CSV_FEATURE_DIM:,}, as 1M-column rows would be 2 MB each)")
    print(f"    {'format':<10} {'body KB':>8} {'median ms':>9} {'p90 ms':>7} {'max ms':>7}")
    csv_dir = base_dir / "csv-model"
    make_model(csv_dir, feature_dim=CSV_FEATURE_DIM)
    cases = [(base_dir, name, request) for name, request in request_bodies(sparse_rows(1000)).items()]
    cases.append((csv_dir, "csv", ("text/csv", "text/csv", csv_body(sparse_rows(1000, feature_dim=CSV_FEATURE_DIM)))))
    for model_dir in (base_dir, csv_dir):
        with ours(model_dir) as url, requests.Session() as session:
            for _, name, (content_type, accept, body) in [case for case in cases if case[0] == model_dir]:
                headers = {"Content-Type": content_type, "Accept": accept}
                times = []
                for _ in range(repeats + 3):
                    t0 = time.perf_counter()
                    response = session.post(url + "/invocations", data=body, headers=headers)
                    times.append(time.perf_counter() - t0)
                    response.raise_for_status()
                times = sorted(times[3:])
                print(f"    {name:<10} {len(body) / 1024:8.0f} {statistics.median(times) * 1e3:9.2f} "
                      f"{times[int(0.9 * len(times))] * 1e3:7.2f} {times[-1] * 1e3:7.2f}")


# --- (5) /ping while every worker is busy ------------------------------------------------------------------


def _timed_post(url: str, body: bytes, headers: dict[str, str], seconds: list[float]) -> None:
    started = time.perf_counter()
    requests.post(url + "/invocations", data=body, headers=headers).raise_for_status()
    seconds.append(time.perf_counter() - started)


def bench_ping_under_load(base_dir: Path) -> None:
    rows = 200_000
    content_type, accept, body = request_bodies(sparse_rows(rows))["recordio"]
    print(f"\n(5) /ping latency while {WORKERS} long requests run ({rows:,}-row RecordIO, "
          f"{len(body) / 2**20:.0f} MB each, one per worker)")
    env = {"SAGEMAKER_MAX_PAYLOAD_IN_MB": "100"}
    for label, extra in (("gthread x2 (ours)", []), ("sync", ["-k", "sync", "--threads", "1"])):
        with ours(base_dir, extra, env) as url:
            done: list[float] = []
            headers = {"Content-Type": content_type, "Accept": accept}
            threads = [threading.Thread(target=_timed_post, args=(url, body, headers, done)) for _ in range(WORKERS)]
            for thread in threads:
                thread.start()
            time.sleep(0.3)
            pings = []
            while len(done) < WORKERS:
                t0 = time.perf_counter()
                requests.get(url + "/ping", timeout=60).raise_for_status()
                pings.append(time.perf_counter() - t0)
                time.sleep(0.05)
            for thread in threads:
                thread.join()
            print(f"    {label:<18} long requests {statistics.median(done):.2f} s; {len(pings)} pings: "
                  f"median {statistics.median(pings) * 1e3:.1f} ms, max {max(pings) * 1e3:.1f} ms")


# --- (7) decoders against library readers ------------------------------------------------------------------


def _median_ms(function: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        function()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def _json_numpy(instances: list[dict]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The library path for sparse JSON instances: CSR arrays with numpy, no checks."""
    tensors = [instance["data"]["features"] for instance in instances]
    indptr = np.cumsum([0] + [len(t["keys"]) for t in tensors])
    keys = np.concatenate([np.asarray(t["keys"], np.int64) for t in tensors])
    values = np.concatenate([np.asarray(t["values"], np.float32) for t in tensors])
    return values, keys, indptr


def bench_decoders(repeats: int = 20) -> None:
    """Our decoders against the readers a user would reach for, on the bodies of section (4)."""
    from sklearn.datasets import load_svmlight_file

    from container.formats.registry import decode

    bodies = request_bodies(sparse_rows(1000))
    labelled = b"\n".join(b"0 " + line for line in bodies["libsvm"][2].split(b"\n"))
    dense_csv = csv_body(sparse_rows(1000, feature_dim=CSV_FEATURE_DIM))
    json_body, lines = bodies["json"][2], bodies["jsonlines"][2]
    cases = [
        ("libsvm", lambda: decode("text/libsvm", labelled, source="b", feature_dim=FEATURE_DIM, with_labels=True),
         "sklearn load_svmlight_file", lambda: load_svmlight_file(io.BytesIO(labelled), n_features=FEATURE_DIM,
                                                                  zero_based=True, dtype=np.float32)),
        ("json", lambda: decode("application/json", json_body, source="b", feature_dim=FEATURE_DIM),
         "json.loads + numpy", lambda: _json_numpy(json.loads(json_body)["instances"])),
        ("json", lambda: decode("application/json", json_body, source="b", feature_dim=FEATURE_DIM),
         "orjson.loads alone", lambda: orjson.loads(json_body)),
        ("jsonlines", lambda: decode("application/jsonlines", lines, source="b", feature_dim=FEATURE_DIM),
         "json.loads per line + numpy", lambda: _json_numpy([json.loads(line) for line in lines.split(b"\n")])),
        ("csv", lambda: decode("text/csv", dense_csv, source="b", feature_dim=CSV_FEATURE_DIM),
         "np.loadtxt", lambda: np.loadtxt(io.BytesIO(dense_csv), delimiter=",", dtype=np.float32, ndmin=2)),
    ]
    print(f"\n(7) decoders alone vs library readers, 1,000-row bodies of (4) (median of {repeats}, interleaved; "
          f"libsvm with a label column for scikit-learn)")
    print(f"    {'format':<10} {'ours ms':>8} {'anchor':<28} {'anchor ms':>9} {'anchor/ours':>11}")
    for name, ours_call, anchor, anchor_call in cases:
        ours_ms, anchor_ms = [], []
        for _ in range(3):
            ours_ms.append(_median_ms(ours_call, repeats))
            anchor_ms.append(_median_ms(anchor_call, repeats))
        mine, theirs = min(ours_ms), min(anchor_ms)
        print(f"    {name:<10} {mine:8.2f} {anchor:<28} {theirs:9.2f} {theirs / mine:11.2f}")


# --- (6) memory: preload vs per-worker ---------------------------------------------------------------------


def _memory_kb(pid: int) -> tuple[int, int]:
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    return int(fields["Rss"].split()[0]), int(fields["Pss"].split()[0])


def _gunicorn_processes(port: int) -> list[int]:
    """Master and workers (forked workers keep the master's command line)."""
    out = subprocess.run(["ps", "-eo", "pid,ppid,args"], capture_output=True, text=True, check=True).stdout
    procs = [line.split(None, 2) for line in out.splitlines()[1:]]
    return [int(pid) for pid, _, args in procs if "gunicorn" in args and f"127.0.0.1:{port}" in args]


def bench_memory(base_dir: Path, scratch: Path) -> None:
    no_preload = scratch / "no_preload_conf.py"
    no_preload.write_text((ROOT / "serve/gunicorn_conf.py").read_text() + "\npreload_app = False\n")
    content_type, _, body = request_bodies(sparse_rows(10))["recordio"]
    print(f"\n(6) memory after warm-up and a request per worker ({WORKERS} workers), MB")
    for label, conf in (("preload_app=True (ours)", "serve/gunicorn_conf.py"), ("per-worker load", str(no_preload))):
        with server(["-c", conf, "serve.wsgi:app"], {"SAGEMAKER_BASE_DIR": str(base_dir)}) as url:
            for _ in range(4 * WORKERS):
                requests.post(url + "/invocations", data=body, headers={"Content-Type": content_type})
            port = int(url.rsplit(":", 1)[1])
            usage = [_memory_kb(pid) for pid in _gunicorn_processes(port)]
            rss = [u[0] / 1024 for u in usage]
            pss = sum(u[1] for u in usage) / 1024
            print(f"    {label:<24} RSS per process {', '.join(f'{r:.0f}' for r in rss)}; PSS total {pss:.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--skip-memory", action="store_true")
    parser.add_argument("--sections", default="1234567", help="which sections to run, e.g. 147 (default all)")
    parser.add_argument("--baseline", type=Path, help="another source tree (e.g. `git archive` of a previous "
                        "commit) whose server joins the rounds of section (2)")
    args = parser.parse_args()
    sections = set(args.sections) - ({"6"} if args.skip_memory else set())
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        base_dir = Path(tmp)
        make_model(base_dir)
        print(f"load average {os.getloadavg()[0]:.2f} (1 min); sections {''.join(sorted(sections))}")
        if "1" in sections:
            bench_handler(base_dir)
        if sections & {"2", "3"}:
            bench_single_row(base_dir, base_dir, args.seconds, args.rounds, latency="3" in sections,
                             baseline=args.baseline)
        if "4" in sections:
            bench_large_requests(base_dir)
        if "5" in sections:
            bench_ping_under_load(base_dir)
        if "6" in sections:
            bench_memory(base_dir, base_dir)
        if "7" in sections:
            bench_decoders()


if __name__ == "__main__":
    main()
