"""Batch transform: every file of an input location through the model, one ``<file>.out`` per file.

``Transformer.transform`` builds a CreateTransformJob request; SageMaker runs it as a transform job, the
local back ends with a temporary endpoint (``fmwals.backends.local_transform``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from fmwals import jobs
from fmwals.backends import backend_for
from fmwals.backends.backend import ModelSpec
from fmwals.errors import JobFailedError
from fmwals.images import base_name

STRATEGIES = {
    "MULTI_RECORD": "MultiRecord",
    "SINGLE_RECORD": "SingleRecord",
    "MultiRecord": "MultiRecord",
    "SingleRecord": "SingleRecord",
}


class Transformer:
    """Runs batch transform jobs of ``model`` (the SDK's Transformer, built by ``estimator.transformer`` or
    ``model.transformer``). SDK arguments with no counterpart here (``output_kms_key``, ``tags``, ...) are
    accepted and ignored."""

    def __init__(
        self,
        model: ModelSpec,
        instance_count: int,
        instance_type: str,
        strategy: str | None = None,
        assemble_with: str | None = None,
        output_path: str | None = None,
        accept: str | None = None,
        env: dict[str, str] | None = None,
        max_concurrent_transforms: int | None = None,
        max_payload: int | None = None,
        *,
        sagemaker_session: Any = None,
        **sdk_only: Any,
    ) -> None:
        if strategy is not None and strategy not in STRATEGIES:
            raise ValueError(f"strategy={strategy!r}: expected MultiRecord or SingleRecord")
        self.model = model
        self.instance_count = instance_count
        self.instance_type = instance_type
        self.strategy = STRATEGIES[strategy] if strategy else None
        self.assemble_with = assemble_with
        self.output_path = output_path
        self.accept = accept
        self.env = dict(env or {})
        self.max_concurrent_transforms = max_concurrent_transforms
        self.max_payload = max_payload
        self.latest_transform_job: str | None = None
        self.backend = backend_for(instance_type, sagemaker_session)

    def transform(
        self,
        data: str,
        data_type: str = "S3Prefix",
        content_type: str | None = None,
        compression_type: str | None = None,
        split_type: str | None = None,
        job_name: str | None = None,
        wait: bool = True,
        logs: bool = True,
    ) -> None:
        """Transform every file under ``data`` (a local path, ``file://`` or ``s3://``).

        ``split_type`` None sends each file whole, ``Line`` line by line, ``RecordIO`` record by record;
        MultiRecord batches records up to ``max_payload`` MB per request.
        """
        name = jobs.check_name(job_name or jobs.unique_name(base_name(self.model.image_uri) + "-transform"))
        source: dict[str, Any] = {"S3DataSource": {"S3DataType": data_type, "S3Uri": data}}
        transform_input: dict[str, Any] = {"DataSource": source}
        for key, value in (
            ("ContentType", content_type),
            ("CompressionType", compression_type),
            ("SplitType", split_type),
        ):
            if value is not None:
                transform_input[key] = value
        output: dict[str, Any] = {"S3OutputPath": self.output_path or ""}
        for key, value in (("Accept", self.accept), ("AssembleWith", self.assemble_with)):
            if value is not None:
                output[key] = value
        environment = {**self.model.env, **self.env}
        request: dict[str, Any] = {
            "TransformJobName": name,
            "ModelName": name,
            "TransformInput": transform_input,
            "TransformOutput": output,
            "TransformResources": {"InstanceType": self.instance_type, "InstanceCount": self.instance_count},
        }
        optional: tuple[tuple[str, Any], ...] = (
            ("BatchStrategy", self.strategy),
            ("MaxPayloadInMB", self.max_payload),
            ("MaxConcurrentTransforms", self.max_concurrent_transforms),
            ("Environment", environment or None),
        )
        for key, value in optional:
            if value is not None:
                request[key] = value
        self.backend.create_transform_job(request, dataclasses.replace(self.model, env=environment))
        self.latest_transform_job = name
        if wait:
            self.wait()

    def wait(self) -> dict[str, Any]:
        """Block until the latest transform job ends; raises ``JobFailedError`` unless it completed."""
        if self.latest_transform_job is None:
            raise ValueError("no transform job started yet: call transform() first")
        description = self.backend.wait_for_transform_job(self.latest_transform_job)
        if description["TransformJobStatus"] != "Completed":
            raise JobFailedError(
                self.latest_transform_job,
                description["TransformJobStatus"],
                description.get("FailureReason", "(no reason given)"),
            )
        self.output_path = description["TransformOutput"]["S3OutputPath"]
        return description
