"""What a round of multi-host FM costs besides training, against what it would cost with the library ways.

    .venv/bin/python -m bench.bench_fm_rounds                 # CTR set's shapes, 2 hosts, sync_every 10
    .venv/bin/python -m bench.bench_fm_rounds --repeats 5

Two parts, each against its anchor in the same run, interleaved, medians:

- **bookkeeping**: a replica's changes of a round's ``Part`` (the hot rows and one slice of the other used rows)
  taken from the table and a combination put back, by ``algorithm._replica_kernels`` against the numpy
  operations they replace (strided copies, a subtraction, an in-place add); the table and its rows as on the CTR
  set (1,000,000 features, k=8, AdaGrad: 18 columns; 5,186 hot and 521,120 used rows; 45 rounds an epoch).
- **transport**: a round trip of a round's bytes each way (0.6 MB) between two processes on their own cores, by
  ``Cluster.call`` (dask's request/reply on a connection kept open to the worker's handler) against a dask Actor's
  method call; the caller's CPU per round trip (the first host's one core also trains).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np

from algorithm import _replica_kernels as kernels

FEATURES, WIDTH, COLUMNS, HOT, USED, ROUNDS = 1_000_000, 18, 9, 5186, 521_120, 45


def _parts() -> list[np.ndarray]:
    cold = USED - HOT
    parts = []
    for i in range(ROUNDS):
        start, stop = HOT + cold * i // ROUNDS, HOT + cold * (i + 1) // ROUNDS
        parts.append(np.array([(0, stop)] if start == HOT else [(0, HOT), (start, stop)], np.int64))
    return parts


def _numpy_round(table: np.ndarray, base: np.ndarray, ranges: np.ndarray, bufs: tuple[np.ndarray, ...]) -> None:
    changes, now, base_rows = bufs
    offset = 0
    for start, stop in ranges:
        now[offset:offset + stop - start] = table[start:stop, :COLUMNS]
        base_rows[offset:offset + stop - start] = base[start:stop, :COLUMNS]
        offset += stop - start
    np.subtract(now, base_rows, out=changes)
    offset = 0
    for start, stop in ranges:
        rows = slice(offset, offset + stop - start)
        block = table[start:stop, :COLUMNS]
        block -= now[rows]
        block += changes[rows]
        base[start:stop, :COLUMNS] = changes[rows]
        offset += stop - start


def _kernel_round(table: np.ndarray, base: np.ndarray, ranges: np.ndarray, bufs: tuple[np.ndarray, ...]) -> None:
    changes, now, base_rows = bufs
    kernels.take_changes(table, base, ranges, now, base_rows, changes)
    kernels.apply_combination(table, base, ranges, now, changes)


def bookkeeping(repeats: int) -> None:
    rng = np.random.default_rng(0)
    table = rng.standard_normal((FEATURES, WIDTH), dtype=np.float32)
    base = table[:USED].copy()
    parts = _parts()
    bufs = {len(p): tuple(np.empty((int((p[:, 1] - p[:, 0]).sum()), COLUMNS), np.float32) for _ in range(3))
            for p in parts}
    runs: dict[str, list[float]] = {"numpy": [], "kernels": []}
    for run in (_numpy_round, _kernel_round):  # warm up (and compile)
        run(table, base, parts[1], bufs[2])
    for _ in range(repeats):
        for name, run in (("numpy", _numpy_round), ("kernels", _kernel_round)):
            started = time.thread_time()
            for part in parts:
                run(table, base, part, bufs[len(part)])
            runs[name].append((time.thread_time() - started) / ROUNDS * 1e3)
    numpy_ms, kernel_ms = (statistics.median(runs[k]) for k in ("numpy", "kernels"))
    print(f"bookkeeping per round (changes taken, combination put back): numpy {numpy_ms:.3f} ms, kernels "
          f"{kernel_ms:.3f} ms: {numpy_ms / kernel_ms:.2f}x", flush=True)


class _Echo:
    """The other host's side: answers a round with a block of the round's size."""

    def __init__(self, rows: int) -> None:
        self.block = np.ones((rows, COLUMNS), np.float32)

    def round(self, update: Any) -> np.ndarray:
        return self.block


def _serve_echo(rows: int, dask_worker: Any) -> None:
    from distributed.protocol import to_serialize

    block = np.ones((rows, COLUMNS), np.float32)

    async def echo(update: Any = None) -> Any:
        return to_serialize(block)

    dask_worker.handlers["bench_echo"] = echo


def transport(repeats: int, calls: int) -> None:
    import asyncio

    import dask
    from distributed import Client, Scheduler
    from distributed.comm import connect
    from distributed.core import send_recv
    from distributed.protocol import to_serialize
    from distributed.utils import LoopRunner

    from container.cluster import dask_settings

    rows = HOT + (USED - HOT) // ROUNDS
    os.sched_setaffinity(0, {0})
    with dask.config.set(dask_settings()):
        runner = LoopRunner(asynchronous=False)
        runner.start()

        async def start() -> Any:
            return await Scheduler(host="127.0.0.1", port=0, dashboard_address=None)

        scheduler = runner.run_sync(start)
        env = dict(os.environ, DASK_INTERNAL_INHERIT_CONFIG=dask.config.serialize(dask.config.global_config))
        other = subprocess.Popen(["taskset", "-c", "1", sys.executable, "-c", (
            "import asyncio, distributed\n"
            "async def main():\n"
            f"    worker = await distributed.Worker({scheduler.address!r}, host='127.0.0.2', nthreads=1)\n"
            "    await worker.finished()\n"
            "asyncio.run(main())")], env=env)
        client = Client(scheduler.address)
        try:
            while not client.scheduler_info()["workers"]:
                time.sleep(0.1)
            (address,) = client.scheduler_info()["workers"]
            client.run(_serve_echo, rows, workers=[address])
            actor = client.submit(_Echo, rows, workers=[address], actor=True).result()
            comm = client.sync(connect, address)
            loop = client.loop.asyncio_loop  # type: ignore[attr-defined]
            update = np.ones((rows, COLUMNS), np.float32)

            def by_call() -> None:
                message = send_recv(comm, op="bench_echo", update=to_serialize(update))
                asyncio.run_coroutine_threadsafe(message, loop).result()

            def by_actor() -> None:
                actor.round(update).result()

            runs: dict[str, list[float]] = {"actor": [], "call": []}
            for warm_up in (by_actor, by_call):
                for _ in range(20):
                    warm_up()
            for _ in range(repeats):
                for name, run in (("actor", by_actor), ("call", by_call)):
                    started = time.process_time()
                    for _ in range(calls):
                        run()
                    runs[name].append((time.process_time() - started) / calls * 1e3)
            actor_ms, call_ms = (statistics.median(runs[k]) for k in ("actor", "call"))
            print(f"transport per round trip ({rows * COLUMNS * 4 / 1e6:.2f} MB each way), the caller's CPU: dask "
                  f"Actor {actor_ms:.3f} ms, Cluster.call {call_ms:.3f} ms: {actor_ms / call_ms:.2f}x", flush=True)
        finally:
            client.close()
            other.terminate()
            other.wait()
            runner.run_sync(scheduler.close)
            runner.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--calls", type=int, default=200, help="round trips per repeat (transport)")
    args = parser.parse_args(argv)
    bookkeeping(args.repeats)
    transport(args.repeats, args.calls)
    return 0


if __name__ == "__main__":
    sys.exit(main())
