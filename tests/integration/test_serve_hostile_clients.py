"""Slow and stalled clients against the real server behind nginx (serve.sh), on the host and in the image.

Hundreds of connections that send their headers, or their headers and 3 bytes of a 1,000-byte body, then stop:
/ping and good invocations are answered as if they were not there (they add under 50 ms to the p99 of /ping
over what the machine shows with none open; without nginx, pings time out), and the server drops each of them
once it has been silent for FMWALS_CLIENT_TIMEOUT seconds.
"""

from __future__ import annotations

import http.client
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import ROOT
from tests.container.helpers import ServeContainer, free_port
from tests.integration.test_serve_http import train_model

CLIENT_TIMEOUT = 3
STALLED = 200
PYTHON_BIN = str(Path(sys.executable).parent)
ENV = {"FMWALS_CLIENT_TIMEOUT": str(CLIENT_TIMEOUT), "SAGEMAKER_MODEL_SERVER_WORKERS": "2"}


class ServeScript:
    """``serve.sh`` as a local process on a free port (nginx in front of gunicorn)."""

    def __init__(self, base_dir: Path, **env: str) -> None:
        self.port = free_port()
        self.log_path = base_dir / f"serve-{self.port}.log"
        environ = {**os.environ, "PATH": f"{PYTHON_BIN}:{os.environ['PATH']}", "SAGEMAKER_BASE_DIR": str(base_dir),
                   "SAGEMAKER_BIND_TO_PORT": str(self.port), **env}
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen([str(ROOT / "serve.sh")], cwd=ROOT, env=environ, stdout=log,
                                            stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log()
            if _ping_status(self.port) == 200:
                return
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"serve.sh not ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        """SIGTERM to serve.sh alone (as docker stop sends it to PID 1); its exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode


def _ping_status(port: int) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/ping")
        return connection.getresponse().status
    except OSError:
        return None
    finally:
        connection.close()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("hostile")
    train_model(base, "binary_classifier")
    return base


@pytest.fixture(scope="module", params=["serve.sh", pytest.param("image", marks=pytest.mark.docker)])
def port(request: pytest.FixtureRequest, model_dir: Path) -> Iterator[int]:
    """The port of the server: serve.sh on the host (needs nginx on PATH), or the image."""
    if request.param == "serve.sh":
        if shutil.which("nginx") is None:
            pytest.skip("nginx is not on PATH (serve.sh then runs gunicorn alone: Debian's nginx package adds it)")
        server = ServeScript(model_dir, **ENV)
        yield server.port
        assert server.stop() == 0, server.log()
    else:
        container = ServeContainer(request.getfixturevalue("docker_image"), model_dir / "model", env=ENV)
        try:
            yield container.port
        finally:
            container.remove()


def _stall(port: int, with_body: bool) -> socket.socket:
    """A connection that sends its headers (and 3 of 1,000 body bytes, with_body) and then nothing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    if with_body:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: text/libsvm\r\n"
                     b"Content-Length: 1000\r\n\r\n3:1")
    else:
        sock.sendall(b"POST /invocations HTTP/1.1\r\nHost: test\r\nContent-Type: text/libsvm\r\n")
    return sock


def _is_open(sock: socket.socket) -> bool:
    sock.setblocking(False)
    try:
        return sock.recv(1) != b""
    except BlockingIOError:
        return True
    except ConnectionError:
        return False
    finally:
        sock.setblocking(True)


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    """True once the server closes ``sock`` (after any answer it sends, such as a 408), within ``seconds``."""
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            if sock.recv(65536) == b"":
                return True
        except TimeoutError:
            return False
        except ConnectionError:
            return True
    return False


def _invoke(port: int, body: bytes) -> tuple[int, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("POST", "/invocations", body, {"Content-Type": "text/libsvm",
                                                          "Accept": "text/csv"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _ping_p99(port: int, count: int = 200) -> float:
    """p99 seconds of ``count`` pings on one kept-alive connection (as a load balancer sends them)."""
    latencies = []
    pinger = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        for _ in range(count):
            begin = time.perf_counter()
            pinger.request("GET", "/ping")
            response = pinger.getresponse()
            response.read()
            assert response.status == 200
            latencies.append(time.perf_counter() - begin)
    finally:
        pinger.close()
    return float(np.percentile(latencies, 99))


def test_stalled_clients_delay_neither_ping_nor_invocations_and_are_dropped_after_the_timeout(port: int) -> None:
    # The same pings with no stalled client open: what this (possibly busy, shared) machine adds by itself.
    quiet_p99 = _ping_p99(port)
    opened = time.monotonic()
    stalled = [_stall(port, with_body=i % 2 == 0) for i in range(STALLED)]
    try:
        assert time.monotonic() - opened < CLIENT_TIMEOUT - 1, "opening the connections took too long to test"
        assert all(_is_open(sock) for sock in stalled), "the server dropped stalled clients before the timeout"

        p99 = _ping_p99(port)
        assert p99 < 0.050 + quiet_p99, (f"/ping p99 {p99 * 1000:.1f} ms with {STALLED} stalled clients open, "
                                         f"{quiet_p99 * 1000:.1f} ms without")
        status, body = _invoke(port, b"3:1 7:0.5\n1:2\n")
        assert status == 200, body
        assert len(body.decode().splitlines()) == 2

        # Each is dropped once silent for CLIENT_TIMEOUT s (a few seconds' margin for a busy machine).
        waited = time.monotonic()
        closed = [_closed_within(sock, CLIENT_TIMEOUT + 5 - (time.monotonic() - waited)) for sock in stalled]
        assert all(closed), f"{closed.count(False)} of {STALLED} stalled connections still open after " \
                            f"{time.monotonic() - opened:.1f} s (FMWALS_CLIENT_TIMEOUT={CLIENT_TIMEOUT})"
    finally:
        for sock in stalled:
            sock.close()
    assert _ping_status(port) == 200
