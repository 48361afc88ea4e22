"""Multi-host training on dask.distributed: the cluster of a job with several hosts in ``resourceconfig.json``.

Every host's ``train`` process runs one dask ``Worker`` in-process (one task thread, no nanny) named by its host
name, bound to the address the host name resolves to on the cluster interface (never to every interface, no
dashboard). The first host (the driver) also runs the ``Scheduler`` in-process, waits a bounded time for every
host's worker and drives the job through a ``Cluster``; the other hosts serve as workers until the driver ends
the job (exit 0) or the scheduler is lost (``ClientError`` naming the host: exit 1). docs/distributed.md.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar, cast

from container.config import read_resource_config
from container.errors import ClientError
from container.paths import SageMakerPaths

if TYPE_CHECKING:
    import distributed
    import distributed.comm

log = logging.getLogger("train.cluster")

SCHEDULER_PORT = 8786
WORKER_PORT = 8788
HOST_WAIT_SECONDS = 120.0  # every host's worker must join within this (FMWALS_HOST_WAIT_SECONDS)
WORKER_TTL_SECONDS = 60.0  # a worker silent this long has left the cluster (FMWALS_WORKER_TTL_SECONDS)
POLL_SECONDS = 0.5
# How long after a failed call the driver waits for the scheduler to see which host left (seconds).
LOST_SECONDS = 10.0
JOB_DONE, JOB_FAILED = "done", "failed"

T = TypeVar("T")


@dataclass(frozen=True)
class ClusterSpec:
    """This host's place in the cluster, from ``resourceconfig.json`` (validated by ``read_cluster_spec``)."""

    hosts: tuple[str, ...]
    current_host: str
    interface: str
    address: str
    scheduler_port: int = SCHEDULER_PORT
    worker_port: int = WORKER_PORT

    @property
    def is_driver(self) -> bool:
        """Whether this host drives the job (the first of ``hosts``)."""
        return self.current_host == self.hosts[0]

    @property
    def rank(self) -> int:
        """This host's index in ``hosts``."""
        return self.hosts.index(self.current_host)


@dataclass(frozen=True)
class Cluster:
    """What the driver holds while the job runs: the client, every host's worker address (resourceconfig order,
    the driver's own first) and the host names."""

    client: distributed.Client
    workers: dict[str, str]
    hosts: tuple[str, ...]

    def submit(self, host: str, function: Callable[..., Any], *args: Any) -> distributed.Future:
        """Run ``function(*args)`` as a task on ``host``'s worker, and there only."""
        return self.client.submit(function, *args, workers=[self.workers[host]], allow_other_workers=False,
                                  pure=False)

    def connect(self, host: str) -> distributed.comm.Comm:
        """A connection of its own to ``host``'s worker, for ``call``."""
        from distributed.comm import connect

        return self.client.sync(connect, self.workers[host])

    def call(self, comm: distributed.comm.Comm, op: str, **message: Any) -> Future[Any]:
        """Send ``message`` on ``comm`` to the worker's handler ``op`` (``worker_handler``) and its answer as a
        future for ``results``: straight to that worker, no scheduler or task in between (a round trip costs the
        caller a third of a dask Actor's call). One call at a time per connection."""
        from distributed.core import send_recv

        loop = cast(Any, self.client.loop).asyncio_loop  # (tornado's IOLoop on asyncio: typed without it)
        return asyncio.run_coroutine_threadsafe(send_recv(comm, op=op, **message), loop)

    def each(self, function: Callable[..., T], *args: Any) -> dict[str, T]:
        """``function(*args)`` run on every host's worker at once; the results by host (``results``)."""
        return self.results({host: self.submit(host, function, *args) for host in self.hosts})

    def results(self, futures: dict[str, Any]) -> dict[str, Any]:
        """The result of each host's future (a task's or a ``call``'s), waiting as long as every host stays in
        the cluster. A host that leaves (its process or container died, its network went away: the scheduler drops
        a worker whose connection breaks or that is silent for ``worker_ttl_seconds()``) is a ``ClientError``
        naming it; a ``ClientError`` a task raised is re-raised naming the host it ran on."""
        from distributed.scheduler import KilledWorker

        out = {}
        for host, future in futures.items():
            while True:
                try:
                    out[host] = future.result(timeout=POLL_SECONDS)
                    break
                except TimeoutError:  # still running, or its result lost with a host that left since
                    self.check_members()
                except ClientError as err:
                    raise type(err)(f"On host {host}: {err}") from None
                except KilledWorker:  # the host's worker died while running the task
                    raise self.left([host]) from None
                except Exception:  # a broken connection, "Worker holding Actor was lost", a cancelled future
                    self.name_lost_host(host)
                    raise
        return out

    def left(self, hosts: list[str]) -> ClientError:
        """The error for ``hosts`` that left the cluster during training."""
        return ClientError(f"Host(s) {', '.join(hosts)} left the cluster during training (the process or "
                           "container stopped, or its network went away); see that host's log")

    def name_lost_host(self, host: str) -> None:
        """After a call on ``host`` failed other than by a ClientError: the ClientError naming the hosts that left
        the cluster, once the scheduler has seen them go (within ``LOST_SECONDS``); ``host`` itself when the
        scheduler cannot be asked. Returns when every host is still there (the caller re-raises)."""
        deadline = time.monotonic() + LOST_SECONDS
        while True:
            try:
                self.check_members()
            except ClientError:
                raise
            except Exception:  # the scheduler is gone too: the host whose call broke is the one to name
                raise self.left([host]) from None
            if time.monotonic() >= deadline:
                return
            time.sleep(POLL_SECONDS)

    def check_members(self) -> None:
        """ClientError naming the hosts whose workers have left the cluster, if any."""
        present = {info.get("name") for info in self.client.scheduler_info(n_workers=-1)["workers"].values()}
        gone = [host for host in self.hosts if host not in present]
        if gone:
            raise self.left(gone)


def worker_handler(op: str, handler: Callable[..., Any]) -> None:
    """Serve ``Cluster.call``s of ``op`` on this host's worker with ``handler`` (run in one of its tasks)."""
    from distributed import get_worker

    get_worker().handlers[op] = handler


def _seconds(name: str, default: float) -> float:
    value = os.environ.get(name, "")
    try:
        return float(value) if value else default
    except ValueError:
        raise ClientError(f"Environment variable {name}={value!r} must be a number of seconds") from None


def host_wait_seconds() -> float:
    """How long hosts wait for each other (and for DNS): ``FMWALS_HOST_WAIT_SECONDS``, default 120."""
    return _seconds("FMWALS_HOST_WAIT_SECONDS", HOST_WAIT_SECONDS)


def worker_ttl_seconds() -> float:
    """How long a silent worker stays in the cluster: ``FMWALS_WORKER_TTL_SECONDS``, default 60."""
    return _seconds("FMWALS_WORKER_TTL_SECONDS", WORKER_TTL_SECONDS)


def resolve(host: str, deadline: float, where: str = "") -> str:
    """The IPv4 address of ``host``, retried until ``deadline`` (``time.monotonic()``): DNS for the other hosts
    may lag their start. ClientError naming the host when it never resolves."""
    while True:
        try:
            return str(socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)[0][4][0])
        except OSError as err:
            if time.monotonic() >= deadline:
                raise ClientError(f"Host {host}{where} does not resolve to an IPv4 address ({err}) after waiting "
                                  f"{host_wait_seconds():g} s (FMWALS_HOST_WAIT_SECONDS)") from None
            time.sleep(POLL_SECONDS)


def _interface_networks() -> dict[str, list[ipaddress.IPv4Interface]]:
    """Each network interface's IPv4 addresses with their networks."""
    import psutil

    out: dict[str, list[ipaddress.IPv4Interface]] = {}
    for name, addresses in psutil.net_if_addrs().items():
        for entry in addresses:
            if entry.family == socket.AF_INET and entry.netmask:
                out.setdefault(name, []).append(ipaddress.IPv4Interface(f"{entry.address}/{entry.netmask}"))
    return out


def read_cluster_spec(paths: SageMakerPaths, deadline: float | None = None) -> ClusterSpec:
    """The validated cluster of ``resourceconfig.json``: hosts unique, the current host among them, the
    interface known (when ``network_interface_name`` is absent: the one holding the current host's address),
    the current host resolving to an address on it. ClientError naming the field and the file otherwise.
    Ports: ``FMWALS_SCHEDULER_PORT`` / ``FMWALS_WORKER_PORT``, default 8786 / 8788."""
    path = paths.resource_config_file
    config = read_resource_config(paths)
    hosts = tuple(config.hosts)
    duplicates = sorted({host for host in hosts if hosts.count(host) > 1})
    if duplicates:
        raise ClientError(f"hosts in {path} names {', '.join(duplicates)} more than once: each host must be listed "
                          f"once (hosts: {list(hosts)})")
    if config.current_host not in hosts:
        raise ClientError(f"current_host {config.current_host!r} in {path} is not one of its hosts {list(hosts)}")
    networks = _interface_networks()
    name = config.network_interface_name
    if name is not None and name not in networks:
        raise ClientError(f"network_interface_name {name!r} in {path} is not an interface of this host with an "
                          f"IPv4 address (interfaces: {', '.join(sorted(networks)) or 'none'})")
    deadline = time.monotonic() + host_wait_seconds() if deadline is None else deadline
    address = resolve(config.current_host, deadline, f" (current_host in {path})")
    ip = ipaddress.IPv4Address(address)
    holders = [iface for iface, nets in networks.items() if any(ip in net.network for net in nets)]
    if name is None:
        if not holders:
            raise ClientError(f"current_host {config.current_host!r} in {path} resolves to {address}, which lies on "
                              "no interface of this host")
        name = holders[0]
    elif name not in holders:
        raise ClientError(f"current_host {config.current_host!r} in {path} resolves to {address}, which is not on "
                          f"the network of network_interface_name {name!r} "
                          f"({', '.join(str(net.network) for net in networks[name])})")
    return ClusterSpec(hosts, config.current_host, name, address,
                       int(_seconds("FMWALS_SCHEDULER_PORT", SCHEDULER_PORT)),
                       int(_seconds("FMWALS_WORKER_PORT", WORKER_PORT)))


# ------------------------------------------------------------------------------------------------- engine

_job_end: dict[str, str] = {}  # set on a worker by the driver's last task: how the job ended


def _mark_end(status: str, reason: str) -> None:
    """Task the driver runs on every worker before it closes the cluster."""
    _job_end.update(status=status, reason=reason)


def dask_settings() -> dict[str, Any]:
    """The dask configuration of every host's scheduler, worker and client."""
    return {
        "distributed.scheduler.worker-ttl": f"{worker_ttl_seconds()}s",
        "distributed.comm.timeouts.connect": "10s",
        "distributed.comm.timeouts.tcp": "30s",
        "distributed.worker.daemon": False,
        "distributed.admin.tick.limit": "1h",  # long numba calls hold the GIL: no tick warnings
        "distributed.worker.memory.target": False, "distributed.worker.memory.spill": False,
        "distributed.worker.memory.pause": False, "distributed.worker.memory.terminate": False,
        "distributed.scheduler.allowed-failures": 0,
        # Each host has one core for its training: none of dask's own sampling on it (its profiler every
        # 10 ms, system and memory monitors, work stealing: every task is pinned to its host)
        "distributed.worker.profile.enabled": False,
        "distributed.admin.system-monitor.interval": "10s",
        "distributed.worker.memory.monitor-interval": "10s",
        "distributed.scheduler.work-stealing": False,
        "distributed.admin.tick.interval": "1s",
    }


def _dask_config() -> Any:
    import dask

    return dask.config.set(dask_settings())


def _quiet_dask_logs() -> None:
    """dask's own lines at WARNING and above: the job logs its own cluster lines."""
    for name in ("distributed", "distributed.scheduler", "distributed.worker", "distributed.core",
                 "distributed.nanny", "distributed.comm", "distributed.batched", "distributed.client"):
        logging.getLogger(name).setLevel(logging.WARNING)


class _LoopThread:
    """An asyncio loop on a daemon thread, for the in-process scheduler and worker of the driver."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="dask-loop", daemon=True)
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def _worker(scheduler: str, spec: ClusterSpec, death_timeout: float) -> distributed.Worker:
    """This host's worker (to be awaited on the loop that runs it): one task thread, no memory limits, its
    HTTP endpoint (dask's health routes; no dashboard) on the next port of the same address."""
    from distributed import Worker

    return Worker(scheduler, name=spec.current_host, host=spec.address, port=spec.worker_port, nthreads=1,
                  dashboard=False, dashboard_address=f"{spec.address}:{spec.worker_port + 1}", memory_limit=0,
                  death_timeout=death_timeout, validate=False)


async def _start_driver(spec: ClusterSpec, bound: float) -> tuple[Any, Any]:
    """The scheduler and this host's worker, started on the running loop."""
    from distributed import Scheduler

    scheduler = Scheduler(host=spec.address, port=spec.scheduler_port, dashboard=False,
                          dashboard_address=f"{spec.address}:{spec.scheduler_port + 1}",
                          worker_ttl=worker_ttl_seconds())
    try:
        await scheduler
    except Exception as err:
        await scheduler.close()
        raise ClientError(f"Cannot start the scheduler on {spec.address}:{spec.scheduler_port} (host "
                          f"{spec.current_host}): {err.__cause__ or err}") from None
    worker = _worker(scheduler.address, spec, bound)
    try:
        await worker
    except Exception as err:
        await worker.close()
        await scheduler.close()
        raise ClientError(f"Cannot start the worker of host {spec.current_host} on {spec.address}:"
                          f"{spec.worker_port}: {err.__cause__ or err}") from None
    return scheduler, worker


@contextmanager
def driver(spec: ClusterSpec) -> Iterator[Cluster]:
    """On the first host: the scheduler and this host's worker in-process, a client, every host's worker joined
    within ``host_wait_seconds()`` (else ClientError naming the hosts that did not join), as a ``Cluster``.
    On leaving, every worker learns how the job ended (an exception: failed, with its reason) and the cluster
    closes."""
    from distributed import Client

    _quiet_dask_logs()
    bound = host_wait_seconds()
    with _dask_config():
        loop = _LoopThread()
        try:
            scheduler, worker = loop.run(_start_driver(spec, bound), bound + 30)
        except BaseException:
            loop.stop()
            raise
        client = None
        status, reason = JOB_FAILED, "the first host stopped"
        try:
            log.info("Scheduler listening on %s; waiting up to %g s for the workers of hosts %s",
                     scheduler.address, bound, ", ".join(spec.hosts))
            client = Client(scheduler.address, timeout=bound)  # the default client: distributed.wait uses it
            cluster = Cluster(client, _joined(client, spec.hosts, bound), spec.hosts)
            log.info("Every host joined: %s", ", ".join(f"{h}={a}" for h, a in cluster.workers.items()))
            yield cluster
            status, reason = JOB_DONE, ""
        except BaseException as err:
            reason = " ".join(str(err).split()) or type(err).__name__
            raise
        finally:
            if client is not None:
                _end_job(client, status, reason)
                client.close(timeout=10)
            _close(loop, worker, scheduler)


def _joined(client: distributed.Client, hosts: tuple[str, ...], bound: float) -> dict[str, str]:
    """Host name -> worker address once every host's worker has joined; ClientError naming the missing ones."""
    deadline = time.monotonic() + bound
    while True:
        named = {info.get("name"): address
                 for address, info in client.scheduler_info(n_workers=-1)["workers"].items()}
        missing = [host for host in hosts if host not in named]
        if not missing:
            return {host: named[host] for host in hosts}
        if time.monotonic() >= deadline:
            raise ClientError(f"Host(s) {', '.join(missing)} did not join the cluster within {bound:g} s "
                              "(FMWALS_HOST_WAIT_SECONDS): their training did not start, or cannot reach "
                              f"{hosts[0]} (see their logs)")
        time.sleep(POLL_SECONDS)


def _end_job(client: distributed.Client, status: str, reason: str) -> None:
    """Tell every worker still present how the job ended (bounded: a dead host is not waited for)."""
    try:
        client.run(_mark_end, status, reason, wait=True, on_error="ignore")
    except Exception as err:  # a host already gone: the others still end
        log.warning("Could not tell every host that the job ended: %s", err)


def _close(loop: _LoopThread, worker: Any, scheduler: Any) -> None:
    for server in (worker, scheduler):
        try:
            loop.run(server.close(), 30)
        except Exception as err:
            log.warning("Closing %s: %s", type(server).__name__, err)
    loop.stop()


def serve_as_worker(spec: ClusterSpec) -> None:
    """On every host but the first: this host's worker, joined to the driver's scheduler within
    ``host_wait_seconds()``, serving until the driver ends the job. Returns when the job is done; ClientError
    naming the host when the scheduler cannot be reached, is lost, or the job failed on the first host."""
    _quiet_dask_logs()
    driver_host = spec.hosts[0]
    bound = host_wait_seconds()
    deadline = time.monotonic() + bound
    with _dask_config():
        address = resolve(driver_host, deadline, " (the first of hosts in resourceconfig.json)")
        scheduler = f"tcp://{address}:{spec.scheduler_port}"
        log.info("Host %s joins the scheduler of %s at %s (waiting up to %g s)", spec.current_host, driver_host,
                 scheduler, bound)
        asyncio.run(_serve(scheduler, spec, max(1.0, deadline - time.monotonic())))
    end = dict(_job_end)
    _job_end.clear()
    if end.get("status") == JOB_DONE:
        log.info("The job on %s is done; host %s ends", driver_host, spec.current_host)
        return
    if end.get("status") == JOB_FAILED:
        raise ClientError(f"The job failed on the first host {driver_host}: {end.get('reason')}")
    raise ClientError(f"Host {spec.current_host} lost the scheduler on the first host {driver_host} ({scheduler}) "
                      f"before the job ended: that host stopped or became unreachable (see its log)")


async def _serve(scheduler: str, spec: ClusterSpec, bound: float) -> None:
    worker = _worker(scheduler, spec, bound)
    try:
        await worker
    except (OSError, TimeoutError) as err:
        await worker.close()
        raise ClientError(f"Host {spec.current_host} could not join the scheduler of the first host "
                          f"{spec.hosts[0]} at {scheduler} within {bound:.0f} s (FMWALS_HOST_WAIT_SECONDS): "
                          f"{type(err).__name__}: {err}") from None
    log.info("Worker of host %s listening on %s", spec.current_host, worker.address)
    await worker.finished()
