"""Code written for the SageMaker SDK runs unchanged against ``fmwals``: the snippets of the SDK's
FactorizationMachines page (shared/seeds/000) and of the FM-on-MNIST notebook (shared/seeds/002), with
``sagemaker`` spelled ``fmwals``, against real ``local_process`` endpoints. Every predictor returns what the
SDK's returns, and reading the answers the SDK's way works."""

from __future__ import annotations

import inspect
import io
import json

import numpy as np
import pandas as pd
import pytest
import sagemaker.amazon.factorization_machines as sdk_fm
import sagemaker.base_predictor as sdk_predictor
from sagemaker.deserializers import JSONDeserializer as SdkJSONDeserializer
from sagemaker.deserializers import RecordDeserializer as SdkRecordDeserializer

import fmwals
from fmwals import Estimator, FactorizationMachines, FactorizationMachinesModel, FactorizationMachinesPredictor
from fmwals.predictor import Predictor, json_deserializer

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"


def _sdk_defaults(cls):
    parameters = inspect.signature(cls.__init__).parameters
    return parameters["serializer"].default, parameters["deserializer"].default


@pytest.mark.parametrize(
    "ours,theirs",
    [(Predictor, sdk_predictor.Predictor), (FactorizationMachinesPredictor, sdk_fm.FactorizationMachinesPredictor)],
)
def test_each_predictor_has_the_sdk_default_serializer_and_deserializer(ours, theirs):
    predictor = ours("any-endpoint")
    serializer, deserializer = _sdk_defaults(theirs)
    assert type(predictor.serializer).__name__ == type(serializer).__name__
    assert type(predictor.deserializer).__name__ == type(deserializer).__name__
    assert predictor.serializer.CONTENT_TYPE == serializer.CONTENT_TYPE
    assert tuple(predictor.deserializer.ACCEPT) == tuple(deserializer.ACCEPT)


@pytest.fixture(scope="module")
def fm_job(tmp_path_factory, digits):
    """The SDK page's estimator, trained once for the module (its own FMWALS_HOME, kept for the module)."""
    home = tmp_path_factory.mktemp("snippets-home")
    with pytest.MonkeyPatch.context() as env:  # module scope: no monkeypatch fixture
        env.setenv("FMWALS_HOME", str(home))
        x, y, _, _ = digits
        # FactorizationMachines(role, train_instance_count, train_instance_type, num_factors, predictor_type, ...)
        my_estimator = FactorizationMachines(ROLE, 1, "local_process", 8, "binary_classifier", epochs=6,
                                             linear_lr=0.05, bias_lr=0.05)
        # >>> my_estimator.fit(wait=False)
        my_estimator.fit(my_estimator.record_set(x, y), mini_batch_size=100, wait=False, logs=False)
        # >>> training_job_name = my_estimator.latest_training_job.name
        training_job_name = my_estimator.latest_training_job.name
        # Later on: >>> attached_estimator = Estimator.attach(training_job_name)   (waits for the job)
        Estimator.attach(training_job_name, logs=False)
    return home, training_job_name


@pytest.fixture
def job_name(fm_job, monkeypatch):
    home, name = fm_job
    monkeypatch.setenv("FMWALS_HOME", str(home))
    return name


def test_fm_predictor_returns_records_read_as_the_sdk_page_says(job_name, digits):
    _, _, xt, yt = digits
    estimator = FactorizationMachines.attach(job_name, logs=False)
    predictor = estimator.deploy(1, "local_process")
    try:
        assert isinstance(predictor, FactorizationMachinesPredictor)
        records = predictor.predict(xt[:40])
        # "predict() returns a list of Record objects, one for each row in the input ndarray. The prediction
        # is stored in the "score" key of the Record.label field."
        assert isinstance(records, list) and len(records) == 40
        assert type(records[0]).DESCRIPTOR.full_name == "aialgs.data.Record"
        scores = np.array([record.label["score"].float32_tensor.values[0] for record in records])
        labels = np.array([record.label["predicted_label"].float32_tensor.values[0] for record in records])
        assert ((scores >= 0) & (scores <= 1)).all() and np.array_equal(labels, (scores >= 0.5).astype(float))
        assert np.mean(labels == yt[:40]) > 0.9
        # The SDK's own deserializer reads the same answer into the same Records.
        predictor.deserializer = SdkRecordDeserializer()
        assert predictor.predict(xt[:40]) == records
        # A predictor built from the endpoint's name, as the page's FactorizationMachinesPredictor(endpoint).
        assert FactorizationMachinesPredictor(predictor.endpoint).predict(xt[:40]) == records
    finally:
        estimator.delete_endpoint()


def test_the_generic_estimator_deploys_the_generic_predictor(job_name):
    # >>> attached_estimator = Estimator.attach(training_job_name)
    # >>> attached_estimator.deploy()
    attached_estimator = Estimator.attach(job_name, logs=False)
    predictor = attached_estimator.deploy()
    try:
        assert type(predictor) is Predictor
        answer = predictor.predict(b"0," * 63 + b"0", initial_args={"ContentType": "text/csv"})
        assert isinstance(answer, bytes) and set(json.loads(answer)["predictions"][0]) == {
            "score", "predicted_label"}
    finally:
        attached_estimator.delete_endpoint()


def test_models_deploy_the_fm_predictor(job_name, digits):
    _, _, xt, _ = digits
    estimator = FactorizationMachines.attach(job_name, logs=False)
    # FactorizationMachinesModel(model_data, role, sagemaker_session=None): "Calling deploy() creates an
    # Endpoint and returns FactorizationMachinesPredictor."
    model = FactorizationMachinesModel(estimator.model_data, ROLE)
    predictor = model.deploy(1, "local_process", endpoint_name="fm-model")
    try:
        assert isinstance(predictor, FactorizationMachinesPredictor)
        assert len(predictor.predict(xt[:3])) == 3
    finally:
        predictor.delete_endpoint()
    predictor = estimator.create_model().deploy(1, "local_process", endpoint_name="fm-create-model")
    try:
        assert isinstance(predictor, FactorizationMachinesPredictor)
    finally:
        predictor.delete_endpoint()


def test_the_mnist_notebook_runs_with_fmwals(tmp_path):
    """The notebook's cells in order (digits for MNIST: 64 pixels, not 784; local files for S3)."""
    sagemaker = fmwals
    (train_x, train_y_digit), (test_x, test_y_digit) = _digit_sets()
    train_set, test_set = (train_x, train_y_digit), (test_x, test_y_digit)
    role = ROLE
    sess = sagemaker.Session()

    vectors = np.array([t.tolist() for t in train_set[0]]).astype("float32")
    labels = np.where(np.array([t.tolist() for t in train_set[1]]) == 0, 1.0, 0.0).astype("float32")
    buf = io.BytesIO()
    sagemaker.write_numpy_to_dense_tensor(buf, vectors, labels)
    buf.seek(0)
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "recordio-pb-data").write_bytes(buf.read())  # the notebook uploads it to S3
    s3_train_data = f"file://{tmp_path / 'train' / 'recordio-pb-data'}"
    output_location = f"file://{tmp_path / 'output'}"

    container = "fm-wals:latest"
    fm = sagemaker.estimator.Estimator(container, role, train_instance_count=1,
                                       train_instance_type="local_process", output_path=output_location,
                                       sagemaker_session=sess)
    fm.set_hyperparameters(feature_dim=64, predictor_type="binary_classifier", mini_batch_size=200,
                           num_factors=10)
    fm.fit({"train": s3_train_data}, logs=False)
    assert fm.model_data.startswith(output_location)

    fm_predictor = fm.deploy(initial_instance_count=1, instance_type="local_process")
    try:
        def fm_serializer(data):
            js = {"instances": []}
            for row in data:
                js["instances"].append({"features": row.tolist()})
            return json.dumps(js)

        fm_predictor.content_type = "application/json"
        fm_predictor.serializer = fm_serializer
        fm_predictor.deserializer = json_deserializer

        result = fm_predictor.predict(train_set[0][30:31])
        assert set(result["predictions"][0]) == {"score", "predicted_label"}
        one_record = result

        predictions = []
        for array in np.array_split(test_set[0], 100):
            result = fm_predictor.predict(array)
            predictions += [r["predicted_label"] for r in result["predictions"]]
        predictions = np.array(predictions)
        table = pd.crosstab(np.where(test_set[1] == 0, 1, 0), predictions, rownames=["actuals"],
                            colnames=["predictions"])
        assert table.to_numpy().sum() == len(test_set[1]) and set(np.unique(predictions)) <= {0.0, 1.0}

        fm_predictor.deserializer = SdkJSONDeserializer()  # v2 code sets the SDK's class: same answer
        assert fm_predictor.predict(train_set[0][30:31]) == one_record
    finally:
        fm_predictor.delete_endpoint()  # the notebook: sagemaker.Session().delete_endpoint(fm_predictor.endpoint)


def _digit_sets():
    """scikit-learn's digits as the notebook's (images, digit) pairs, pixels scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x / 16.0).astype(np.float32)
    return (x[:1400], y[:1400]), (x[1400:], y[1400:])
