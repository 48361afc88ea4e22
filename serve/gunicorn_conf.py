"""gunicorn settings (``gunicorn -c serve/gunicorn_conf.py serve.wsgi:app``), from SAGEMAKER_* variables read
by ``serve.settings``: a malformed one stops the server with a message naming it.

- bind ``0.0.0.0:$SAGEMAKER_BIND_TO_PORT`` (default 8080) when gunicorn serves alone; behind nginx, serve.sh
  binds it to a unix socket instead (``--bind``, docs/serving.md).
- workers ``$SAGEMAKER_MODEL_SERVER_WORKERS`` (default: usable CPUs, affinity and cgroup quota).
- ``gthread`` workers with 2 threads. While one thread serves a long invocation, the other answers /ping
  (SageMaker gives /ping 2 s). With sync workers, a ping waits until some worker finishes its request.
  Measured with every worker busy with a 60 MB request: ping median 15 ms with gthread, against 1.2 s with
  sync workers (docs/benchmarks.md, "Serving"). A ping still waits when the other thread is inside one long
  call that holds the GIL (a numba kernel, ``orjson.loads`` of a big body), or when both threads of every
  worker are busy with invocations. gthread also keeps connections alive; sync workers close the connection
  after every response.
- numba threads per worker = usable CPUs // workers (at least 1), exported as ``NUMBA_NUM_THREADS`` before
  numba is imported, so it is every thread's default (``numba.set_num_threads`` is per thread and would
  not reach gthread's request threads); workers x threads <= CPUs.
- ``$NUMBA_CACHE_DIR`` read-only (``docker run --read-only``): the kernels are read through links under the
  temporary directory (``container.numba_cache``), set before numba is imported.
- ``preload_app``: the master loads the model once and forks. The arrays are never written, so they stay
  shared copy-on-write, and N workers cost one model in memory instead of N. Measured with 2 workers and a
  256 MB model: total PSS 440 MB with preload, 705 MB when each worker loads its own copy
  (docs/benchmarks.md, "Serving"). Loading runs no numba code. Each worker warms the kernels after fork, in
  ``post_worker_init``, before it accepts a connection (numba's thread pool must not start before fork).
- ``gc.freeze()`` before fork and after the worker's warm-up: a request that builds many objects (a
  1,000-row JSON body is 7,000 dicts and lists) triggers full collections, which otherwise walk every object
  of numba, scipy and Flask; measured, ``orjson.loads`` of such a body took 9.4 ms with the imports' objects
  in the collector and 4.3 ms with them frozen (3.6 ms with no collection).
- timeout ``$SAGEMAKER_MODEL_SERVER_TIMEOUT`` (default 60 s, 0 for none): gunicorn restarts a worker silent
  for that long; graceful_timeout 25 s, below the 30 s between SageMaker's SIGTERM and SIGKILL, lets in-flight
  requests finish.
"""

from __future__ import annotations

import gc
import os
import sys
from typing import Any

from container.numba_cache import CacheDirError, writable_cache
from serve.settings import ServeSettings

try:
    _settings = ServeSettings.from_env()
except ValueError as error:  # SystemExit passes gunicorn's config loader: the message alone, no traceback
    sys.exit(f"Cannot start the server: {error}")
os.environ.setdefault("NUMBA_NUM_THREADS", str(_settings.numba_threads))  # before anything imports numba
try:
    writable_cache()  # a read-only root filesystem: the image's kernels through links under /tmp
except CacheDirError as error:
    sys.exit(f"Cannot start the server: {error}")

bind = f"0.0.0.0:{_settings.port}"
workers = _settings.workers
worker_class = "gthread"
threads = 2
timeout = _settings.timeout_seconds
graceful_timeout = 25
preload_app = True
worker_tmp_dir = "/dev/shm"
control_socket_disable = True  # no runtime control interface (gunicorn >= 24 writes ~/.gunicorn/*.ctl)


def pre_fork(server: Any, worker: Any) -> None:
    """Freeze the master's objects out of the garbage collector, so that the workers' collections neither
    scan them nor write to their pages (which would copy the pages shared since fork)."""
    gc.freeze()


def post_worker_init(worker: Any) -> None:
    """Compile and run every kernel of the request path in this worker before it serves, then freeze what
    that created: a full collection then scans only objects made by requests."""
    from container.kernel_compilation import logged_compilation
    from serve.wsgi import servable

    with logged_compilation(worker.log, ": /ping answers once every worker is warm"):
        servable.warm_up()
    gc.freeze()
    worker.log.info("worker %s warm (numba threads %s)", worker.pid, os.environ["NUMBA_NUM_THREADS"])
