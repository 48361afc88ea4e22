"""Where jobs and endpoints run, chosen by ``instance_type`` as the SageMaker SDK does:

- ``local_process``: the repo's ``train`` and ``serve.sh`` as subprocesses (no Docker),
- ``local`` (or ``local_gpu``): the image in the Docker engine,
- ``ml.*``: Amazon SageMaker through boto3.

Every back end speaks SageMaker's request and response shapes (CreateTrainingJob, DescribeTrainingJob, ...),
so the estimator builds one request whatever runs it.
"""

from __future__ import annotations

from typing import Any, Protocol

from fmwals.inputs import RecordSet, TrainingInput

LOCAL_PROCESS = "local_process"
LOCAL_DOCKER = ("local", "local_gpu")


class Backend(Protocol):
    """What the estimator, model, predictor, transformer and tuner need from a place to run."""

    local: bool

    def stage_inputs(self, channels: dict[str, TrainingInput], job_name: str) -> dict[str, TrainingInput]:
        """Channels as this back end can read them (local data uploaded for SageMaker, checked locally)."""
        ...

    def stage_record_set(self, record_set: RecordSet, name: str, data_location: str | None) -> RecordSet:
        """A record set written locally (a ``file://`` directory) made readable here (uploaded for
        SageMaker)."""
        ...

    def create_training_job(self, request: dict[str, Any]) -> None: ...

    def describe_training_job(self, name: str) -> dict[str, Any]: ...

    def wait_for_training_job(self, name: str, logs: bool) -> dict[str, Any]:
        """Block until the job ends (streaming its log when ``logs``); returns the final description."""
        ...

    def stop_training_job(self, name: str) -> None: ...

    def training_log(self, name: str) -> str: ...

    def create_endpoint(
        self,
        name: str,
        image: str,
        model_data: str,
        instance_type: str,
        instance_count: int,
        env: dict[str, str],
        role: str | None,
        port: int | None,
    ) -> None: ...

    def invoke_endpoint(self, name: str, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        """The response body and its content type."""
        ...

    def delete_endpoint(self, name: str) -> None: ...

    def create_transform_job(
        self, request: dict[str, Any], image: str, model_data: str, role: str | None
    ) -> None: ...

    def wait_for_transform_job(self, name: str) -> dict[str, Any]: ...


def is_local(instance_type: str | None) -> bool:
    return instance_type == LOCAL_PROCESS or instance_type in LOCAL_DOCKER


def backend_for(instance_type: str | None, session: Any = None) -> Backend:
    """The back end an instance type selects."""
    if instance_type == LOCAL_PROCESS:
        from fmwals.backends.local import LocalBackend
        from fmwals.backends.local_process import ProcessEngine

        return LocalBackend(ProcessEngine())
    if instance_type in LOCAL_DOCKER:
        from fmwals.backends.local import LocalBackend
        from fmwals.backends.local_docker import DockerEngine

        return LocalBackend(DockerEngine())
    if isinstance(instance_type, str) and instance_type.startswith("ml."):
        from fmwals.backends.sagemaker import SageMakerBackend

        return SageMakerBackend(session)
    raise ValueError(
        f"instance_type={instance_type!r} is not supported: use 'local_process' (subprocesses), "
        "'local' (Docker) or an Amazon SageMaker type such as 'ml.c5.xlarge'"
    )


def backend_for_endpoint(name: str, session: Any = None) -> Backend:
    """The back end serving an existing endpoint: local if this machine has its record, else SageMaker."""
    from fmwals import jobs

    if jobs.exists("endpoints", name):
        return backend_for(jobs.read("endpoints", name)["InstanceType"], session)
    return backend_for("ml.", session)


def backend_for_job(name: str, session: Any = None) -> Backend:
    """The back end that ran a training job: local if this machine has its record, else SageMaker."""
    from fmwals import jobs

    if jobs.exists("jobs", name):
        return backend_for(jobs.read("jobs", name)["ResourceConfig"]["InstanceType"], session)
    return backend_for("ml.", session)
