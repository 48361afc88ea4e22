"""The SageMaker back end: every request checked by botocore against SageMaker's own API model (Stubber with
the exact parameters expected), and every upload made to a real S3-compatible server (moto) on loopback."""

from __future__ import annotations

import datetime as dt
import io
import json
from types import SimpleNamespace

import boto3
import numpy as np
import pytest
from botocore.response import StreamingBody
from botocore.stub import Stubber
from sagemaker.amazon import common as sdk_common

from container import metrics_log
from container.formats.record_pb2 import Record
from container.formats.recordio_framing import frame_records, read_records
from fmwals import FactorizationMachines, JobFailedError, Session
from fmwals.backends.sagemaker import LOG_GROUP, SageMakerBackend
from fmwals.parameter import CategoricalParameter, ContinuousParameter, IntegerParameter
from fmwals.tuner import HyperparameterTuner

from .conftest import CREDENTIALS

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/fm-wals:latest"
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ARN = "arn:aws:sagemaker:us-east-1:123456789012:{}/{}"
LOG_LINES = [
    "#quality_metric: host=algo-1, epoch=0, train binary_classification_accuracy <score>=0.9",
    "#quality_metric: host=algo-1, epoch=1, train binary_classification_accuracy <score>=0.95",
    "#quality_metric: host=algo-1, test binary_classification_accuracy <score>=0.97",
]


@pytest.fixture
def aws(s3, monkeypatch):
    """A Session whose SageMaker, runtime and logs clients are stubbed and whose S3 is the moto server."""
    monkeypatch.setattr(SageMakerBackend, "poll_seconds", 0.0)
    clients = {name: boto3.client(name, **CREDENTIALS) for name in ("sagemaker", "sagemaker-runtime", "logs")}
    stubs = {name: Stubber(client) for name, client in clients.items()}
    for stub in stubs.values():
        stub.activate()
    session = Session(
        sagemaker_client=clients["sagemaker"],
        sagemaker_runtime_client=clients["sagemaker-runtime"],
        s3_client=s3,
        logs_client=clients["logs"],
        default_bucket="test-bucket",
    )
    yield SimpleNamespace(
        session=session, s3=s3, sm=stubs["sagemaker"], runtime=stubs["sagemaker-runtime"], logs=stubs["logs"]
    )
    for stub in stubs.values():
        stub.assert_no_pending_responses()
        stub.deactivate()


def _estimator(session, **kwargs):
    return FactorizationMachines(
        role=ROLE,
        instance_count=1,
        instance_type="ml.c5.xlarge",
        num_factors=4,
        predictor_type="binary_classifier",
        epochs=2,
        image_uri=IMAGE,
        sagemaker_session=session,
        **kwargs,
    )


def _describe(name, status, **extra):
    return {
        "TrainingJobName": name,
        "TrainingJobArn": ARN.format("training-job", name),
        "ModelArtifacts": {"S3ModelArtifacts": f"s3://test-bucket/{name}/output/model.tar.gz"},
        "TrainingJobStatus": status,
        "SecondaryStatus": status,
        "CreationTime": NOW,
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "RoleArn": ROLE,
        "HyperParameters": {
            "num_factors": "4",
            "predictor_type": "binary_classifier",
            "epochs": "2",
            "feature_dim": "8",
        },
        "ResourceConfig": {"InstanceType": "ml.c5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "OutputDataConfig": {"S3OutputPath": "s3://test-bucket/"},
        **extra,
    }


def _expect_logs(aws, name):
    stream = f"{name}/algo-1-1700000000"
    aws.logs.add_response(
        "describe_log_streams",
        {"logStreams": [{"logStreamName": stream}]},
        {"logGroupName": LOG_GROUP, "logStreamNamePrefix": f"{name}/"},
    )
    events = [{"timestamp": 0, "message": line, "ingestionTime": 0} for line in LOG_LINES]
    aws.logs.add_response(
        "get_log_events",
        {"events": events, "nextForwardToken": "f/1"},
        {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True},
    )
    aws.logs.add_response(
        "get_log_events",
        {"events": [], "nextForwardToken": "f/1"},
        {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True, "nextToken": "f/1"},
    )


RECORDIO = "application/x-recordio-protobuf"


def _prediction(score, label):
    """One row of the endpoint's RecordIO answer."""
    record = Record()
    record.label["score"].float32_tensor.values.append(score)
    record.label["predicted_label"].float32_tensor.values.append(label)
    return record


def _rows(n=60, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 8), dtype=np.float32)
    return x, (x[:, 0] > 0.5).astype(np.float32)


def test_record_set_uploads_shards_and_manifest(aws):
    x, y = _rows()
    estimator = _estimator(aws.session, data_location="s3://test-bucket/records/")
    estimator.instance_count = 2
    records = estimator.record_set(x, y)
    assert records.s3_data_type == "ManifestFile" and records.feature_dim == 8 and records.num_records == 60
    key = records.s3_data.removeprefix("s3://test-bucket/")
    manifest = json.loads(aws.s3.get_object(Bucket="test-bucket", Key=key)["Body"].read())
    prefix = manifest[0]["prefix"]
    assert manifest[1:] == ["matrix_0.pbr", "matrix_1.pbr"] and prefix.startswith("s3://test-bucket/records/")
    shard = aws.s3.get_object(
        Bucket="test-bucket", Key=prefix.removeprefix("s3://test-bucket/") + "matrix_1.pbr"
    )
    shard_records = read_records(io.BytesIO(shard["Body"].read()))
    assert len(shard_records) == 30
    assert shard_records[0].features["values"].float32_tensor.values[0] == pytest.approx(x[30, 0])


def test_fit_sends_create_training_job_and_reads_metrics_from_logs(aws):
    x, y = _rows()
    estimator = _estimator(aws.session)
    records = estimator.record_set(x, y)
    name = "fm-job-1"
    aws.sm.add_response(
        "create_training_job",
        {"TrainingJobArn": ARN.format("training-job", name)},
        {
            "TrainingJobName": name,
            "RoleArn": ROLE,
            "AlgorithmSpecification": {
                "TrainingImage": IMAGE,
                "TrainingInputMode": "File",
                "MetricDefinitions": metrics_log.metric_definitions("fm", "binary_classifier"),
            },
            "HyperParameters": {
                "num_factors": "4",
                "predictor_type": "binary_classifier",
                "epochs": "2",
                "feature_dim": "8",
                "mini_batch_size": "20",
            },
            "InputDataConfig": [
                {
                    "ChannelName": "train",
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "ManifestFile",
                            "S3Uri": records.s3_data,
                            "S3DataDistributionType": "ShardedByS3Key",
                        }
                    },
                }
            ],
            "OutputDataConfig": {"S3OutputPath": "s3://test-bucket/"},
            "ResourceConfig": {"InstanceType": "ml.c5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
        },
    )
    aws.sm.add_response("describe_training_job", _describe(name, "InProgress"), {"TrainingJobName": name})
    aws.sm.add_response("describe_training_job", _describe(name, "Completed"), {"TrainingJobName": name})
    estimator.fit(records, mini_batch_size=20, job_name=name, logs=False)
    aws.sm.add_response("describe_training_job", _describe(name, "Completed"), {"TrainingJobName": name})
    assert estimator.model_data == f"s3://test-bucket/{name}/output/model.tar.gz"
    spec = {"TrainingImage": IMAGE, "TrainingInputMode": "File",
            "MetricDefinitions": metrics_log.metric_definitions("fm", "binary_classifier")}
    aws.sm.add_response("describe_training_job", _describe(name, "Completed", AlgorithmSpecification=spec),
                        {"TrainingJobName": name})
    _expect_logs(aws, name)
    metrics = estimator.training_job_analytics.metrics()
    assert metrics["train:binary_classification_accuracy:epoch"] == [0.9, 0.95]
    assert metrics["test:binary_classification_accuracy"] == [0.97]


def test_spot_training_with_checkpoints_sends_checkpoint_config_and_max_wait(aws):
    x, y = _rows()
    estimator = _estimator(aws.session, use_spot_instances=True, max_run=3600, max_wait=7200,
                           checkpoint_s3_uri="s3://test-bucket/checkpoints/fm",
                           checkpoint_local_path="/opt/ml/checkpoints")
    records = estimator.record_set(x, y)
    name = "fm-spot-1"
    aws.sm.add_response(
        "create_training_job",
        {"TrainingJobArn": ARN.format("training-job", name)},
        {
            "TrainingJobName": name,
            "RoleArn": ROLE,
            "AlgorithmSpecification": {
                "TrainingImage": IMAGE,
                "TrainingInputMode": "File",
                "MetricDefinitions": metrics_log.metric_definitions("fm", "binary_classifier"),
            },
            "HyperParameters": {"num_factors": "4", "predictor_type": "binary_classifier", "epochs": "2",
                                "feature_dim": "8", "mini_batch_size": "20"},
            "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
                "S3DataType": "ManifestFile", "S3Uri": records.s3_data,
                "S3DataDistributionType": "ShardedByS3Key"}}}],
            "OutputDataConfig": {"S3OutputPath": "s3://test-bucket/"},
            "ResourceConfig": {"InstanceType": "ml.c5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200},
            "EnableManagedSpotTraining": True,
            "CheckpointConfig": {"S3Uri": "s3://test-bucket/checkpoints/fm", "LocalPath": "/opt/ml/checkpoints"},
        },
    )
    completed = _describe(name, "Completed", EnableManagedSpotTraining=True,
                          CheckpointConfig={"S3Uri": "s3://test-bucket/checkpoints/fm"},
                          StoppingCondition={"MaxRuntimeInSeconds": 3600, "MaxWaitTimeInSeconds": 7200})
    aws.sm.add_response("describe_training_job", completed, {"TrainingJobName": name})
    estimator.fit(records, mini_batch_size=20, job_name=name, logs=False)
    aws.sm.add_response("describe_training_job", completed, {"TrainingJobName": name})
    attached = FactorizationMachines.attach(name, sagemaker_session=aws.session)
    assert (attached.use_spot_instances, attached.max_wait, attached.checkpoint_s3_uri) == (
        True, 7200, "s3://test-bucket/checkpoints/fm")


def test_a_checkpoint_local_path_the_image_does_not_read_is_refused():
    with pytest.raises(ValueError, match="the image reads and writes its checkpoints in /opt/ml/checkpoints"):
        FactorizationMachines(role=ROLE, instance_count=1, instance_type="ml.c5.xlarge", num_factors=4,
                              predictor_type="regressor", checkpoint_s3_uri="s3://b/c",
                              checkpoint_local_path="/tmp/checkpoints")


def test_local_inputs_are_uploaded_and_a_failure_reason_is_raised(aws, tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "part-0.csv").write_text("1,0.5,0.25\n")
    estimator = _estimator(aws.session, output_path="s3://test-bucket/out")
    estimator.set_hyperparameters(feature_dim=2)
    name = "fm-job-2"
    aws.sm.add_response(
        "create_training_job",
        {"TrainingJobArn": ARN.format("training-job", name)},
        {
            "TrainingJobName": name,
            "RoleArn": ROLE,
            "AlgorithmSpecification": {
                "TrainingImage": IMAGE,
                "TrainingInputMode": "File",
                "MetricDefinitions": metrics_log.metric_definitions("fm", "binary_classifier"),
            },
            "HyperParameters": {
                "num_factors": "4",
                "predictor_type": "binary_classifier",
                "epochs": "2",
                "feature_dim": "2",
            },
            "InputDataConfig": [
                {
                    "ChannelName": "train",
                    "ContentType": "text/csv",
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri": f"s3://test-bucket/{name}/input/train/",
                            "S3DataDistributionType": "FullyReplicated",
                        }
                    },
                }
            ],
            "OutputDataConfig": {"S3OutputPath": "s3://test-bucket/out"},
            "ResourceConfig": {"InstanceType": "ml.c5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
        },
    )
    reason = "AlgorithmError: num_factors=4 is too large for feature_dim=2"
    aws.sm.add_response(
        "describe_training_job", _describe(name, "Failed", FailureReason=reason), {"TrainingJobName": name}
    )
    from fmwals import TrainingInput

    with pytest.raises(JobFailedError, match="too large for feature_dim=2"):
        estimator.fit(
            {"train": TrainingInput(str(tmp_path / "data"), content_type="text/csv")},
            job_name=name,
            logs=False,
        )
    body = aws.s3.get_object(Bucket="test-bucket", Key=f"{name}/input/train/part-0.csv")["Body"].read()
    assert body == b"1,0.5,0.25\n"


def test_deploy_predict_delete(aws, tmp_path):
    name = "fm-job-3"
    aws.sm.add_response("describe_training_job", _describe(name, "Completed"), {"TrainingJobName": name})
    estimator = FactorizationMachines.attach(name, sagemaker_session=aws.session)
    assert estimator.hyperparameters()["num_factors"] == "4" and estimator.instance_type == "ml.c5.xlarge"
    aws.sm.add_response("describe_training_job", _describe(name, "Completed"), {"TrainingJobName": name})
    aws.sm.add_response(
        "create_model",
        {"ModelArn": ARN.format("model", name)},
        {
            "ModelName": name,
            "ExecutionRoleArn": ROLE,
            "PrimaryContainer": {
                "Image": IMAGE,
                "ModelDataUrl": f"s3://test-bucket/{name}/output/model.tar.gz",
            },
        },
    )
    aws.sm.add_response(
        "create_endpoint_config",
        {"EndpointConfigArn": ARN.format("endpoint-config", name)},
        {
            "EndpointConfigName": name,
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": name,
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                    "InitialVariantWeight": 1.0,
                }
            ],
        },
    )
    aws.sm.add_response(
        "create_endpoint",
        {"EndpointArn": ARN.format("endpoint", name)},
        {"EndpointName": name, "EndpointConfigName": name},
    )
    endpoint = {
        "EndpointName": name,
        "EndpointArn": ARN.format("endpoint", name),
        "EndpointConfigName": name,
        "CreationTime": NOW,
        "LastModifiedTime": NOW,
    }
    aws.sm.add_response(
        "describe_endpoint", {**endpoint, "EndpointStatus": "Creating"}, {"EndpointName": name}
    )
    aws.sm.add_response(
        "describe_endpoint", {**endpoint, "EndpointStatus": "InService"}, {"EndpointName": name}
    )
    predictor = estimator.deploy(1, "ml.m5.large")
    x, _ = _rows(2)
    request = io.BytesIO()
    sdk_common.write_numpy_to_dense_tensor(request, x)  # what the SDK's FactorizationMachinesPredictor sends
    answer = frame_records(_prediction(score, label).SerializeToString() for score, label in ((0.8, 1), (0.1, 0)))
    aws.runtime.add_response(
        "invoke_endpoint",
        {"Body": StreamingBody(io.BytesIO(answer), len(answer)), "ContentType": RECORDIO},
        {"EndpointName": name, "Body": request.getvalue(), "ContentType": RECORDIO, "Accept": RECORDIO},
    )
    records = predictor.predict(x)
    assert [r.label["score"].float32_tensor.values[0] for r in records] == pytest.approx([0.8, 0.1])
    assert [r.label["predicted_label"].float32_tensor.values[0] for r in records] == [1.0, 0.0]
    aws.sm.add_response(
        "describe_endpoint", {**endpoint, "EndpointStatus": "InService"}, {"EndpointName": name}
    )
    aws.sm.add_response("delete_endpoint", {}, {"EndpointName": name})
    aws.sm.add_response("delete_endpoint_config", {}, {"EndpointConfigName": name})
    estimator.delete_endpoint()


def test_transform_uploads_input_and_creates_the_job(aws, tmp_path):
    name = "fm-job-4"
    aws.sm.add_response("describe_training_job", _describe(name, "Completed"), {"TrainingJobName": name})
    estimator = FactorizationMachines.attach(name, sagemaker_session=aws.session)
    (tmp_path / "batch").mkdir()
    (tmp_path / "batch" / "rows.csv").write_text("0.1,0.2\n0.3,0.4\n")
    aws.sm.add_response("describe_training_job", _describe(name, "Completed"), {"TrainingJobName": name})
    transformer = estimator.transformer(
        1, "ml.m5.large", strategy="MULTI_RECORD", assemble_with="Line", accept="text/csv"
    )
    job = "fm-transform-1"
    aws.sm.add_response(
        "create_model",
        {"ModelArn": ARN.format("model", job)},
        {
            "ModelName": job,
            "ExecutionRoleArn": ROLE,
            "PrimaryContainer": {
                "Image": IMAGE,
                "ModelDataUrl": f"s3://test-bucket/{name}/output/model.tar.gz",
            },
        },
    )
    aws.sm.add_response(
        "create_transform_job",
        {"TransformJobArn": ARN.format("transform-job", job)},
        {
            "TransformJobName": job,
            "ModelName": job,
            "BatchStrategy": "MultiRecord",
            "TransformInput": {
                "DataSource": {
                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://test-bucket/{job}/input/"}
                },
                "ContentType": "text/csv",
                "SplitType": "Line",
            },
            "TransformOutput": {
                "S3OutputPath": f"s3://test-bucket/{job}/output",
                "Accept": "text/csv",
                "AssembleWith": "Line",
            },
            "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
        },
    )
    described = {
        "TransformJobName": job,
        "TransformJobArn": ARN.format("transform-job", job),
        "ModelName": job,
        "TransformJobStatus": "Completed",
        "CreationTime": NOW,
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://test-bucket/{job}/input/"}
            }
        },
        "TransformOutput": {"S3OutputPath": f"s3://test-bucket/{job}/output"},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
    }
    aws.sm.add_response("describe_transform_job", described, {"TransformJobName": job})
    transformer.transform(str(tmp_path / "batch"), content_type="text/csv", split_type="Line", job_name=job)
    assert transformer.output_path == f"s3://test-bucket/{job}/output"
    body = aws.s3.get_object(Bucket="test-bucket", Key=f"{job}/input/rows.csv")["Body"].read()
    assert body == b"0.1,0.2\n0.3,0.4\n"


def test_tuner_creates_the_tuning_job_and_reads_results(aws):
    x, y = _rows()
    estimator = _estimator(aws.session)
    records = estimator.record_set(x, y)
    tuner = HyperparameterTuner(
        estimator,
        "test:binary_classification_accuracy",
        {
            "factors_lr": ContinuousParameter(1e-4, 1e-1, "Logarithmic"),
            "num_factors": IntegerParameter(2, 16),
            "optimizer": CategoricalParameter(["adam", "sgd"]),
        },
        max_jobs=4,
        max_parallel_jobs=2,
        early_stopping_type="Auto",
        random_seed=7,
    )
    name = "fm-tuning-1"
    definition = {
        "StaticHyperParameters": {"predictor_type": "binary_classifier", "epochs": "2", "feature_dim": "8"},
        "AlgorithmSpecification": {
            "TrainingImage": IMAGE,
            "TrainingInputMode": "File",
            "MetricDefinitions": metrics_log.metric_definitions("fm", "binary_classifier"),
        },
        "RoleArn": ROLE,
        "InputDataConfig": [
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "ManifestFile",
                        "S3Uri": records.s3_data,
                        "S3DataDistributionType": "ShardedByS3Key",
                    }
                },
            }
        ],
        "OutputDataConfig": {"S3OutputPath": "s3://test-bucket/"},
        "ResourceConfig": {"InstanceType": "ml.c5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 30},
        "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
    }
    config = {
        "Strategy": "Bayesian",
        "HyperParameterTuningJobObjective": {
            "Type": "Maximize",
            "MetricName": "test:binary_classification_accuracy",
        },
        "ResourceLimits": {"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 2},
        "ParameterRanges": {
            "ContinuousParameterRanges": [
                {"Name": "factors_lr", "MinValue": "0.0001", "MaxValue": "0.1", "ScalingType": "Logarithmic"}
            ],
            "IntegerParameterRanges": [
                {"Name": "num_factors", "MinValue": "2", "MaxValue": "16", "ScalingType": "Auto"}
            ],
            "CategoricalParameterRanges": [{"Name": "optimizer", "Values": ["adam", "sgd"]}],
        },
        "TrainingJobEarlyStoppingType": "Auto",
        "RandomSeed": 7,
    }
    aws.sm.add_response(
        "create_hyper_parameter_tuning_job",
        {"HyperParameterTuningJobArn": ARN.format("hyper-parameter-tuning-job", name)},
        {
            "HyperParameterTuningJobName": name,
            "HyperParameterTuningJobConfig": config,
            "TrainingJobDefinition": definition,
        },
    )
    counters = {"TrainingJobStatusCounters": {"Completed": 2}, "ObjectiveStatusCounters": {"Succeeded": 2}}
    best = {
        "TrainingJobName": "fm-tuning-1-002-abcdef12",
        "TrainingJobArn": ARN.format("training-job", "b"),
        "CreationTime": NOW,
        "TrainingJobStatus": "Completed",
        "TunedHyperParameters": {"num_factors": "8"},
        "FinalHyperParameterTuningJobObjectiveMetric": {
            "MetricName": "test:binary_classification_accuracy",
            "Value": 0.97,
        },
    }
    described = {
        "HyperParameterTuningJobName": name,
        "CreationTime": NOW,
        "HyperParameterTuningJobConfig": config,
        "HyperParameterTuningJobArn": ARN.format("hyper-parameter-tuning-job", name),
        "TrainingJobDefinition": definition,
        "BestTrainingJob": best,
        **counters,
    }
    aws.sm.add_response(
        "describe_hyper_parameter_tuning_job",
        {**described, "HyperParameterTuningJobStatus": "InProgress"},
        {"HyperParameterTuningJobName": name},
    )
    aws.sm.add_response(
        "describe_hyper_parameter_tuning_job",
        {**described, "HyperParameterTuningJobStatus": "Completed"},
        {"HyperParameterTuningJobName": name},
    )
    tuner.fit(records, job_name=name)
    aws.sm.add_response(
        "describe_hyper_parameter_tuning_job",
        {**described, "HyperParameterTuningJobStatus": "Completed"},
        {"HyperParameterTuningJobName": name},
    )
    assert tuner.best_training_job() == "fm-tuning-1-002-abcdef12"
    other = {
        **best,
        "TrainingJobName": "fm-tuning-1-001-12345678",
        "TunedHyperParameters": {"num_factors": "2"},
        "FinalHyperParameterTuningJobObjectiveMetric": {
            "MetricName": "test:binary_classification_accuracy",
            "Value": 0.9,
        },
    }
    aws.sm.add_response(
        "list_training_jobs_for_hyper_parameter_tuning_job",
        {"TrainingJobSummaries": [best], "NextToken": "2"},
        {"HyperParameterTuningJobName": name, "MaxResults": 100},
    )
    aws.sm.add_response(
        "list_training_jobs_for_hyper_parameter_tuning_job",
        {"TrainingJobSummaries": [other]},
        {"HyperParameterTuningJobName": name, "MaxResults": 100, "NextToken": "2"},
    )
    table = tuner.analytics()
    assert list(table["FinalObjectiveValue"]) == [0.97, 0.9] and list(table["num_factors"]) == ["8", "2"]
    aws.sm.add_response(
        "describe_hyper_parameter_tuning_job",
        {**described, "HyperParameterTuningJobStatus": "Completed"},
        {"HyperParameterTuningJobName": name},
    )
    attached = HyperparameterTuner.attach(name, sagemaker_session=aws.session)
    assert attached.hyperparameter_ranges() == config["ParameterRanges"]
    assert attached.early_stopping_type == "Auto" and attached.max_parallel_jobs == 2


def test_instance_count_2_is_passed_through_with_one_shard_per_host_and_both_hosts_logs(aws):
    x, y = _rows()
    estimator = _estimator(aws.session)
    estimator.instance_count = 2
    records = estimator.record_set(x, y)
    name = "fm-two-hosts"
    aws.sm.add_response(
        "create_training_job",
        {"TrainingJobArn": ARN.format("training-job", name)},
        {
            "TrainingJobName": name,
            "RoleArn": ROLE,
            "AlgorithmSpecification": {
                "TrainingImage": IMAGE,
                "TrainingInputMode": "File",
                "MetricDefinitions": metrics_log.metric_definitions("fm", "binary_classifier"),
            },
            "HyperParameters": {"num_factors": "4", "predictor_type": "binary_classifier", "epochs": "2",
                                "feature_dim": "8", "mini_batch_size": "20"},
            "InputDataConfig": [{"ChannelName": "train", "DataSource": {"S3DataSource": {
                "S3DataType": "ManifestFile", "S3Uri": records.s3_data,
                "S3DataDistributionType": "ShardedByS3Key"}}}],
            "OutputDataConfig": {"S3OutputPath": "s3://test-bucket/"},
            "ResourceConfig": {"InstanceType": "ml.c5.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 30},
            "StoppingCondition": {"MaxRuntimeInSeconds": 86400},
        },
    )
    resources = {"InstanceType": "ml.c5.xlarge", "InstanceCount": 2, "VolumeSizeInGB": 30}
    completed = _describe(name, "Completed", ResourceConfig=resources)
    aws.sm.add_response("describe_training_job", completed, {"TrainingJobName": name})
    estimator.fit(records, mini_batch_size=20, job_name=name, logs=False)
    manifest = json.loads(aws.s3.get_object(Bucket="test-bucket", Key=records.s3_data.removeprefix(
        "s3://test-bucket/"))["Body"].read())
    assert manifest[1:] == ["matrix_0.pbr", "matrix_1.pbr"]  # one shard per host
    aws.sm.add_response("describe_training_job", completed, {"TrainingJobName": name})
    assert FactorizationMachines.attach(name, sagemaker_session=aws.session).instance_count == 2
    streams = [f"{name}/algo-1-1700000000", f"{name}/algo-2-1700000000"]
    aws.logs.add_response(
        "describe_log_streams",
        {"logStreams": [{"logStreamName": s} for s in streams]},
        {"logGroupName": LOG_GROUP, "logStreamNamePrefix": f"{name}/"},
    )
    for stream in streams:
        host = stream.split("/")[1].rsplit("-", 1)[0]
        aws.logs.add_response(
            "get_log_events",
            {"events": [{"timestamp": 0, "message": f"{host} trains", "ingestionTime": 0}],
             "nextForwardToken": "f/1"},
            {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True},
        )
        aws.logs.add_response(
            "get_log_events",
            {"events": [], "nextForwardToken": "f/1"},
            {"logGroupName": LOG_GROUP, "logStreamName": stream, "startFromHead": True, "nextToken": "f/1"},
        )
    assert estimator.latest_training_job.log().splitlines() == ["algo-1 trains", "algo-2 trains"]
