"""serve.sh supervising nginx and gunicorn: SIGTERM stops both gracefully (a request in flight completes, exit 0);
either one dying stops the other and ends serve.sh with a non-zero status."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests.integration.test_serve_hostile_clients import ServeScript
from tests.integration.test_serve_http import train_model

pytestmark = pytest.mark.skipif(shutil.which("nginx") is None,
                                reason="nginx is not on PATH (serve.sh then execs gunicorn: test_serve_lifecycle)")


def _children(server: ServeScript) -> dict[str, psutil.Process]:
    """serve.sh's nginx master and gunicorn master."""
    found = {}
    for child in psutil.Process(server.process.pid).children():
        command = " ".join(child.cmdline())
        found["nginx" if "nginx" in command else "gunicorn"] = child
    return found


@pytest.fixture
def server(tmp_path: Path) -> ServeScript:
    train_model(tmp_path, "regressor")
    return ServeScript(tmp_path, SAGEMAKER_MODEL_SERVER_WORKERS="1")


def test_sigterm_lets_a_request_in_flight_finish_and_stops_both(server: ServeScript) -> None:
    children = _children(server)
    assert set(children) == {"nginx", "gunicorn"}
    result: dict = {}

    def slow_body():
        for _ in range(10):
            yield b"3:1 7:0.5\n"
            time.sleep(0.2)

    def post() -> None:
        result["response"] = requests.post(f"http://127.0.0.1:{server.port}/invocations", data=slow_body(),
                                           headers={"Content-Type": "text/libsvm", "Accept": "text/csv"}, timeout=60)

    thread = threading.Thread(target=post)
    thread.start()
    time.sleep(0.5)
    assert server.stop() == 0, server.log()
    thread.join()
    assert result["response"].status_code == 200
    assert len(result["response"].text.splitlines()) == 10
    assert not any(child.is_running() and child.status() != psutil.STATUS_ZOMBIE for child in children.values())


# SIGKILL for gunicorn's master (its workers exit when their parent changes); SIGTERM for nginx, whose worker
# would outlive a master killed outright (a container ends with its PID 1 and takes it along).
@pytest.mark.parametrize("victim,survivor,signum", [("gunicorn", "nginx", signal.SIGKILL),
                                                    ("nginx", "gunicorn", signal.SIGTERM)])
def test_either_dying_stops_the_other_with_a_non_zero_exit(server: ServeScript, victim: str, survivor: str,
                                                           signum: int) -> None:
    children = _children(server)
    children[victim].send_signal(signum)
    assert server.process.wait(timeout=60) != 0
    assert not children[survivor].is_running(), server.log()
    assert f"{victim} exited; stopping {survivor}" in server.log()
