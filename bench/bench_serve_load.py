"""Load test of the real server (serve.sh: nginx in front of gunicorn when nginx is on PATH) on loopback.

    .venv/bin/python -m bench.bench_serve_load [--duration 600] [--load 0.8] [--slow 40] [--stalled 100]

1. Saturation: closed loop of ``--connections`` keep-alive connections sending the request mix as fast as the
   server answers, for ``--saturation-seconds``; the answered requests/s is the saturation.
2. Load: the same mix paced at ``--load`` x saturation (open loop: one request every 1/rate s, whatever the
   answers), for ``--duration`` seconds, while ``--slow`` clients upload their bodies in 5 parts 0.5 s apart
   and ``--stalled`` clients send headers and 3 of 1,000 body bytes, then wait for the server to drop them
   (and reconnect), and /ping is timed every 100 ms on a new connection.

The mix: 60 % one-row JSON, 10 % 100-row libsvm, 10 % 100-row JSON, 20 % malformed (bad JSON, a key beyond
feature_dim, NaN, an empty body, an unsupported Content-Type: each must be a 4xx). Reported: answers by status,
5xx (goal 0), requests that got no answer, gunicorn workers replaced (goal 0), /ping p50/p99/max, how long the
server took to drop stalled clients, and the RSS of the server's processes (nginx, gunicorn master and workers)
after the first 10 % of the run against the end (goal: growth under 5 %). The client is asyncio in this process.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import http.client
import json
import multiprocessing
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import psutil
import requests

from bench.bench_serve import free_port, make_model, sparse_rows

ROOT = Path(__file__).resolve().parents[1]
FEATURE_DIM = 100_000
HOST = "127.0.0.1"


def _request_mix(feature_dim: int) -> list[tuple[float, str, str, bytes, bool]]:
    """(weight, name, content type, body, malformed) of each kind of request."""
    one = sparse_rows(1, seed=5, feature_dim=feature_dim)
    hundred = sparse_rows(100, seed=6, feature_dim=feature_dim)
    json_one = json.dumps({"instances": [{"data": {"features": {
        "keys": one.indices.tolist(), "shape": [feature_dim], "values": one.data.tolist()}}}]}).encode()
    libsvm = "\n".join(" ".join(f"{j}:{v:.4f}" for j, v in zip(hundred[i].indices, hundred[i].data, strict=True))
                       for i in range(100)).encode()
    json_hundred = json.dumps({"instances": [
        {"data": {"features": {"keys": hundred[i].indices.tolist(), "shape": [feature_dim],
                               "values": hundred[i].data.tolist()}}} for i in range(100)]}).encode()
    return [
        (0.60, "json 1 row", "application/json", json_one, False),
        (0.10, "libsvm 100 rows", "text/libsvm", libsvm, False),
        (0.10, "json 100 rows", "application/json", json_hundred, False),
        (0.04, "bad json", "application/json", b'{"instances": [{"features": [1, 2', True),
        (0.04, "key beyond feature_dim", "text/libsvm", f"{feature_dim + 5}:1".encode(), True),
        (0.04, "nan", "text/libsvm", b"3:nan 4:1", True),
        (0.04, "empty body", "application/json", b"", True),
        (0.04, "unsupported content type", "image/png", b"\x89PNG", True),
    ]


@dataclass
class Tally:
    statuses: Counter[str] = field(default_factory=Counter)
    by_kind: Counter[tuple[str, int]] = field(default_factory=Counter)
    unexpected: Counter[str] = field(default_factory=Counter)
    no_answer: int = 0
    pings: list[float] = field(default_factory=list)
    ping_failures: int = 0
    stalled_dropped_after: list[float] = field(default_factory=list)
    slow_statuses: Counter[int] = field(default_factory=Counter)


class Pool:
    """At most ``size`` keep-alive connections to the server, opened on demand; requests beyond wait their turn."""

    def __init__(self, port: int, size: int = 64) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self.slots = asyncio.Semaphore(size)

    async def request(self, method: str, path: str, content_type: str | None, body: bytes) -> int:
        async with self.slots:
            reader, writer = self.idle.pop() if self.idle else await asyncio.open_connection(HOST, self.port)
            try:
                status, keep = await _exchange(reader, writer, method, path, content_type, [body])
            except BaseException:
                writer.close()
                raise
            if keep:
                self.idle.append((reader, writer))
            else:
                writer.close()
            return status


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, method: str, path: str,
                    content_type: str | None, parts: list[bytes], pause: float = 0.0) -> tuple[int, bool]:
    """Send one request (its body in ``parts``, ``pause`` s apart); its status and whether to keep the
    connection."""
    body_length = sum(len(p) for p in parts)
    head = f"{method} {path} HTTP/1.1\r\nHost: {HOST}\r\nContent-Length: {body_length}\r\n"
    if content_type:
        head += f"Content-Type: {content_type}\r\n"
    writer.write((head + "\r\n").encode())
    for i, part in enumerate(parts):
        if i and pause:
            await writer.drain()
            await asyncio.sleep(pause)
        writer.write(part)
    await writer.drain()
    header = await reader.readuntil(b"\r\n\r\n")
    lines = header.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    fields = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    await reader.readexactly(int(fields.get("content-length", "0")))
    return status, fields.get("connection", "").lower() != "close"


async def _paced(port: int, mix: list, rate: float, seconds: float, tally: Tally) -> None:
    """One request every 1/rate s for ``seconds`` (open loop), drawn from ``mix`` by weight."""
    pool = Pool(port)
    rng = random.Random(0)
    weights = [m[0] for m in mix]
    tasks: set[asyncio.Task] = set()
    start = time.monotonic()
    i = 0
    while (now := time.monotonic()) - start < seconds:
        due = start + i / rate
        if due > now:
            await asyncio.sleep(due - now)
        _, name, content_type, body, malformed = rng.choices(mix, weights)[0]
        task = asyncio.create_task(_one(pool, name, content_type, body, malformed, tally))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        i += 1
    await asyncio.gather(*tasks)


async def _one(pool: Pool, name: str, content_type: str, body: bytes, malformed: bool, tally: Tally) -> None:
    try:
        status = await asyncio.wait_for(pool.request("POST", "/invocations", content_type, body), 60)
    except (TimeoutError, OSError, asyncio.IncompleteReadError):
        tally.no_answer += 1
        return
    tally.statuses[f"{status // 100}xx"] += 1
    tally.by_kind[(name, status)] += 1
    if (400 <= status < 500) != malformed:
        tally.unexpected[f"{name} -> {status}"] += 1


async def _closed_loop(port: int, mix: list, connections: int, seconds: float) -> float:
    """Requests/s answered by ``connections`` clients that each send the next request on its answer."""
    done = 0
    weights = [m[0] for m in mix]

    async def client(seed: int) -> None:
        nonlocal done
        pool, rng = Pool(port), random.Random(seed)
        while time.monotonic() < deadline:
            _, _, content_type, body, _ = rng.choices(mix, weights)[0]
            await pool.request("POST", "/invocations", content_type, body)
            done += 1

    deadline = time.monotonic() + seconds
    start = time.monotonic()
    await asyncio.gather(*(client(i) for i in range(connections)))
    return done / (time.monotonic() - start)


async def _slow_client(port: int, body: bytes, until: float, tally: Tally) -> None:
    """Uploads a one-row JSON body in 5 parts 0.5 s apart, again and again."""
    size = len(body) // 5 + 1
    parts = [body[i:i + size] for i in range(0, len(body), size)]
    while time.monotonic() < until:
        try:
            reader, writer = await asyncio.open_connection(HOST, port)
            status, _ = await _exchange(reader, writer, "POST", "/invocations", "application/json", parts, 0.5)
            writer.close()
            tally.slow_statuses[status] += 1
        except (OSError, asyncio.IncompleteReadError):
            tally.slow_statuses[0] += 1


async def _stalled_client(port: int, until: float, tally: Tally) -> None:
    """Sends headers and 3 of 1,000 body bytes, waits for the server to drop it, reconnects."""
    while time.monotonic() < until:
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/libsvm\r\n"
                     b"Content-Length: 1000\r\n\r\n3:1")
        await writer.drain()
        opened = time.monotonic()
        with contextlib.suppress(OSError):
            while await reader.read(65536):
                pass
        tally.stalled_dropped_after.append(time.monotonic() - opened)
        writer.close()


def _ping_process(port: int, seconds: float, results: Connection) -> None:
    """/ping on a new connection every 100 ms for ``seconds``, timed in a process of its own (the load's event
    loop would add its own delays); sends back the latencies of the 200s and the number of failures."""
    latencies, failures = [], 0
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        begin = time.perf_counter()
        connection = http.client.HTTPConnection(HOST, port, timeout=2)
        try:
            connection.request("GET", "/ping")
            if connection.getresponse().status == 200:
                latencies.append(time.perf_counter() - begin)
            else:
                failures += 1
        except OSError:
            failures += 1
        finally:
            connection.close()
        time.sleep(0.1)
    results.send((latencies, failures))


# --- the server ---------------------------------------------------------------------------------------------


@contextlib.contextmanager
def serve(base_dir: Path, workers: int, env: dict[str, str]) -> Iterator[tuple[int, subprocess.Popen, Path]]:
    """serve.sh on a free port, once /ping answers 200; its port, process and log file."""
    port = free_port()
    log_path = base_dir / "serve.log"
    environ = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
               "SAGEMAKER_BASE_DIR": str(base_dir), "SAGEMAKER_BIND_TO_PORT": str(port),
               "SAGEMAKER_MODEL_SERVER_WORKERS": str(workers), **env}
    with open(log_path, "wb") as log:
        process = subprocess.Popen([str(ROOT / "serve.sh")], cwd=ROOT, env=environ, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"serve.sh did not start:\n{log_path.read_text()[-3000:]}")
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"http://{HOST}:{port}/ping", timeout=5).status_code == 200:
                    break
            time.sleep(0.2)
        yield port, process, log_path
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _workers(pid: int) -> set[int]:
    """The gunicorn workers: gunicorn processes whose parent is gunicorn too."""
    procs = _tree(pid)
    return {p.pid for p in procs if "gunicorn" in " ".join(p.cmdline())
            and p.parent() is not None and "gunicorn" in " ".join(p.parent().cmdline())}  # type: ignore[union-attr]


def _rss_mb(pid: int) -> float:
    return sum(p.memory_info().rss for p in _tree(pid)) / 2**20


async def _load(port: int, pid: int, mix: list, rate: float, args: argparse.Namespace, tally: Tally,
                rss: list[float]) -> None:
    until = time.monotonic() + args.duration
    one_row = mix[0][3]
    background = [asyncio.create_task(_slow_client(port, one_row, until, tally)) for _ in range(args.slow)]
    background += [asyncio.create_task(_stalled_client(port, until, tally)) for _ in range(args.stalled)]

    async def sample_rss() -> None:
        await asyncio.sleep(args.duration * 0.1)
        rss.append(_rss_mb(pid))

    sampler = asyncio.create_task(sample_rss())
    await _paced(port, mix, rate, args.duration, tally)
    rss.append(_rss_mb(pid))
    await sampler
    for task in background:
        task.cancel()
    await asyncio.gather(*background, return_exceptions=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=600, help="seconds of load (default 600)")
    parser.add_argument("--load", type=float, default=0.8, help="fraction of the saturation rate (default 0.8)")
    parser.add_argument("--saturation-seconds", type=float, default=20)
    parser.add_argument("--connections", type=int, default=8, help="closed-loop clients measuring saturation")
    parser.add_argument("--slow", type=int, default=40, help="clients uploading in parts (default 40)")
    parser.add_argument("--stalled", type=int, default=100, help="clients that stall (default 100)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--client-timeout", type=int, default=10, help="FMWALS_CLIENT_TIMEOUT (default 10)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        base_dir = Path(tmp)
        make_model(base_dir, feature_dim=FEATURE_DIM)
        mix = _request_mix(FEATURE_DIM)
        env = {"FMWALS_CLIENT_TIMEOUT": str(args.client_timeout)}
        with serve(base_dir, args.workers, env) as (port, process, log_path):
            print(f"load average {os.getloadavg()[0]:.2f}; nginx {'on' if _has_nginx(process.pid) else 'NOT'} "
                  f"in front; {args.workers} workers; FMWALS_CLIENT_TIMEOUT={args.client_timeout}")
            saturation = asyncio.run(_closed_loop(port, mix, args.connections, args.saturation_seconds))
            rate = args.load * saturation
            print(f"saturation: {saturation:.0f} req/s ({args.connections} closed-loop connections, "
                  f"{args.saturation_seconds:.0f} s); load: {rate:.0f} req/s for {args.duration:.0f} s with "
                  f"{args.slow} slow and {args.stalled} stalled clients")
            workers_before = _workers(process.pid)
            booted_before = log_path.read_text(errors="replace").count("Booting worker")
            tally, rss = Tally(), []
            started = time.monotonic()
            receiver, sender = multiprocessing.Pipe(duplex=False)
            pinger = multiprocessing.get_context("fork").Process(
                target=_ping_process, args=(port, args.duration, sender))
            pinger.start()
            asyncio.run(_load(port, process.pid, mix, rate, args, tally, rss))
            tally.pings, tally.ping_failures = receiver.recv()
            pinger.join()
            elapsed = time.monotonic() - started
            replaced = len(workers_before - _workers(process.pid))
            booted = log_path.read_text(errors="replace").count("Booting worker") - booted_before
        _report(tally, rss, elapsed, replaced, booted)


def _has_nginx(pid: int) -> bool:
    return any(p.name() == "nginx" for p in _tree(pid))


def _report(tally: Tally, rss: list[float], elapsed: float, replaced: int, booted: int) -> None:
    answered = sum(tally.statuses.values())
    print(f"answered {answered} in {elapsed:.0f} s ({answered / elapsed:.0f} req/s): "
          + ", ".join(f"{k} {v}" for k, v in sorted(tally.statuses.items())))
    print(f"5xx: {tally.statuses.get('5xx', 0)}; no answer: {tally.no_answer}; unexpected status: "
          f"{dict(tally.unexpected) or 'none'}")
    for (name, status), count in sorted(tally.by_kind.items()):
        print(f"    {name:<36} {status}  {count}")
    print(f"slow uploads: {dict(tally.slow_statuses)}")
    dropped = tally.stalled_dropped_after
    if dropped:
        print(f"stalled clients dropped: {len(dropped)}, after {min(dropped):.1f}-{max(dropped):.1f} s "
              f"(median {statistics.median(dropped):.1f} s)")
    pings = np.array(tally.pings) * 1e3
    if pings.size:
        print(f"/ping: {pings.size} answered, {tally.ping_failures} failed or over 2 s; p50 "
              f"{np.percentile(pings, 50):.1f} ms, p99 {np.percentile(pings, 99):.1f} ms, max {pings.max():.1f} ms")
    print(f"workers replaced: {replaced} (workers booted during the load: {booted})")
    if len(rss) == 2:
        print(f"RSS of the server's processes: {rss[0]:.0f} MB at 10 % of the run, {rss[1]:.0f} MB at the end "
              f"({(rss[1] / rss[0] - 1) * 100:+.1f} %)")


if __name__ == "__main__":
    main()
