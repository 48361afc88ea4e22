"""The Amazon SageMaker back end (``ml.*`` instance types): boto3 requests, local data uploaded to S3 first.

Training: CreateTrainingJob / DescribeTrainingJob (+ CloudWatch Logs for the log lines); endpoints:
CreateModel / CreateEndpointConfig / CreateEndpoint / InvokeEndpoint; batch transform: CreateTransformJob.
Local inputs, record sets and model artifacts go to ``s3://<default bucket>/<job name>/...``.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from fmwals.backends.backend import ModelSpec
from fmwals.errors import EndpointError
from fmwals.inputs import RecordSet, TrainingInput, is_local, local_path
from fmwals.session import Session, upload

LOG_GROUP = "/aws/sagemaker/TrainingJobs"
TERMINAL = ("Completed", "Failed", "Stopped")


class SageMakerBackend:
    """Jobs and endpoints on Amazon SageMaker through ``session``'s clients."""

    local = False
    poll_seconds = 10.0

    def __init__(self, session: Any = None) -> None:
        self.session = session if session is not None else Session()

    @property
    def sm(self) -> Any:
        return self.session.sagemaker_client

    def _upload(self, local: str, key_prefix: str) -> str:
        return upload(
            self.session.s3_client, local_path(local), f"s3://{self.session.default_bucket()}/{key_prefix}"
        )

    # --- training ------------------------------------------------------------------------------------

    def stage_inputs(self, channels: dict[str, TrainingInput], job_name: str) -> dict[str, TrainingInput]:
        staged = {}
        for name, channel in channels.items():
            uri = channel.s3_data
            if is_local(uri):
                uri = self._upload(uri, f"{job_name}/input/{name}")
            staged[name] = dataclasses.replace(channel, s3_data=uri)
        return staged

    def stage_record_set(self, record_set: RecordSet, name: str, data_location: str | None) -> RecordSet:
        """Upload the shards under ``data_location`` (default ``s3://<bucket>/sagemaker-record-sets/``) with a
        ``.amazon.manifest`` listing them, as the SDK's ``record_set`` does."""
        location = data_location or f"s3://{self.session.default_bucket()}/sagemaker-record-sets/"
        prefix = upload(
            self.session.s3_client, local_path(record_set.s3_data), f"{location.rstrip('/')}/{name}"
        )
        files = sorted(p.name for p in local_path(record_set.s3_data).iterdir() if p.is_file())
        with tempfile.TemporaryDirectory() as tmp:
            manifest = Path(tmp) / ".amazon.manifest"
            manifest.write_text(json.dumps([{"prefix": prefix}, *files]))
            manifest_uri = upload(self.session.s3_client, manifest, prefix)
        return RecordSet(
            manifest_uri,
            record_set.num_records,
            record_set.feature_dim,
            "ManifestFile",
            record_set.channel,
            record_set.content_type,
        )

    def create_training_job(self, request: dict[str, Any]) -> None:
        if not request.get("RoleArn"):
            raise ValueError("SageMaker training needs role= (an IAM role name or ARN SageMaker can assume)")
        request = {**request, "OutputDataConfig": {**request["OutputDataConfig"]}}
        if not request["OutputDataConfig"]["S3OutputPath"]:
            request["OutputDataConfig"]["S3OutputPath"] = f"s3://{self.session.default_bucket()}/"
        self.sm.create_training_job(**request)

    def describe_training_job(self, name: str) -> dict[str, Any]:
        return dict(self.sm.describe_training_job(TrainingJobName=name))

    def wait_for_training_job(self, name: str, logs: bool) -> dict[str, Any]:
        printed: dict[str, Any] = {}
        while True:
            description = self.describe_training_job(name)
            if logs:
                for line in self._new_log_lines(name, printed):
                    sys.stdout.write(line + "\n")
            if description["TrainingJobStatus"] in TERMINAL:
                return description
            time.sleep(self.poll_seconds)

    def _new_log_lines(self, name: str, tokens: dict[str, Any]) -> list[str]:
        """Log lines of every stream of the job not read yet; ``tokens`` keeps each stream's position."""
        logs = self.session.logs_client
        try:
            streams = logs.describe_log_streams(logGroupName=LOG_GROUP, logStreamNamePrefix=f"{name}/")
        except logs.exceptions.ResourceNotFoundException:
            return []
        lines = []
        for stream in streams.get("logStreams", []):
            stream_name = stream["logStreamName"]
            while True:
                args = {"logGroupName": LOG_GROUP, "logStreamName": stream_name, "startFromHead": True}
                if stream_name in tokens:
                    args["nextToken"] = tokens[stream_name]
                page = logs.get_log_events(**args)
                lines += [event["message"] for event in page.get("events", [])]
                token = page.get("nextForwardToken")
                if token is None or token == tokens.get(stream_name):
                    break
                tokens[stream_name] = token
        return lines

    def stop_training_job(self, name: str) -> None:
        self.sm.stop_training_job(TrainingJobName=name)

    def training_log(self, name: str) -> str:
        return "\n".join(self._new_log_lines(name, {}))

    # --- models and endpoints ------------------------------------------------------------------------

    def _model_url(self, model_data: str, name: str) -> str:
        if not is_local(model_data):
            return model_data
        path = local_path(model_data)
        if path.is_dir():
            with tempfile.TemporaryDirectory() as tmp:
                archive = Path(tmp) / "model.tar.gz"
                with tarfile.open(archive, "w:gz") as tar:
                    for item in sorted(path.iterdir()):
                        tar.add(item, arcname=item.name)
                return self._upload(str(archive), f"{name}/model")
        return self._upload(str(path), f"{name}/model")

    def create_model(self, name: str, model: ModelSpec) -> None:
        if not model.role:
            raise ValueError("a SageMaker model needs role= (an IAM role name or ARN SageMaker can assume)")
        container: dict[str, Any] = {
            "Image": model.image_uri,
            "ModelDataUrl": self._model_url(model.model_data, name),
        }
        if model.env:
            container["Environment"] = dict(model.env)
        self.sm.create_model(ModelName=name, PrimaryContainer=container, ExecutionRoleArn=model.role)

    def create_endpoint(
        self, name: str, model: ModelSpec, instance_type: str, instance_count: int, port: int | None
    ) -> None:
        if port is not None:
            raise ValueError("port= is for the local back ends; SageMaker endpoints are reached by name")
        self.create_model(name, model)
        self.sm.create_endpoint_config(
            EndpointConfigName=name,
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": name,
                    "InitialInstanceCount": int(instance_count),
                    "InstanceType": instance_type,
                    "InitialVariantWeight": 1.0,
                }
            ],
        )
        self.sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
        while True:
            description = self.sm.describe_endpoint(EndpointName=name)
            status = description["EndpointStatus"]
            if status == "InService":
                return
            if status == "Failed":
                raise EndpointError(f"Endpoint {name} failed: {description.get('FailureReason', '')}")
            time.sleep(self.poll_seconds)

    def invoke_endpoint(self, name: str, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        response = self.session.sagemaker_runtime_client.invoke_endpoint(
            EndpointName=name, Body=body, ContentType=content_type, Accept=accept
        )
        return response["Body"].read(), response.get("ContentType", accept)

    def delete_endpoint(self, name: str) -> None:
        config = self.sm.describe_endpoint(EndpointName=name)["EndpointConfigName"]
        self.sm.delete_endpoint(EndpointName=name)
        self.sm.delete_endpoint_config(EndpointConfigName=config)

    # --- batch transform -----------------------------------------------------------------------------

    def create_transform_job(self, request: dict[str, Any], model: ModelSpec) -> None:
        name = request["TransformJobName"]
        self.create_model(request["ModelName"], model)
        source = request["TransformInput"]["DataSource"]["S3DataSource"]
        output = request["TransformOutput"]
        if is_local(source["S3Uri"]):
            source = {**source, "S3Uri": self._upload(source["S3Uri"], f"{name}/input")}
        if not output["S3OutputPath"]:
            output = {**output, "S3OutputPath": f"s3://{self.session.default_bucket()}/{name}/output"}
        transform_input = {**request["TransformInput"], "DataSource": {"S3DataSource": source}}
        self.sm.create_transform_job(
            **{**request, "TransformInput": transform_input, "TransformOutput": output}
        )

    def wait_for_transform_job(self, name: str) -> dict[str, Any]:
        while True:
            description = dict(self.sm.describe_transform_job(TransformJobName=name))
            if description["TransformJobStatus"] in TERMINAL:
                return description
            time.sleep(self.poll_seconds)

    # --- hyperparameter tuning -----------------------------------------------------------------------

    def create_tuning_job(self, request: dict[str, Any]) -> None:
        """CreateHyperParameterTuningJob; the definition's role and output path are checked and defaulted."""
        definition = {**request["TrainingJobDefinition"]}
        if not definition.get("RoleArn"):
            raise ValueError(
                "SageMaker tuning needs role= on the estimator (an IAM role SageMaker can assume)"
            )
        if not definition["OutputDataConfig"]["S3OutputPath"]:
            definition["OutputDataConfig"] = {
                **definition["OutputDataConfig"],
                "S3OutputPath": f"s3://{self.session.default_bucket()}/",
            }
        self.sm.create_hyper_parameter_tuning_job(**{**request, "TrainingJobDefinition": definition})

    def describe_tuning_job(self, name: str) -> dict[str, Any]:
        return dict(self.sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name))

    def wait_for_tuning_job(self, name: str) -> dict[str, Any]:
        while True:
            description = self.describe_tuning_job(name)
            if description["HyperParameterTuningJobStatus"] in TERMINAL:
                return description
            time.sleep(self.poll_seconds)

    def stop_tuning_job(self, name: str) -> None:
        self.sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)

    def tuning_training_jobs(self, name: str) -> list[dict[str, Any]]:
        """Every HyperParameterTrainingJobSummary of the tuning job."""
        summaries: list[dict[str, Any]] = []
        args: dict[str, Any] = {"HyperParameterTuningJobName": name, "MaxResults": 100}
        while True:
            page = self.sm.list_training_jobs_for_hyper_parameter_tuning_job(**args)
            summaries += page.get("TrainingJobSummaries", [])
            if not page.get("NextToken"):
                return summaries
            args["NextToken"] = page["NextToken"]
