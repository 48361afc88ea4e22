"""The ``local`` engine: the image in the Docker engine (the ``docker`` Python package), /opt/ml mounted.

Training runs ``train`` with the job's /opt/ml tree mounted at /opt/ml and each File-mode channel mounted
read-only at /opt/ml/input/data/<channel>. A job of several hosts runs one container per host on a network of
its own (``fmwals-<job>``, removed when the job ends), each with the host name ``algo-<i>`` as its hostname
and network alias, so the hosts resolve each other by name as on SageMaker. Serving runs ``serve`` with the
model mounted at /opt/ml/model and container port 8080 published on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fmwals.backends.engine import Channel, HostJob, Shard
from fmwals.backends.hosts import HostsRun
from fmwals.errors import BackendUnavailableError

STOP_GRACE_SECONDS = 30
CONTAINER_PORT = "8080/tcp"


def client() -> Any:
    """A Docker client, or an error saying how to get one."""
    try:
        import docker
    except ImportError:
        raise BackendUnavailableError(
            "instance_type='local' needs the docker package: pip install docker "
            "(or use instance_type='local_process')"
        ) from None
    try:
        engine = docker.from_env()
        engine.ping()
    except docker.errors.DockerException as err:
        raise BackendUnavailableError(
            f"Cannot reach the Docker engine ({err}). Start it (e.g. `sudo service docker start`), point "
            "DOCKER_HOST at it, or use instance_type='local_process' to run without Docker."
        ) from None
    return engine


def _api_error(err: Exception, what: str) -> BackendUnavailableError:
    text = str(err)
    if "port is already allocated" in text or "address already in use" in text:
        return BackendUnavailableError(
            f"Cannot {what}: the port is already in use ({text}). Stop whatever "
            "listens there, or deploy without port= to use a free one."
        )
    return BackendUnavailableError(f"Cannot {what}: {text}")


def _channel_volumes(opt_ml: Path, channel: str, source: Channel) -> dict[str, dict[str, str]]:
    """The read-only bind mounts that show ``source`` as /opt/ml/input/data/<channel>."""
    target = f"/opt/ml/input/data/{channel}"
    if isinstance(source, Shard):
        (opt_ml / "input" / "data" / channel).mkdir(parents=True, exist_ok=True)  # there even if empty
        return {str(f): {"bind": f"{target}/{relative}", "mode": "ro"} for f, relative in source.placements()}
    return {str(source): {"bind": target + ("" if source.is_dir() else f"/{source.name}"), "mode": "ro"}}


def _remove(network: Any) -> None:
    import docker

    with contextlib.suppress(docker.errors.APIError):  # already gone, or a container of another job joined it
        network.remove()


class _Container:
    def __init__(self, container: Any) -> None:
        self.container = container

    def lines(self) -> Iterator[str]:
        pending = b""
        for chunk in self.container.logs(stream=True, follow=True):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.decode(errors="replace") + "\n"
        if pending:
            yield pending.decode(errors="replace") + "\n"

    def terminate(self) -> None:
        self._signal("SIGTERM")

    def kill(self) -> None:
        self._signal("SIGKILL")

    def _signal(self, name: str) -> None:
        import docker

        with contextlib.suppress(docker.errors.APIError):  # it has already stopped
            self.container.kill(signal=name)

    def wait(self) -> int:
        code = int(self.container.wait()["StatusCode"])
        self.container.remove(force=True)
        return code


class DockerEngine:
    """Containers of the image, one per training job and one per endpoint."""

    def __init__(self) -> None:
        self._client: Any = None

    @property
    def docker(self) -> Any:
        if self._client is None:
            self._client = client()
        return self._client

    def check(self, image: str) -> None:
        import docker

        try:
            self.docker.images.get(image)
        except docker.errors.ImageNotFound:
            raise BackendUnavailableError(
                f"Docker image {image!r} not found: build it with `make image IMAGE={image}` in the "
                "repository (or `docker pull` it), or pass image_uri= naming an image you have."
            ) from None

    def _run(self, what: str, image: str, command: str, **options: Any) -> Any:
        """A detached container of ``image`` running ``command``, or an error saying we could not ``what``."""
        import docker

        try:
            return self.docker.containers.run(image, command, detach=True, **options)
        except docker.errors.APIError as err:
            raise _api_error(err, what) from None

    def start_training(
        self, image: str, opt_ml: Path, channels: dict[str, Channel], env: dict[str, str], name: str,
        checkpoints: Path | None = None, host: str | None = None, network: str | None = None,
    ) -> _Container:
        """``train`` in a container; with ``host``, as that host of a multi-host job on ``network``."""
        volumes = {str(opt_ml): {"bind": "/opt/ml", "mode": "rw"}}
        if checkpoints is not None:
            volumes[str(checkpoints)] = {"bind": "/opt/ml/checkpoints", "mode": "rw"}
        for channel, source in channels.items():
            volumes.update(_channel_volumes(opt_ml, channel, source))
        options: dict[str, Any] = {"name": f"fmwals-train-{name}", "labels": {"fmwals.training-job": name}}
        if host is not None and network is not None:
            endpoint = self.docker.api.create_endpoint_config(aliases=[host])
            options.update(
                name=f"fmwals-train-{name}-{host}",
                hostname=host,
                network=network,
                networking_config={network: endpoint},
                labels={"fmwals.training-job": name, "fmwals.host": host},
            )
        container = self._run(f"start training job {name}", image, "train", volumes=volumes, environment=env,
                              **options)
        return _Container(container)

    def host_names(self, count: int) -> tuple[tuple[str, ...], str]:
        return tuple(f"algo-{i}" for i in range(1, count + 1)), "eth0"

    def start_hosts(
        self, image: str, hosts: list[HostJob], env: dict[str, str], name: str, checkpoints: Path | None = None
    ) -> HostsRun:
        """One container per host on the job's own network; the network goes when the last host ends."""
        import docker

        try:
            network = self.docker.networks.create(
                f"fmwals-{name}", driver="bridge", labels={"fmwals.training-job": name}
            )
        except docker.errors.APIError as err:
            raise _api_error(err, f"create the network of training job {name}") from None
        runs: dict[str, Any] = {}
        try:
            for job in hosts:
                runs[job.host] = self.start_training(
                    image, job.opt_ml, job.channels, env, name, checkpoints, host=job.host, network=network.name
                )
        except BaseException:
            for run in runs.values():
                run.kill()
                run.wait()
            _remove(network)
            raise
        return HostsRun(runs, on_exit=lambda: _remove(network))

    def start_serving(
        self, image: str, opt_ml: Path, port: int, env: dict[str, str], name: str, log_path: Path
    ) -> dict[str, Any]:
        container = self._run(
            f"start endpoint {name} on port {port}",
            image,
            "serve",
            environment=env,
            name=f"fmwals-endpoint-{name}",
            volumes={str(opt_ml / "model"): {"bind": "/opt/ml/model", "mode": "ro"}},
            ports={CONTAINER_PORT: ("127.0.0.1", port)},
            labels={"fmwals.endpoint": name},
        )
        return {"ContainerId": container.id}

    def _container(self, record: dict[str, Any]) -> Any:
        import docker

        try:
            return self.docker.containers.get(record["ContainerId"])
        except docker.errors.NotFound:
            return None

    def serving_problem(self, record: dict[str, Any]) -> str | None:
        container = self._container(record)
        if container is None:
            return f"its container {record['ContainerId'][:12]} no longer exists"
        if container.status == "running":
            return None
        code = container.attrs.get("State", {}).get("ExitCode")
        return (
            f"its container {container.short_id} has stopped (status {container.status}, exit code "
            f"{code}); see `docker logs {container.short_id}`"
        )

    def stop_serving(self, record: dict[str, Any]) -> None:
        container = self._container(record)
        if container is not None:
            container.stop(timeout=STOP_GRACE_SECONDS)
            container.remove(force=True)

    def serving_log(self, record: dict[str, Any]) -> str:
        container = self._container(record)
        return "" if container is None else container.logs().decode(errors="replace")
