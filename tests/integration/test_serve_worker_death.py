"""A gunicorn worker killed (SIGKILL) in the middle of a request: the master replaces it, /ping keeps answering,
and a request in flight on the other worker completes."""

from __future__ import annotations

import re
import signal
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np
import psutil
import pytest
import requests
import scipy.sparse as sp

from tests.integration.test_serve_http import FEATURE_DIM, ServeProcess, libsvm, train_model

PARTS = 30
PAUSE = 0.2  # a 6 s upload: long enough to find its worker and kill it


def _slow_body(body: bytes) -> Iterator[bytes]:
    size = len(body) // PARTS + 1
    for start in range(0, len(body), size):
        yield body[start:start + size]
        time.sleep(PAUSE)


class SlowPost(threading.Thread):
    """A libsvm /invocations whose body arrives over PARTS x PAUSE seconds, on its own connection."""

    def __init__(self, url: str, body: bytes) -> None:
        super().__init__(daemon=True)
        self.url, self.body = url, body
        self.response: requests.Response | None = None
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self.response = requests.post(self.url + "/invocations", data=_slow_body(self.body), timeout=60,
                                          headers={"Content-Type": "text/libsvm", "Accept": "text/csv"})
        except requests.RequestException as error:
            self.error = error


def _connections(worker: psutil.Process, port: int) -> int:
    return sum(1 for c in worker.net_connections(kind="tcp")
               if c.status == psutil.CONN_ESTABLISHED and c.laddr.port == port)


def _wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _ping(url: str) -> bool:
    try:
        return requests.get(url + "/ping", timeout=2).status_code == 200
    except requests.RequestException:
        return False


@pytest.fixture
def server(tmp_path) -> Iterator[ServeProcess]:
    train_model(tmp_path, "regressor")
    process = ServeProcess(tmp_path, SAGEMAKER_MODEL_SERVER_WORKERS="2")
    try:
        yield process
    finally:
        process.stop()


def test_a_worker_killed_mid_request_is_replaced_and_other_requests_are_unaffected(server: ServeProcess) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    master = psutil.Process(server.process.pid)
    workers = master.children()
    assert len(workers) == 2
    rows = sp.random(200, FEATURE_DIM, density=0.3, format="csr", random_state=4, dtype=np.float32)
    body = libsvm(rows)

    # One slow request on each worker: the first on any, then new ones until one lands on the other.
    posts = {}
    for _ in range(20):
        post = SlowPost(server.url, body)
        before = {w.pid: _connections(w, port) for w in workers}
        open_before = sum(before.values())
        post.start()
        _wait_for(lambda: sum(_connections(w, port) for w in workers) > open_before, 10,  # noqa: B023
                  "the request reached no worker")
        owner = next(w for w in workers if _connections(w, port) > before[w.pid])
        posts.setdefault(owner.pid, post)
        if len(posts) == 2:
            break
    assert len(posts) == 2, "every request landed on the same worker"
    victim, survivor = workers
    victim.send_signal(signal.SIGKILL)

    # A liveness bound, not a timing: on a loaded 2-core machine the master's respawn competes for the CPU.
    _wait_for(lambda: _ping(server.url), 15, "/ping did not answer within 15 s of the kill")
    posts[survivor.pid].join(60)
    response = posts[survivor.pid].response
    assert response is not None and response.status_code == 200, posts[survivor.pid].error
    assert len(response.text.splitlines()) == rows.shape[0]
    posts[victim.pid].join(60)
    assert posts[victim.pid].response is None or posts[victim.pid].response.status_code >= 500

    # The master replaces the worker; once the new one is warm, every ping and invocation is answered.
    _wait_for(lambda: len([w for w in master.children() if w.pid != victim.pid]) == 2, 30,
              "the master did not start a new worker")
    replacement = next(w for w in master.children() if w.pid not in (victim.pid, survivor.pid))
    _wait_for(lambda: re.search(rf"worker {replacement.pid} warm", server.log()) is not None, 120,
              f"the new worker did not warm up:\n{server.log()}")
    for _ in range(20):
        assert _ping(server.url)
        assert server.post(libsvm(rows[:5]), "text/libsvm", "text/csv").status_code == 200
    assert master.is_running() and victim.pid not in [w.pid for w in master.children()]
