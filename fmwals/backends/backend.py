"""What the estimator, model, predictor, transformer and tuner need from a place to run.

Every back end speaks SageMaker's request and response shapes (CreateTrainingJob, DescribeTrainingJob, ...),
so the estimator builds one request whatever runs it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from fmwals.inputs import RecordSet, TrainingInput


@dataclass(frozen=True)
class ModelSpec:
    """What an endpoint or a transform job runs: the image, the model artifact (``model.tar.gz`` or model
    directory: a local path, ``file://`` or ``s3://``), the container's environment and the IAM role."""

    image_uri: str
    model_data: str
    env: dict[str, str] = field(default_factory=dict)
    role: str | None = None


class Backend(Protocol):
    """Training jobs, endpoints and transform jobs, in SageMaker's request and response shapes."""

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
        self, name: str, model: ModelSpec, instance_type: str, instance_count: int, port: int | None
    ) -> None:
        """Serve ``model``; ``port`` (local back ends only) fixes the host port."""
        ...

    def invoke_endpoint(self, name: str, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        """The response body and its content type."""
        ...

    def delete_endpoint(self, name: str) -> None: ...

    def create_transform_job(self, request: dict[str, Any], model: ModelSpec) -> None: ...

    def wait_for_transform_job(self, name: str) -> dict[str, Any]: ...
