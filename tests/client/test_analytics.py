"""``TrainingJobAnalytics`` gives the SDK's table: the SDK's own class, fed the same values as CloudWatch
datapoints, builds the same DataFrame as ours reads from a local job's log (a real job record and log file
read by the local back end)."""

from __future__ import annotations

import datetime as dt
import math
from types import SimpleNamespace

import boto3
import pandas as pd
import pytest
from botocore.stub import Stubber
from sagemaker.analytics import TrainingJobAnalytics as SdkTrainingJobAnalytics

from container import metrics_log
from fmwals import TrainingJobAnalytics, jobs

from .conftest import CREDENTIALS

START = dt.datetime(2026, 1, 2, 10, 0, 0)
DEFINITIONS = metrics_log.metric_definitions("fm", "regressor")
# (seconds after START, epoch, train rmse, test rmse)
EPOCHS = [(3, 0, 1.5, 1.7), (9, 1, 1.1, 1.3), (14, 2, 0.9, 1.2)]


def _line(seconds, text):
    return f"[{(START + dt.timedelta(seconds=seconds)).strftime('%m/%d/%Y %H:%M:%S')} INFO 140] {text}"


def _log():
    lines = [_line(0, "Training with 2 thread(s)")]
    for seconds, epoch, train, test in EPOCHS:
        lines += [_line(seconds, f"#quality_metric: host=algo-1, epoch={epoch}, train rmse <loss>={train}"),
                  _line(seconds, f"#quality_metric: host=algo-1, epoch={epoch}, test rmse <loss>={test}")]
    lines.append(_line(20, "#quality_metric: host=algo-1, test rmse <loss>=1.2"))
    return lines


def _local_job(name, lines, definitions=DEFINITIONS):
    """A finished local job: its record (with MetricDefinitions) and its log, where the local back end keeps
    them."""
    jobs.write("jobs", name, {
        "TrainingJobName": name,
        "TrainingJobStatus": "Completed",
        "AlgorithmSpecification": {"TrainingImage": "fm-wals:latest", "MetricDefinitions": definitions},
        "ResourceConfig": {"InstanceType": "local_process", "InstanceCount": 1},
    })
    (jobs.entity_dir("jobs", name) / "log.txt").write_text("\n".join(lines) + "\n")


def _sdk_dataframe(name, values):
    """The SDK's TrainingJobAnalytics, with CloudWatch answering ``values`` ({metric: [(seconds, value)]})."""
    sm = boto3.client("sagemaker", **CREDENTIALS)
    cloudwatch = boto3.client("cloudwatch", **CREDENTIALS)
    description = {
        "TrainingJobName": name, "TrainingJobArn": f"arn:aws:sagemaker:us-east-1:1:training-job/{name}",
        "TrainingJobStatus": "Completed", "SecondaryStatus": "Completed",
        "CreationTime": START, "TrainingStartTime": START, "TrainingEndTime": START + dt.timedelta(minutes=1),
        "AlgorithmSpecification": {"TrainingImage": "fm-wals:latest", "TrainingInputMode": "File",
                                   "MetricDefinitions": DEFINITIONS},
        "HyperParameters": {}, "ModelArtifacts": {"S3ModelArtifacts": "s3://b/m.tar.gz"},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        "ResourceConfig": {"InstanceType": "ml.c5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 1},
    }
    with Stubber(sm) as sm_stub, Stubber(cloudwatch) as cw_stub:
        sm_stub.add_response("describe_training_job", description, {"TrainingJobName": name})
        sm_stub.add_response("describe_training_job", description, {"TrainingJobName": name})
        for definition in DEFINITIONS:
            points = [{"Timestamp": START + dt.timedelta(seconds=s), "Average": v}
                      for s, v in reversed(values.get(definition["Name"], []))]  # CloudWatch's order is any
            cw_stub.add_response("get_metric_statistics", {"Datapoints": points})
        session = SimpleNamespace(sagemaker_client=sm, boto_session=SimpleNamespace(client=lambda _: cloudwatch))
        return SdkTrainingJobAnalytics(name, sagemaker_session=session).dataframe()


def test_the_dataframe_is_the_sdk_dataframe():
    _local_job("fm-analytics", _log())
    values = {
        "train:rmse:epoch": [(s, train) for s, _, train, _ in EPOCHS],
        "test:rmse:epoch": [(s, test) for s, _, _, test in EPOCHS],
        "test:rmse": [(20, 1.2)],
    }
    ours = TrainingJobAnalytics("fm-analytics").dataframe()
    assert list(ours.columns) == ["timestamp", "metric_name", "value"]
    pd.testing.assert_frame_equal(ours, _sdk_dataframe("fm-analytics", values))
    assert list(ours[ours.metric_name == "train:rmse:epoch"].timestamp) == [0.0, 6.0, 11.0]


def test_metric_names_period_and_time_window():
    _local_job("fm-window", _log())
    analytics = TrainingJobAnalytics("fm-window", metric_names=["test:rmse:epoch"])
    assert analytics.dataframe().value.tolist() == [1.7, 1.3, 1.2]
    assert analytics.metrics() == {"test:rmse:epoch": [1.7, 1.3, 1.2]}
    averaged = TrainingJobAnalytics("fm-window", ["train:rmse:epoch"], period=10).dataframe()
    assert averaged.timestamp.tolist() == [0.0, 10.0] and averaged.value.tolist() == pytest.approx([1.3, 0.9])
    window = TrainingJobAnalytics("fm-window", ["train:rmse:epoch"], start_time=START + dt.timedelta(seconds=5),
                                  end_time=START + dt.timedelta(seconds=12))
    assert window.dataframe().value.tolist() == [1.1]
    with pytest.raises(ValueError, match="period=0: expected a number of seconds > 0"):
        TrainingJobAnalytics("fm-window", period=0)


def test_the_table_is_cached_until_refreshed_and_lines_without_a_time_have_none(caplog):
    _local_job("fm-cache", _log())
    analytics = TrainingJobAnalytics("fm-cache", ["train:rmse:epoch", "train:mse:epoch", "train:typo"])
    first = analytics.dataframe()
    with open(jobs.entity_dir("jobs", "fm-cache") / "log.txt", "a") as log:
        log.write("#quality_metric: host=algo-1, epoch=3, train rmse <loss>=0.8\n")
    assert analytics.dataframe() is first
    refreshed = analytics.dataframe(force_refresh=True)
    assert refreshed.value.tolist() == [1.5, 1.1, 0.9, 0.8] and math.isnan(refreshed.timestamp.iloc[-1])
    assert "No metrics called train:mse:epoch found" in caplog.text
    assert "Metric train:typo is not among the metric definitions of job fm-cache" in caplog.text


def test_a_job_without_metric_definitions_is_read_with_the_images(tmp_path):
    _local_job("fm-undefined", _log(), definitions=[])
    table = TrainingJobAnalytics("fm-undefined").dataframe()
    assert set(table.metric_name) == {"train:rmse:epoch", "test:rmse:epoch", "test:rmse"}
    TrainingJobAnalytics("fm-undefined").export_csv(str(tmp_path / "metrics.csv"))
    assert pd.read_csv(tmp_path / "metrics.csv", index_col=0).equals(table)
