"""Where jobs and endpoints run, chosen by ``instance_type`` as the SageMaker SDK does:

- ``local_process``: the repo's ``train`` and ``serve.sh`` as subprocesses (no Docker),
- ``local`` (or ``local_gpu``): the image in the Docker engine,
- ``ml.*``: Amazon SageMaker through boto3.

The local instance types and their engines are listed once, in ``fmwals.backends.engines``.
"""

from __future__ import annotations

from typing import Any

from fmwals import jobs
from fmwals.backends.backend import Backend
from fmwals.backends.engines import engine_for, is_local
from fmwals.backends.local import LocalBackend
from fmwals.backends.sagemaker import SageMakerBackend


def backend_for(instance_type: str | None, session: Any = None) -> Backend:
    """The back end an instance type selects."""
    if instance_type is not None and is_local(instance_type):
        return LocalBackend(engine_for(instance_type))
    if isinstance(instance_type, str) and instance_type.startswith("ml."):
        return SageMakerBackend(session)
    raise ValueError(
        f"instance_type={instance_type!r} is not supported: use 'local_process' (subprocesses), "
        "'local' (Docker) or an Amazon SageMaker type such as 'ml.c5.xlarge'"
    )


def backend_for_endpoint(name: str, session: Any = None) -> Backend:
    """The back end serving an existing endpoint: local if this machine has its record, else SageMaker."""
    if jobs.exists("endpoints", name):
        return backend_for(jobs.read("endpoints", name)["InstanceType"], session)
    return SageMakerBackend(session)


def backend_for_job(name: str, session: Any = None) -> Backend:
    """The back end that ran a training job: local if this machine has its record, else SageMaker."""
    if jobs.exists("jobs", name):
        return backend_for(jobs.read("jobs", name)["ResourceConfig"]["InstanceType"], session)
    return SageMakerBackend(session)
