"""The ``local_process`` back end end to end: the repo's real ``train`` and ``serve.sh`` as subprocesses,
real HTTP, job records on disk read back from other processes."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sagemaker.deserializers import JSONDeserializer as SdkJSONDeserializer
from sagemaker.serializers import CSVSerializer as SdkCSVSerializer

from algorithm import artifact
from container.formats.recordio import write_numpy_to_dense_tensor
from fmwals import (
    WALS,
    BackendUnavailableError,
    EndpointError,
    Estimator,
    FactorizationMachines,
    JobFailedError,
    Model,
    TrainingInput,
    WALSPredictor,
    jobs,
)
from fmwals.serializers import (
    CSVSerializer,
    JSONLinesSerializer,
    JSONSerializer,
    PredictionsDeserializer,
    RecordSerializer,
)

ROOT = Path(__file__).resolve().parents[2]
FM_ARGS = {
    "num_factors": 4,
    "predictor_type": "binary_classifier",
    "epochs": 8,
    "bias_lr": 0.05,
    "linear_lr": 0.05,
    "factors_lr": 0.01,
}


def _fm(**kwargs):
    return FactorizationMachines("role", 1, "local_process", **{**FM_ARGS, **kwargs})


@pytest.fixture(scope="module")
def trained(tmp_path_factory, digits):
    """One trained job shared by the module (its own FMWALS_HOME, kept for the module's tests)."""
    home = tmp_path_factory.mktemp("shared-home")
    with pytest.MonkeyPatch.context() as env:  # module scope: no monkeypatch fixture
        env.setenv("FMWALS_HOME", str(home))
        x, y, xt, yt = digits
        fm = _fm()
        fm.fit([fm.record_set(x, y), fm.record_set(xt, yt, channel="test")], mini_batch_size=100, logs=False)
    return home, fm.latest_training_job.name


@pytest.fixture
def shared_home(trained, monkeypatch):
    home, name = trained
    monkeypatch.setenv("FMWALS_HOME", str(home))
    return name


def test_fit_writes_a_model_and_per_epoch_metrics(shared_home):
    fm = FactorizationMachines.attach(shared_home)
    assert fm.model_data.startswith("file://") and fm.model_data.endswith("/model.tar.gz")
    assert Path(fm.model_data.removeprefix("file://")).is_file()
    metrics = fm.training_job_analytics.metrics()
    assert len(metrics["test:binary_classification_accuracy:epoch"]) == 8
    assert metrics["test:binary_classification_accuracy"][0] > 0.95
    table = fm.training_job_analytics.dataframe()
    assert list(table.columns) == ["timestamp", "metric_name", "value"]  # the SDK's
    per_epoch = table[table.metric_name == "test:binary_classification_accuracy:epoch"]
    assert per_epoch.value.tolist() == metrics["test:binary_classification_accuracy:epoch"]
    assert per_epoch.timestamp.iloc[0] == 0.0 and per_epoch.timestamp.is_monotonic_increasing


def test_attach_and_model_data_from_another_process(shared_home):
    code = (
        f"from fmwals import Estimator; e = Estimator.attach({shared_home!r}); print(e.model_data); "
        "print(e.hyperparameters()['num_factors'])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    model_data, factors = out.stdout.split()
    assert model_data == FactorizationMachines.attach(shared_home).model_data and factors == "4"


def _labels(records):
    """The dict of each Record's label values (the SDK reads ``record.label["score"]`` this way)."""
    return [{k: v.float32_tensor.values[0] for k, v in record.label.items()} for record in records]


def test_deploy_predict_every_format_and_delete(shared_home, digits):
    _, _, xt, yt = digits
    fm = FactorizationMachines.attach(shared_home)
    predictor = fm.deploy(1, "local_process")
    default = _labels(predictor.predict(xt[:50]))  # Records, as the SDK's FactorizationMachinesPredictor
    assert set(default[0]) == {"score", "predicted_label"}
    accuracy = np.mean([r["predicted_label"] == label for r, label in zip(default, yt[:50], strict=True)])
    assert accuracy > 0.9
    assert _labels(predictor.predict(sp.csr_matrix(xt[:50]))) == default
    assert _labels(predictor.predict(xt[:2].tolist())) == default[:2]
    for serializer, accept in (
        (JSONSerializer(), "application/json"),
        (CSVSerializer(), "text/csv"),
        (JSONLinesSerializer(), "application/jsonlines"),
        (RecordSerializer(), "application/x-recordio-protobuf"),
    ):
        predictor.serializer, predictor.deserializer = serializer, PredictionsDeserializer(accept)
        answer = predictor.predict(xt[:5])
        assert [r["predicted_label"] for r in answer] == [r["predicted_label"] for r in default[:5]]
        assert np.allclose([r["score"] for r in answer], [r["score"] for r in default[:5]], atol=1e-6)
    predictor.serializer, predictor.deserializer = SdkCSVSerializer(), SdkJSONDeserializer()  # the SDK's own
    assert predictor.predict(xt[:1])["predictions"][0]["score"] == pytest.approx(default[0]["score"])
    with pytest.raises(EndpointError, match="answered 415"):
        predictor.predict(xt[:1], initial_args={"ContentType": "image/png"})
    pixels = np.flatnonzero(xt[0][:32])  # top-k: the best remaining pixels given the first half of an image
    best, alone = predictor.recommend([{"keys": pixels.tolist()}, None], range(32, 64), k=3, exclude=[63])
    assert len(best["candidates"]) == 3 and all(32 <= c < 63 for c in best["candidates"])
    rows = np.zeros((3, 64), np.float32)
    rows[:, pixels] = 1.0
    rows[np.arange(3), best["candidates"]] += 1.0
    predictor.serializer, predictor.deserializer = JSONSerializer(), PredictionsDeserializer()
    assert best["scores"] == pytest.approx([r["score"] for r in predictor.predict(rows)], rel=1e-5)
    assert predictor.recommend({"keys": [0]}, [5, 9], include=[9])[0]["candidates"] == [9] and alone["scores"]
    fm.delete_endpoint()
    with pytest.raises(EndpointError, match="does not exist"):
        predictor.predict(xt[:1])


def test_model_from_model_data_with_the_generic_predictor(shared_home, digits):
    _, _, xt, _ = digits
    model_data = FactorizationMachines.attach(shared_home).model_data
    predictor = Model(model_data=model_data).deploy(1, "local_process", endpoint_name="by-model")
    body = CSVSerializer().serialize(xt[:1])
    answer = predictor.predict(body, initial_args={"ContentType": "text/csv", "Accept": "application/json"})
    assert isinstance(answer, bytes)  # the SDK's Predictor: bytes in, bytes out
    assert set(json.loads(answer)["predictions"][0]) == {"score", "predicted_label"}
    with pytest.raises(TypeError, match=r"made a ndarray, not bytes: .* set predictor.serializer"):
        predictor.predict(xt[:1])
    predictor.delete_endpoint()


def test_port_in_use_and_stopped_server_say_what_to_do(shared_home, digits):
    _, _, xt, _ = digits
    fm = FactorizationMachines.attach(shared_home)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(BackendUnavailableError, match=f"Port {port} is already in use"):
            fm.deploy(1, "local_process", port=port)
    predictor = fm.deploy(1, "local_process", endpoint_name="doomed")
    os.killpg(jobs.read("endpoints", "doomed")["Pid"], signal.SIGKILL)
    time.sleep(0.5)
    with pytest.raises(EndpointError, match=r"is not running: its server process .* has exited"):
        predictor.predict(xt[:1])
    predictor.delete_endpoint()


def test_batch_transform_splits_lines_and_records(shared_home, digits, tmp_path):
    _, _, xt, _ = digits
    fm = FactorizationMachines.attach(shared_home)
    (tmp_path / "csv").mkdir()
    np.savetxt(tmp_path / "csv" / "rows.csv", xt[:30], delimiter=",", fmt="%.6g")
    transformer = fm.transformer(
        1,
        "local_process",
        assemble_with="Line",
        accept="text/csv",
        output_path=str(tmp_path / "out-csv"),
        max_payload=1,
    )
    transformer.transform(str(tmp_path / "csv"), content_type="text/csv", split_type="Line")
    lines = (tmp_path / "out-csv" / "rows.csv.out").read_text().splitlines()
    assert len([line for line in lines if line]) == 30
    (tmp_path / "pbr").mkdir()
    with open(tmp_path / "pbr" / "rows.pbr", "wb") as f:
        write_numpy_to_dense_tensor(f, xt[:7])
    transformer = fm.transformer(
        1,
        "local_process",
        strategy="SingleRecord",
        assemble_with="Line",
        accept="application/jsonlines",
        output_path=str(tmp_path / "out-pbr"),
    )
    transformer.transform(
        str(tmp_path / "pbr"), content_type="application/x-recordio-protobuf", split_type="RecordIO"
    )
    out = (tmp_path / "out-pbr" / "rows.pbr.out").read_text().splitlines()
    assert len(out) == 7 and set(json.loads(out[0])) == {"score", "predicted_label"}


def test_a_job_that_sets_no_optimizer_trains_with_adagrad_and_says_so(digits):
    x, y, xt, yt = digits
    fm = FactorizationMachines("role", 1, "local_process", num_factors=4, predictor_type="binary_classifier",
                               epochs=3)
    assert fm.optimizer is None
    fm.fit([fm.record_set(x, y), fm.record_set(xt, yt, channel="test")], mini_batch_size=100, logs=False)
    assert "optimizer unset: training with adagrad" in fm.latest_training_job.log()
    meta, _ = artifact.read(fm.model_data.removeprefix("file://"))
    assert meta["hyperparameters"]["optimizer"] == "adagrad"
    assert fm.training_job_analytics.metrics()["test:binary_classification_accuracy"][0] > 0.95


def test_failed_job_raises_the_container_failure_text(digits):
    x, y, _, _ = digits
    fm = _fm()
    bad = y.copy()
    bad[3] = 2.0
    with pytest.raises(JobFailedError) as caught:
        fm.fit(fm.record_set(x[:100], bad[:100]), logs=False)
    failure = (
        Path(jobs.entity_dir("jobs", caught.value.job_name) / "opt_ml/output/failure").read_text().strip()
    )
    assert caught.value.status == "Failed" and failure in caught.value.reason


def test_max_run_stops_the_job_and_wait_false_then_attach(digits):
    x, y, _, _ = digits
    many = np.tile(x, (20, 1)), np.tile(y, 20)
    fm = _fm(epochs=1000, max_run=3)
    started = time.monotonic()
    fm.fit(fm.record_set(*many), mini_batch_size=10, wait=False)
    name = fm.latest_training_job.name
    assert jobs.read("jobs", name)["TrainingJobStatus"] == "InProgress"
    with pytest.raises(JobFailedError, match="MaxRuntimeExceeded: training ran longer than max_run=3 s"):
        Estimator.attach(name, logs=False)
    assert time.monotonic() - started < 60
    assert jobs.read("jobs", name)["TrainingJobStatus"] == "Stopped"


def test_stop_a_running_job(digits):
    x, y, _, _ = digits
    fm = _fm(epochs=1000)
    fm.fit(fm.record_set(np.tile(x, (20, 1)), np.tile(y, 20)), mini_batch_size=10, wait=False)
    time.sleep(2)
    fm.latest_training_job.stop()
    with pytest.raises(JobFailedError, match="Stopped by request"):
        fm.latest_training_job.wait(logs=False)


def _wait_for_epoch(checkpoint: Path, epoch: int) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if json.loads(checkpoint.read_text())["progress"]["epoch"] >= epoch:
                return
        except (FileNotFoundError, json.JSONDecodeError):
            pass
        time.sleep(0.005)
    raise AssertionError(f"no checkpoint of epoch {epoch} in {checkpoint}")


def test_a_stopped_job_with_checkpoints_resumes_in_a_new_job_to_the_uninterrupted_model(digits, tmp_path):
    x, y, _, _ = digits
    rows = np.tile(x, (20, 1)), np.tile(y, 20)
    args = {"epochs": 60, "num_threads": 1, "seed": 5}
    whole = _fm(**args)
    records = whole.record_set(*rows)
    whole.fit(records, mini_batch_size=10, logs=False)
    checkpoints = tmp_path / "checkpoints"
    stopped = _fm(**args, checkpoint_s3_uri=f"file://{checkpoints}")
    stopped.fit(records, mini_batch_size=10, wait=False)
    _wait_for_epoch(checkpoints / "checkpoint.json", 2)
    stopped.latest_training_job.stop()
    with pytest.raises(JobFailedError, match="Stopped by request"):
        stopped.latest_training_job.wait(logs=False)
    assert "Received SIGTERM" in stopped.latest_training_job.log()
    resumed = _fm(**args, checkpoint_s3_uri=str(checkpoints))
    resumed.fit(records, mini_batch_size=10, logs=False)
    assert "Resuming from checkpoint" in resumed.latest_training_job.log()
    expected = artifact.read(whole.model_data.removeprefix("file://"))[1]
    for name, array in artifact.read(resumed.model_data.removeprefix("file://"))[1].items():
        np.testing.assert_array_equal(array, expected[name], err_msg=name)


def test_checkpoints_in_s3_are_refused_by_the_local_back_ends(digits):
    x, y, _, _ = digits
    fm = _fm(checkpoint_s3_uri="s3://bucket/checkpoints")
    with pytest.raises(ValueError, match="the local back ends keep checkpoints in a local directory"):
        fm.fit(fm.record_set(x, y), logs=False)


def test_pipe_mode_feeds_fifos_each_epoch(digits, tmp_path):
    x, y, xt, yt = digits
    fm = _fm(epochs=3, input_mode="Pipe")
    fm.fit([fm.record_set(x, y), fm.record_set(xt, yt, channel="test")], logs=False)
    log = fm.latest_training_job.log()
    assert (
        "FIFO" in log
        and len(fm.training_job_analytics.metrics()["train:binary_classification_accuracy:epoch"]) == 3
    )


def test_csv_channel_by_path_and_training_input(digits, tmp_path):
    x, y, _, _ = digits
    (tmp_path / "csv").mkdir()
    np.savetxt(tmp_path / "csv" / "train.csv", np.column_stack([y[:300], x[:300]]), delimiter=",", fmt="%.6g")
    fm = _fm(epochs=2, feature_dim=64)
    fm.fit({"train": TrainingInput(f"file://{tmp_path / 'csv'}", content_type="text/csv")}, logs=False)
    assert fm.model_data is not None
    with pytest.raises(FileNotFoundError, match=r"channel 'train': .*missing does not exist"):
        fm.fit(str(tmp_path / "missing"))
    buffer = io.BytesIO()
    write_numpy_to_dense_tensor(buffer, x[:50], y[:50])
    (tmp_path / "one.pbr").write_bytes(buffer.getvalue())
    fm.fit(str(tmp_path / "one.pbr"), logs=False)  # a single file is a channel too
    assert fm.latest_training_job.describe()["TrainingJobStatus"] == "Completed"


def test_wals_trains_and_serves_every_query():
    rng = np.random.default_rng(0)
    rows, cols = rng.integers(0, 60, 500), rng.integers(0, 40, 500)
    matrix = sp.csr_matrix((np.ones(500, np.float32), (rows, cols)), shape=(60, 40))
    wals = WALS(embedding_dimension=4, max_sweeps=3, alpha=10.0, role="role", instance_type="local_process")
    wals.fit({"train": wals.record_set(matrix)}, logs=False)
    assert len(wals.training_job_analytics.metrics()["train:loss:epoch"]) == 3
    predictor = wals.deploy(1, "local_process")
    assert isinstance(predictor, WALSPredictor)
    first, _ = predictor.recommend([0, 1], k=3)
    assert len(first["cols"]) == 3 and not set(first["cols"]) & set(matrix[0].indices.tolist())
    assert len(predictor.fold_in({"cols": [1, 2], "values": [1.0, 3.0]}, k=3)[0]["cols"]) == 3
    score = predictor.score(0, first["cols"][0])[0]["score"]
    assert score == pytest.approx(first["scores"][0], rel=1e-5)
    assert predictor.recommend("nobody")[0] == {"error": "unknown row id 'nobody'"}
    assert len(predictor.similar_cols(0, k=2)[0]["cols"]) == 2
    assert len(predictor.top_rows_for_col([0, 1], k=2)) == 2
    wals.delete_endpoint()
