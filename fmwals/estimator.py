"""Estimators with the SageMaker SDK's interface: the generic ``Estimator`` and, in ``fmwals.algorithms``,
``FactorizationMachines`` and ``WALS``.

Both the SDK v1 argument names of the seed pages (``train_instance_count``, ``train_instance_type``,
``image_name``, ``train_max_run``, ...) and today's v2 names are accepted. Hyperparameters are checked
against the container's schema whenever they are set, with the container's own messages.
"""

from __future__ import annotations

from typing import Any

from container import metrics_log
from fmwals import hyperparams, jobs
from fmwals.analytics import TrainingJobAnalytics
from fmwals.backends import backend_for, backend_for_endpoint, backend_for_job
from fmwals.backends.backend import Backend
from fmwals.images import base_name, default_image
from fmwals.inputs import Inputs, TrainingInput, normalize
from fmwals.model import Model
from fmwals.predictor import Predictor
from fmwals.training_job import TrainingJob
from fmwals.transformer import Transformer
from fmwals.wals_predictor import WALSPredictor

V1_NAMES = {
    "train_instance_count": "instance_count",
    "train_instance_type": "instance_type",
    "image_name": "image_uri",
    "train_max_run": "max_run",
    "train_volume_size": "volume_size",
    "train_volume_kms_key": "volume_kms_key",
    "train_use_spot_instances": "use_spot_instances",
    "train_max_wait": "max_wait",
}
MODEL_CONTENT_TYPE = "application/x-sagemaker-model"
CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"  # where the image reads and writes checkpoints


def translate_v1(kwargs: dict[str, Any]) -> dict[str, Any]:
    """SDK v1 argument names -> v2 names; giving both spellings of one argument is an error."""
    out = dict(kwargs)
    for old, new in V1_NAMES.items():
        if old in out:
            if out.get(new) is not None:
                raise TypeError(f"give either {old} (SDK v1) or {new}, not both")
            out[new] = out.pop(old)
    return out


class Estimator:
    """Trains the image on ``instance_type``'s back end and deploys the result. ``deploy`` returns the
    ``predictor_cls`` of the class (the SDK's generic ``Predictor`` here, whose ``predict`` returns bytes;
    a ``WALSPredictor`` for a WALS job, which has no SDK counterpart)."""

    predictor_cls: type[Predictor] | None = None

    def __init__(
        self,
        image_uri: str | None = None,
        role: str | None = None,
        instance_count: int | None = None,
        instance_type: str | None = None,
        *,
        volume_size: int = 30,
        volume_kms_key: str | None = None,
        max_run: int = 86400,
        input_mode: str = "File",
        output_path: str | None = None,
        output_kms_key: str | None = None,
        base_job_name: str | None = None,
        sagemaker_session: Any = None,
        hyperparameters: dict[str, Any] | None = None,
        tags: list[dict[str, str]] | None = None,
        subnets: list[str] | None = None,
        security_group_ids: list[str] | None = None,
        model_uri: str | None = None,
        model_channel_name: str = "model",
        metric_definitions: list[dict[str, str]] | None = None,
        encrypt_inter_container_traffic: bool = False,
        use_spot_instances: bool = False,
        max_wait: int | None = None,
        checkpoint_s3_uri: str | None = None,
        checkpoint_local_path: str | None = None,
        environment: dict[str, str] | None = None,
        **v1_arguments: Any,
    ) -> None:
        named = translate_v1(
            {
                "image_uri": image_uri,
                "instance_count": instance_count,
                "instance_type": instance_type,
                **v1_arguments,
            }
        )
        extra = set(named) - {
            "image_uri",
            "instance_count",
            "instance_type",
            "max_run",
            "volume_size",
            "volume_kms_key",
            "use_spot_instances",
            "max_wait",
        }
        if extra:
            raise TypeError(f"unexpected argument(s): {', '.join(sorted(extra))}")
        self.image_uri: str = named["image_uri"] or default_image()
        self.role = role
        self.instance_count: int = named["instance_count"] or 1
        self.instance_type: str | None = named["instance_type"]
        self.volume_size = named.get("volume_size", volume_size)
        self.volume_kms_key = named.get("volume_kms_key", volume_kms_key)
        self.max_run: int = named.get("max_run", max_run)
        self.use_spot_instances = named.get("use_spot_instances", use_spot_instances)
        self.max_wait = named.get("max_wait", max_wait)
        if checkpoint_local_path not in (None, CHECKPOINT_LOCAL_PATH, CHECKPOINT_LOCAL_PATH + "/"):
            raise ValueError(f"checkpoint_local_path={checkpoint_local_path!r}: the image reads and writes its "
                             f"checkpoints in {CHECKPOINT_LOCAL_PATH}; leave checkpoint_local_path unset (or set "
                             "it to that)")
        self.checkpoint_s3_uri = checkpoint_s3_uri
        self.checkpoint_local_path = checkpoint_local_path
        if input_mode not in ("File", "Pipe"):
            raise ValueError(f"input_mode={input_mode!r}: expected 'File' or 'Pipe'")
        self.input_mode = input_mode
        self.output_path = output_path
        self.output_kms_key = output_kms_key
        self.base_job_name = base_job_name
        self.sagemaker_session = sagemaker_session
        self.tags = tags
        self.subnets = subnets
        self.security_group_ids = security_group_ids
        self.model_uri = model_uri
        self.model_channel_name = model_channel_name
        self.metric_definitions = metric_definitions
        self.encrypt_inter_container_traffic = encrypt_inter_container_traffic
        self.environment = dict(environment or {})
        self._hyperparameters: dict[str, Any] = {}
        self.latest_training_job: TrainingJob | None = None
        self.endpoint_name: str | None = None
        if hyperparameters:
            self.set_hyperparameters(**hyperparameters)

    # --- hyperparameters -----------------------------------------------------------------------------

    def set_hyperparameters(self, **kwargs: Any) -> None:
        """Set hyperparameters; unknown names and invalid values raise ``InvalidHyperparameterError`` now,
        with the container's message."""
        merged = {**self._hyperparameters, **kwargs}
        hyperparams.check_partial(merged)
        self._hyperparameters = merged

    def hyperparameters(self) -> dict[str, str]:
        """The hyperparameters as the training job receives them (strings)."""
        return hyperparams.serialize_hyperparameters(self._hyperparameters)

    @property
    def algorithm(self) -> str:
        return hyperparams.algorithm_of(self._hyperparameters)

    def training_image_uri(self) -> str:
        return self.image_uri

    train_image = training_image_uri  # the SDK v1 name

    # --- training ------------------------------------------------------------------------------------

    @property
    def backend(self) -> Backend:
        return backend_for(self.instance_type, self.sagemaker_session)

    def _metric_definitions(self) -> list[dict[str, str]]:
        if self.metric_definitions is not None:
            return self.metric_definitions
        predictor_type = self._hyperparameters.get("predictor_type") if self.algorithm == "fm" else None
        return metrics_log.metric_definitions(self.algorithm, predictor_type)

    def _base_name(self) -> str:
        return self.base_job_name or base_name(self.image_uri)

    def training_request(self, job_name: str, channels: dict[str, TrainingInput]) -> dict[str, Any]:
        """The CreateTrainingJob request of a job on ``channels`` (already staged for the back end)."""
        stopping: dict[str, Any] = {"MaxRuntimeInSeconds": int(self.max_run)}
        request: dict[str, Any] = {
            "TrainingJobName": job_name,
            "AlgorithmSpecification": {
                "TrainingImage": self.image_uri,
                "TrainingInputMode": self.input_mode,
                "MetricDefinitions": self._metric_definitions(),
            },
            "HyperParameters": self.hyperparameters(),
            "InputDataConfig": [
                {"ChannelName": name, **channel.config} for name, channel in channels.items()
            ],
            "OutputDataConfig": {"S3OutputPath": self.output_path or ""},
            "ResourceConfig": {
                "InstanceType": self.instance_type,
                "InstanceCount": int(self.instance_count),
                "VolumeSizeInGB": int(self.volume_size),
            },
            "StoppingCondition": stopping,
        }
        if self.role:
            request["RoleArn"] = self.role
        if self.output_kms_key:
            request["OutputDataConfig"]["KmsKeyId"] = self.output_kms_key
        if self.volume_kms_key:
            request["ResourceConfig"]["VolumeKmsKeyId"] = self.volume_kms_key
        if self.environment:
            request["Environment"] = dict(self.environment)
        if self.tags:
            request["Tags"] = list(self.tags)
        if self.subnets and self.security_group_ids:
            request["VpcConfig"] = {
                "Subnets": list(self.subnets),
                "SecurityGroupIds": list(self.security_group_ids),
            }
        if self.encrypt_inter_container_traffic:
            request["EnableInterContainerTrafficEncryption"] = True
        if self.use_spot_instances:
            request["EnableManagedSpotTraining"] = True
            stopping["MaxWaitTimeInSeconds"] = int(self.max_wait or self.max_run)
        if self.checkpoint_s3_uri:
            request["CheckpointConfig"] = {"S3Uri": self.checkpoint_s3_uri}
            if self.checkpoint_local_path:
                request["CheckpointConfig"]["LocalPath"] = self.checkpoint_local_path
        return request

    def fit(
        self, inputs: Inputs = None, wait: bool = True, logs: bool = True, job_name: str | None = None
    ) -> None:
        """Start a training job on ``inputs`` (a path or URI for ``train``, a channel dict, TrainingInput or
        RecordSet) and, with ``wait``, block until it ends (``JobFailedError`` if it fails)."""
        hyperparams.check_complete(self._hyperparameters)
        channels = normalize(inputs)
        if self.model_uri:
            channels[self.model_channel_name] = TrainingInput(
                self.model_uri, content_type=MODEL_CONTENT_TYPE, input_mode="File"
            )
        name = jobs.check_name(job_name) if job_name else jobs.unique_name(self._base_name())
        backend = self.backend
        backend.create_training_job(self.training_request(name, backend.stage_inputs(channels, name)))
        self.latest_training_job = TrainingJob(name, backend)
        if wait:
            self.latest_training_job.wait(logs=logs)

    def _job(self) -> TrainingJob:
        if self.latest_training_job is None:
            raise ValueError("this estimator has no training job yet: call fit() (or attach()) first")
        return self.latest_training_job

    @property
    def model_data(self) -> str | None:
        """Where the trained model is (``file://`` for the local back ends, ``s3://`` on SageMaker)."""
        if self.latest_training_job is None:
            return self.model_uri
        artifacts = self.latest_training_job.describe().get("ModelArtifacts") or {}
        return artifacts.get("S3ModelArtifacts") or None

    @property
    def training_job_analytics(self) -> TrainingJobAnalytics:
        """The latest job's metrics, read from its log with its metric definitions (the SDK's columns)."""
        job = self._job()
        return TrainingJobAnalytics(job.name, backend=job.backend)

    @classmethod
    def attach(
        cls,
        training_job_name: str,
        sagemaker_session: Any = None,
        model_channel_name: str = "model",
        logs: bool = True,
    ) -> Estimator:
        """An estimator bound to an existing training job (local record or SageMaker job); waits for it to
        end if it is still running."""
        backend = backend_for_job(training_job_name, sagemaker_session)
        description = backend.describe_training_job(training_job_name)
        estimator = cls.from_description(description, sagemaker_session, model_channel_name)
        estimator.latest_training_job = TrainingJob(training_job_name, backend)
        if description["TrainingJobStatus"] == "InProgress":
            estimator.latest_training_job.wait(logs=logs)
        return estimator

    @classmethod
    def from_description(
        cls, description: dict[str, Any], sagemaker_session: Any = None, model_channel_name: str = "model"
    ) -> Estimator:
        """An estimator configured like the job ``description`` (DescribeTrainingJob's shape)."""
        spec, resources = description["AlgorithmSpecification"], description["ResourceConfig"]
        definitions = spec.get("MetricDefinitions")
        estimator = cls(
            image_uri=spec["TrainingImage"],
            role=description.get("RoleArn"),
            instance_count=resources["InstanceCount"],
            instance_type=resources["InstanceType"],
            volume_size=resources.get("VolumeSizeInGB", 30),
            input_mode=spec.get("TrainingInputMode", "File"),
            max_run=description.get("StoppingCondition", {}).get("MaxRuntimeInSeconds", 86400),
            output_path=description.get("OutputDataConfig", {}).get("S3OutputPath") or None,
            sagemaker_session=sagemaker_session,
            model_channel_name=model_channel_name,
            environment=description.get("Environment"),
            use_spot_instances=bool(description.get("EnableManagedSpotTraining")),
            max_wait=description.get("StoppingCondition", {}).get("MaxWaitTimeInSeconds"),
            checkpoint_s3_uri=description.get("CheckpointConfig", {}).get("S3Uri"),
            checkpoint_local_path=description.get("CheckpointConfig", {}).get("LocalPath"),
        )
        estimator.set_hyperparameters(**description.get("HyperParameters", {}))
        estimator.metric_definitions = definitions if definitions != estimator._metric_definitions() else None
        return estimator

    # --- models, endpoints, batch transform ----------------------------------------------------------

    def create_model(
        self,
        role: str | None = None,
        image_uri: str | None = None,
        predictor_cls: type[Predictor] | None = None,
        env: dict[str, str] | None = None,
        name: str | None = None,
        image: str | None = None,
        **kwargs: Any,
    ) -> Model:
        """A Model of the latest job's artifact (``image``: the SDK v1 name of ``image_uri``)."""
        model_data = self.model_data
        if model_data is None:
            raise ValueError(
                f"training job {self._job().name} has no model yet (status "
                f"{self._job().describe()['TrainingJobStatus']})"
            )
        return Model(
            image_uri or image or self.image_uri,
            model_data,
            role or self.role,
            predictor_cls or self.predictor_cls or (WALSPredictor if self.algorithm == "wals" else Predictor),
            env,
            name,
            self.sagemaker_session,
        )

    def deploy(
        self,
        initial_instance_count: int | None = None,
        instance_type: str | None = None,
        serializer: Any = None,
        deserializer: Any = None,
        endpoint_name: str | None = None,
        wait: bool = True,
        port: int | None = None,
        model_name: str | None = None,
        **kwargs: Any,
    ) -> Predictor:
        """Serve the latest job's model; the endpoint is named after the job unless ``endpoint_name``."""
        model = self.create_model(name=model_name)
        predictor = model.deploy(
            initial_instance_count or 1,
            instance_type or self.instance_type,
            serializer,
            deserializer,
            endpoint_name or self._job().name,
            wait,
            port,
        )
        self.endpoint_name = model.endpoint_name
        return predictor

    def delete_endpoint(self) -> None:
        """Delete the endpoint ``deploy`` created."""
        if self.endpoint_name is None:
            raise ValueError("this estimator has not deployed an endpoint")
        backend_for_endpoint(self.endpoint_name, self.sagemaker_session).delete_endpoint(self.endpoint_name)
        self.endpoint_name = None

    def transformer(
        self, instance_count: int, instance_type: str, *args: Any, role: str | None = None, **kwargs: Any
    ) -> Transformer:
        """A Transformer running the latest job's model as batch transform jobs; the other arguments are
        ``Transformer``'s."""
        return self.create_model(role=role).transformer(instance_count, instance_type, *args, **kwargs)
