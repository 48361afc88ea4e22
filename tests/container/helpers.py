"""Small wrappers around the docker CLI for the container tests."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def docker(*args: str, timeout: float = 600, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``docker ARGS``; on failure (with check) the error shows the command's output."""
    result = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def env_args(env: dict[str, str] | None) -> list[str]:
    return [arg for key, value in (env or {}).items() for arg in ("-e", f"{key}={value}")]


def run_train(
    image: str, opt_ml: Path, *, env: dict[str, str] | None = None, timeout: float = 900,
    options: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """``docker run --rm OPTIONS -v OPT_ML:/opt/ml IMAGE train`` (never raises on a non-zero exit)."""
    return docker(
        "run", "--rm", *options, "-v", f"{opt_ml}:/opt/ml", *env_args(env), image, "train", timeout=timeout,
        check=False,
    )


def compiled_kernels(output: str) -> list[str]:
    """Lines numba prints under NUMBA_DEBUG_CACHE=1 for each kernel it had to compile (not in the cache)."""
    return [line for line in output.splitlines() if line.startswith("[cache] data saved")]


def http(
    method: str,
    url: str,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of one HTTP request; HTTP errors are returned, not raised."""
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


class ServeContainer:
    """``docker run -d OPTIONS -p 127.0.0.1:PORT:8080 -v MODEL:/opt/ml/model IMAGE serve``, ready at /ping 200.

    ``command=()`` starts the image with no command (the entry point then chooses).
    """

    def __init__(
        self,
        image: str,
        model_dir: Path,
        *,
        container_port: int = 8080,
        env: dict[str, str] | None = None,
        ready_timeout: float = 240,
        command: tuple[str, ...] = ("serve",),
        options: tuple[str, ...] = (),
    ) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.id = docker(
            "run",
            "-d",
            *options,
            "-p",
            f"127.0.0.1:{self.port}:{container_port}",
            "-v",
            f"{model_dir}:/opt/ml/model",
            *env_args(env),
            image,
            *command,
        ).stdout.strip()
        try:
            self._wait_ready(ready_timeout)
        except BaseException:
            self.remove()
            raise

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = docker("inspect", "--format", "{{.State.Running}}", self.id, check=False).stdout.strip()
            if state != "true":
                raise AssertionError(f"serve container exited before answering /ping:\n{self.logs()}")
            try:
                if http("GET", self.url + "/ping", timeout=2)[0] == 200:
                    return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"/ping did not answer 200 within {timeout:.0f} s:\n{self.logs()}")

    def logs(self, tail: int | None = 5000) -> str:
        """The container's output (the last ``tail`` characters; all of it with None)."""
        result = docker("logs", self.id, check=False)
        output = result.stdout + result.stderr
        return output if tail is None else output[-tail:]

    def stop(self, grace: int = 30) -> float:
        """``docker stop -t GRACE``; returns the seconds it took."""
        started = time.monotonic()
        docker("stop", "-t", str(grace), self.id, timeout=grace + 60)
        return time.monotonic() - started

    def exit_code(self) -> int:
        return int(docker("inspect", "--format", "{{.State.ExitCode}}", self.id).stdout.strip())

    def remove(self) -> None:
        docker("rm", "-f", self.id, check=False)
