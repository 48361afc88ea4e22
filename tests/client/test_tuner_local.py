"""Hyperparameter tuning on the local_process back end: real training jobs, really in parallel, objective
and per-epoch metrics read from their logs, early stopping, analytics, attach, warm start, deploy."""

from __future__ import annotations

import datetime as dt
import itertools
import time

import pytest

from fmwals import FactorizationMachines
from fmwals.parameter import CategoricalParameter, ContinuousParameter, IntegerParameter, preset_ranges
from fmwals.tuner import HyperparameterTuner, WarmStartTypes

OBJECTIVE = "test:binary_classification_accuracy"


def _fm(**kwargs):
    arguments = {"num_factors": 4, "predictor_type": "binary_classifier", "mini_batch_size": 100, **kwargs}
    return FactorizationMachines("role", 1, "local_process", **arguments)


@pytest.fixture
def channels(digits):
    x, y, xt, yt = digits
    fm = _fm()
    return [fm.record_set(x, y), fm.record_set(xt, yt, channel="test")]


def _overlap(rows):
    spans = sorted(
        (dt.datetime.fromisoformat(r["TrainingStartTime"]), dt.datetime.fromisoformat(r["TrainingEndTime"]))
        for r in rows
    )
    return any(later[0] < earlier[1] for earlier, later in itertools.pairwise(spans))


@pytest.mark.slow
def test_eight_jobs_two_at_a_time_then_deploy_the_best(channels, digits):
    _, _, xt, yt = digits
    tuner = HyperparameterTuner(
        _fm(epochs=3),
        OBJECTIVE,
        {"linear_lr": ContinuousParameter(1e-4, 0.3, "Logarithmic"), "num_factors": IntegerParameter(2, 8)},
        max_jobs=8,
        max_parallel_jobs=2,
        random_seed=0,
    )
    tuner.fit(channels)
    table = tuner.analytics()
    assert len(table) == 8 and set(table["TrainingJobStatus"]) == {"Completed"}
    assert table["FinalObjectiveValue"].max() > 0.95
    assert _overlap(tuner.training_job_summaries())  # two jobs really ran at once
    best = tuner.best_training_job()
    assert (
        table.set_index("TrainingJobName").loc[best, "FinalObjectiveValue"]
        == table["FinalObjectiveValue"].max()
    )
    attached = HyperparameterTuner.attach(tuner.latest_tuning_job)
    assert attached.best_training_job() == best and len(attached.analytics()) == 8
    predictor = tuner.deploy(1, "local_process")
    answer = [r.label["predicted_label"].float32_tensor.values[0] for r in predictor.predict(xt[:20])]
    assert sum(p == label for p, label in zip(answer, yt[:20], strict=True)) >= 18
    tuner.delete_endpoint()


@pytest.mark.slow
def test_the_fm_preset_runs_as_is(channels):
    tuner = HyperparameterTuner(_fm(), OBJECTIVE, preset_ranges("fm"), max_jobs=2, max_parallel_jobs=2,
                                random_seed=0)
    tuner.fit(channels)
    table = tuner.analytics()
    assert list(table["TrainingJobStatus"]) == ["Completed", "Completed"]
    assert set(table["optimizer"]) == {"adagrad"} and table["FinalObjectiveValue"].min() > 0.9
    for name in table["TrainingJobName"]:
        assert "Optimizer adagrad: " in FactorizationMachines.attach(name).latest_training_job.log()


@pytest.mark.slow
def test_early_stopping_stops_jobs_that_are_clearly_behind(channels):
    # Grid order is the ranges' product: two good jobs (linear_lr 0.3) finish first, two at once; the two
    # hopeless ones (linear_lr 1e-07) that follow are behind the finished jobs' median from epoch 1 on.
    space = {
        "linear_lr": CategoricalParameter(["0.3", "1e-07"]),
        "bias_lr": CategoricalParameter(["0.1", "1e-07"]),
    }
    tuner = HyperparameterTuner(
        _fm(epochs=300, mini_batch_size=50),  # long enough that the poller sees a job running
        OBJECTIVE,
        space,
        strategy="Grid",
        max_parallel_jobs=2,
        early_stopping_type="Auto",
    )
    tuner.fit(channels)
    table = tuner.analytics()
    assert list(table["linear_lr"]) == ["0.3", "0.3", "1e-07", "1e-07"]  # the whole grid, in order
    assert list(table["TrainingJobStatus"]) == ["Completed", "Completed", "Stopped", "Stopped"]
    assert tuner.describe()["HyperParameterTuningJobStatus"] == "Completed"
    assert tuner.best_training_job() in set(table["TrainingJobName"][:2])
    warm = tuner.identical_dataset_and_algorithm_tuner()
    assert warm.warm_start_config.warm_start_type == WarmStartTypes.IDENTICAL_DATA_AND_ALGORITHM


@pytest.mark.slow
def test_hyperband_and_warm_start(channels):
    ranges = {"linear_lr": ContinuousParameter(1e-4, 0.3, "Logarithmic")}
    parent = HyperparameterTuner(
        _fm(epochs=4), OBJECTIVE, ranges, strategy="Hyperband", max_jobs=4, max_parallel_jobs=2, random_seed=1
    )
    parent.fit(channels)
    assert len(parent.analytics()) == 4
    child = parent.transfer_learning_tuner()
    child.max_jobs = 2
    child.fit(channels)
    assert len(child.analytics()) == 2 and child._local_job.study.trials[0].value is not None
    assert len(child._local_job.study.trials) >= 2 + 1  # the parent's finished trials were added first


@pytest.mark.slow
def test_stop_tuning_job_stops_running_jobs_and_launches_no_more(channels):
    tuner = HyperparameterTuner(
        _fm(epochs=300, mini_batch_size=10),
        OBJECTIVE,
        {"linear_lr": ContinuousParameter(1e-3, 0.3)},
        strategy="Random",
        max_jobs=4,
    )
    tuner.fit(channels, wait=False)
    while not tuner.training_job_summaries():
        time.sleep(0.2)
    tuner.stop_tuning_job()
    tuner.wait()
    assert tuner.describe()["HyperParameterTuningJobStatus"] == "Stopped"
    assert list(tuner.analytics()["TrainingJobStatus"]) == ["Stopped"]
