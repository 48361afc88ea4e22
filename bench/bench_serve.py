"""Serving benchmark: our server (serve/gunicorn_conf.py + serve.wsgi) against a floor, and the handler path.

The floor (``floor_app`` below) is a bare gunicorn + Flask app answering /invocations with a constant, run
with the same worker count, worker class and threads, driven by the same client. Model: a random FM
binary classifier with feature_dim 1,000,000 and k = 64 (256 MB of factors). Requests: sparse rows with 40
nonzeros.

    .venv/bin/python -m bench.bench_serve [--seconds 5] [--rounds 3] [--skip-memory]

Client: ``wrk`` 4.1 (Debian package; ``apt-get install wrk``), one thread, keep-alive connections; the
"50% of saturation" run paces 8 connections with wrk's ``delay()`` hook (closed loop with think time,
calibrated to the target rate; the achieved rate is printed).
Large requests and /ping timings use ``requests`` from Python.

Sections: (1) in-process decode + predict + encode rows/s for 1,000-row requests (``FMServable.invoke``);
(2) single-row JSON requests/s, ours vs floor, interleaved rounds; (3) single-row p99 latency at half the
measured saturation; (4) 1,000-row request latency per format over HTTP; (5) /ping latency while every
worker serves a long request, gthread (ours) vs sync workers; (6) memory of preload_app vs per-worker
loading (RSS and PSS summed over master and workers).
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import requests
import scipy.sparse as sp
from flask import Flask, Response

ROOT = Path(__file__).resolve().parents[1]
FEATURE_DIM = 1_000_000
NUM_FACTORS = 64
NNZ_PER_ROW = 40
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


def make_model(base_dir: Path, seed: int = 0) -> None:
    """A random FM classifier (feature_dim 1M, k 64) saved as the artifact under base_dir/model."""
    from algorithm import artifact
    from algorithm.fm import FactorizationMachines

    rng = np.random.default_rng(seed)
    params = {"feature_dim": FEATURE_DIM, "num_factors": NUM_FACTORS, "predictor_type": "binary_classifier"}
    arrays: dict[str, np.ndarray] = {
        "w0": np.array([0.1], dtype=np.float32),
        "w": rng.normal(0, 0.1, FEATURE_DIM).astype(np.float32),
        "V": rng.normal(0, 0.05, (FEATURE_DIM, NUM_FACTORS)).astype(np.float32),
    }
    artifact.save(base_dir / "model", FactorizationMachines.from_artifact({"hyperparameters": params}, arrays))


def sparse_rows(n_rows: int, seed: int = 1) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    indices = np.sort(rng.choice(FEATURE_DIM, size=(n_rows, NNZ_PER_ROW)), axis=1).ravel()
    indptr = np.arange(n_rows + 1) * NNZ_PER_ROW
    X = sp.csr_matrix((np.ones(indices.size, np.float32), indices, indptr), shape=(n_rows, FEATURE_DIM))
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
def server(args: list[str], env: dict[str, str] | None = None) -> Iterator[str]:
    """gunicorn with ``args`` on a free port; yields its base URL once /ping answers 200."""
    port = free_port()
    environ = {**os.environ, "SAGEMAKER_BIND_TO_PORT": str(port), "SAGEMAKER_MODEL_SERVER_WORKERS": str(WORKERS),
               **(env or {})}
    command = [sys.executable, "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "--log-level", "warning", *args]
    process = subprocess.Popen(command, cwd=ROOT, env=environ)
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


def ours(base_dir: Path, extra: list[str] | None = None,
         env: dict[str, str] | None = None) -> contextlib.AbstractContextManager[str]:
    """Our server, as serve.sh starts it (plus ``extra`` gunicorn flags)."""
    return server(["-c", "serve/gunicorn_conf.py", *(extra or []), "serve.wsgi:app"],
                  {"SAGEMAKER_BASE_DIR": str(base_dir), **(env or {})})


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


def bench_single_row(base_dir: Path, scratch: Path, seconds: int, rounds: int) -> None:
    body = request_bodies(sparse_rows(1))["json"][2]
    script = wrk_script(scratch, body)
    connections = 2 * WORKERS
    print(f"\n(2) single-row JSON requests/s, wrk -t1 -c{connections} -d{seconds}s, {WORKERS} workers, "
          f"gthread x2, rounds interleaved")
    ratios, saturation = [], []
    with ours(base_dir) as ours_url, floor() as floor_url:
        for r in range(rounds):
            ours_rps = wrk(ours_url, script, connections, seconds)["rps"]
            floor_rps = wrk(floor_url, script, connections, seconds)["rps"]
            ratios.append(ours_rps / floor_rps)
            saturation.append(ours_rps)
            print(f"    round {r}: ours {ours_rps:8.0f}  floor {floor_rps:8.0f}  ratio {ratios[-1]:.2f}")
        print(f"    median ratio ours/floor: {statistics.median(ratios):.2f}")
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


def bench_large_requests(base_dir: Path, repeats: int = 40) -> None:
    print(f"\n(4) 1,000-row requests over HTTP (requests.Session, sequential, {repeats} each)")
    print(f"    {'format':<10} {'body KB':>8} {'median ms':>9} {'p90 ms':>7} {'max ms':>7}")
    bodies = request_bodies(sparse_rows(1000))
    with ours(base_dir) as url, requests.Session() as session:
        for name, (content_type, accept, body) in bodies.items():
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        base_dir = Path(tmp)
        make_model(base_dir)
        bench_handler(base_dir)
        bench_single_row(base_dir, base_dir, args.seconds, args.rounds)
        bench_large_requests(base_dir)
        bench_ping_under_load(base_dir)
        if not args.skip_memory:
            bench_memory(base_dir, base_dir)


if __name__ == "__main__":
    main()
