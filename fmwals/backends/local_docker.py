"""The ``local`` engine: the image in the Docker engine (the ``docker`` Python package), /opt/ml mounted.

Training runs ``train`` with the job's /opt/ml tree mounted at /opt/ml and each File-mode channel mounted
read-only at /opt/ml/input/data/<channel>; serving runs ``serve`` with the model mounted at /opt/ml/model
and container port 8080 published on 127.0.0.1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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
        self, image: str, opt_ml: Path, channels: dict[str, Path], env: dict[str, str], name: str,
        checkpoints: Path | None = None,
    ) -> _Container:
        volumes = {str(opt_ml): {"bind": "/opt/ml", "mode": "rw"}}
        if checkpoints is not None:
            volumes[str(checkpoints)] = {"bind": "/opt/ml/checkpoints", "mode": "rw"}
        for channel, source in channels.items():
            target = f"/opt/ml/input/data/{channel}" + ("" if source.is_dir() else f"/{source.name}")
            volumes[str(source)] = {"bind": target, "mode": "ro"}
        container = self._run(
            f"start training job {name}",
            image,
            "train",
            volumes=volumes,
            environment=env,
            name=f"fmwals-train-{name}",
            labels={"fmwals.training-job": name},
        )
        return _Container(container)

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
