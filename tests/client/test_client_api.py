"""The client's surface without running jobs: argument names, hyperparameter checks with the container's
wording, serializers (byte-identical to the SDK's where the SDK has one), parameter ranges, tuner checks."""

from __future__ import annotations

import inspect
import io
import json
from pathlib import Path

import numpy as np
import optuna
import pytest
import scipy.sparse as sp
from sagemaker.amazon import common as sdk_common
from sagemaker.serializers import RecordSerializer as SdkRecordSerializer

from algorithm.hyperparameters import HyperparameterError, parse_hyperparameters
from algorithm.optimizer_defaults import optimizer_defaults
from algorithm.schemas import FM_SCHEMA, parse_for_algorithm
from fmwals import WALS, Estimator, FactorizationMachines, InvalidHyperparameterError, RecordSet
from fmwals.parameter import CategoricalParameter, ContinuousParameter, IntegerParameter, preset_ranges
from fmwals.serializers import CSVSerializer, JSONLinesSerializer, JSONSerializer, RecordSerializer
from fmwals.tuner import HyperparameterTuner


def _container_message(values):
    with pytest.raises(HyperparameterError) as caught:
        parse_hyperparameters(values, FM_SCHEMA)
    return str(caught.value)


def test_v1_and_v2_argument_names_mean_the_same():
    v1 = Estimator(
        image_name="img:1",
        role="r",
        train_instance_count=1,
        train_instance_type="local_process",
        train_max_run=60,
        train_volume_size=5,
    )
    v2 = Estimator(
        image_uri="img:1",
        role="r",
        instance_count=1,
        instance_type="local_process",
        max_run=60,
        volume_size=5,
    )
    assert vars(v1) == vars(v2)
    with pytest.raises(TypeError, match="either train_instance_type"):
        Estimator("img:1", "r", 1, "local", train_instance_type="local")
    with pytest.raises(TypeError, match="unexpected argument"):
        Estimator("img:1", "r", 1, "local", train_volume_sizes=5)


def test_invalid_values_fail_when_set_with_the_container_message():
    fm = FactorizationMachines("r", 1, "local_process", num_factors=4, predictor_type="regressor")
    with pytest.raises(InvalidHyperparameterError) as caught:
        fm.num_factors = 0
    assert str(caught.value) == _container_message(
        {"feature_dim": 3, "num_factors": 0, "predictor_type": "regressor"}
    )
    with pytest.raises(InvalidHyperparameterError) as caught:
        fm.set_hyperparameters(learning_rate=0.1)
    assert ("unknown hyperparameter 'learning_rate' (known: adagrad_state, algorithm, bias_init_method"
            in str(caught.value))
    with pytest.raises(
        InvalidHyperparameterError, match="predictor_type='classifier' is not valid: expected one"
    ):
        FactorizationMachines("r", 1, "local_process", num_factors=4, predictor_type="classifier")
    with pytest.raises(
        InvalidHyperparameterError, match=r"epochs='many' is not valid: expected an integer > 0"
    ):
        Estimator("img", "r", 1, "local_process", hyperparameters={"epochs": "many"})
    assert fm.num_factors == 4  # the failed assignment changed nothing


def test_missing_required_hyperparameters_fail_at_fit_before_any_job():
    fm = FactorizationMachines("r", 1, "local_process", num_factors=4)
    with pytest.raises(InvalidHyperparameterError) as caught:
        fm.fit("/nonexistent")
    assert str(caught.value) == _container_message({"num_factors": 4})


def test_hyperparameters_are_attributes_and_strings_on_the_wire():
    fm = FactorizationMachines(
        "r",
        1,
        "local_process",
        num_factors=4,
        predictor_type="binary_classifier",
        epochs=3,
        use_bias=False,
        optimizer="sgd",
    )
    fm.epochs = 5
    assert fm.epochs == 5 and fm.clip_gradient is None
    assert fm.hyperparameters() == {
        "num_factors": "4",
        "predictor_type": "binary_classifier",
        "epochs": "5",
        "use_bias": "false",
        "optimizer": "sgd",
    }
    wals = WALS(100, 50, 8, regularization_coeff=0.5, instance_type="local_process", solver="cg")
    assert wals.hyperparameters() == {
        "algorithm": "wals",
        "num_rows": "100",
        "num_cols": "50",
        "embedding_dimension": "8",
        "regularization_coeff": "0.5",
        "solver": "cg",
    }
    with pytest.raises(InvalidHyperparameterError, match="unknown hyperparameter 'num_factors'"):
        wals.set_hyperparameters(num_factors=3)


def test_positional_arguments_follow_the_sdk_order_and_the_signature_lists_the_schema():
    fm = FactorizationMachines("r", 1, "local_process", 4, "regressor", 3)
    assert (fm.role, fm.instance_type, fm.num_factors, fm.predictor_type, fm.epochs) == (
        "r", "local_process", 4, "regressor", 3)
    wals = WALS(100, 50, 8, 0.5)
    assert (wals.num_rows, wals.embedding_dimension, wals.unobserved_weight) == (100, 8, 0.5)
    with pytest.raises(TypeError, match="multiple values for argument 'num_factors'"):
        FactorizationMachines("r", 1, "local_process", 4, num_factors=5)
    with pytest.raises(TypeError, match="at most 19 positional arguments"):  # TF's 16, then the job's 3
        WALS(*range(20))
    for cls in (FactorizationMachines, WALS):
        names = set(inspect.signature(cls).parameters)
        assert set(cls.schema) - {"algorithm"} <= names
        assert set(cls.positional) <= set(cls.schema) | set(cls.ignored) | {"role", "instance_count",
                                                                            "instance_type"}


def test_unknown_instance_type_says_what_is_supported():
    fm = FactorizationMachines("r", 1, "ml_c5", num_factors=4, predictor_type="regressor", feature_dim=3)
    with pytest.raises(ValueError, match=r"'local_process' .* 'local' .* 'ml.c5.xlarge'"):
        fm.fit("/tmp")


def test_record_set_writes_sdk_identical_shards(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    y = np.array([0, 1, 0, 1], dtype=np.float32)
    fm = FactorizationMachines("r", 1, "local_process", num_factors=2, predictor_type="binary_classifier")
    records = fm.record_set(x, y, channel="test")
    assert isinstance(records, RecordSet) and records.channel == "test" and records.feature_dim == 3
    expected = io.BytesIO()
    sdk_common.write_numpy_to_dense_tensor(expected, x, y)
    shard = records.s3_data.removeprefix("file://") + "matrix_0.pbr"
    assert Path(shard).read_bytes() == expected.getvalue()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_record_serializer_matches_the_sdk(dtype):
    x = np.random.default_rng(0).random((3, 5)).astype(dtype)
    assert RecordSerializer().serialize(x) == SdkRecordSerializer().serialize(x).read()
    assert RecordSerializer().serialize(x[0]) == SdkRecordSerializer().serialize(x[0]).read()
    sparse = sp.random(4, 6, density=0.4, format="csr", dtype=np.float32, random_state=1)
    expected = io.BytesIO()
    sdk_common.write_spmatrix_to_sparse_tensor(expected, sparse)
    assert RecordSerializer().serialize(sparse) == expected.getvalue()


def test_text_serializers_write_the_builtin_request_formats():
    dense = np.array([[0.5, 0.0, 2.0]], dtype=np.float32)
    sparse = sp.csr_matrix(dense)
    assert json.loads(JSONSerializer().serialize(dense)) == {
        "instances": [{"data": {"features": {"values": [0.5, 0.0, 2.0]}}}]
    }
    assert json.loads(JSONSerializer().serialize(sparse)) == {
        "instances": [{"data": {"features": {"keys": [0, 2], "shape": [3], "values": [0.5, 2.0]}}}]
    }
    assert JSONLinesSerializer().serialize([[1, 2], [3, 4]]).splitlines() == [
        b'{"data": {"features": {"values": [1, 2]}}}',
        b'{"data": {"features": {"values": [3, 4]}}}',
    ]
    assert CSVSerializer().serialize(sparse) == b"0.5,0.0,2.0"
    assert JSONSerializer().serialize({"instances": []}) == b'{"instances": []}'


def test_parameter_ranges_and_presets():
    assert ContinuousParameter(1e-4, 1e-1, "Logarithmic").as_tuning_range("factors_lr") == {
        "Name": "factors_lr",
        "MinValue": "0.0001",
        "MaxValue": "0.1",
        "ScalingType": "Logarithmic",
    }
    assert CategoricalParameter(["adam", True]).as_tuning_range("x") == {
        "Name": "x",
        "Values": ["adam", "true"],
    }
    with pytest.raises(ValueError, match="Logarithmic scaling needs min_value > 0"):
        IntegerParameter(0, 4, "Logarithmic")
    reverse = ContinuousParameter(0.9, 0.999, "ReverseLogarithmic")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    draws = [reverse.suggest(study.ask(), "beta") for _ in range(50)]
    assert all(0.9 <= d <= 0.999 for d in draws) and np.median(draws) > 0.97  # dense near 1
    presets = preset_ranges("wals")
    assert presets["regularization_coeff"].scaling_type == "Logarithmic"
    assert isinstance(presets["embedding_dimension"], IntegerParameter)
    # the rates' ranges are AdaGrad's, so a subset of the preset fixes the optimizer too
    assert set(preset_ranges("fm", ["factors_lr", "epochs"])) == {"factors_lr", "epochs", "optimizer"}


def _documented_tuning_ranges(section: str) -> dict[str, str]:
    """name -> the tuning range column of one algorithm's table in docs/hyperparameters.md."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "hyperparameters.md").read_text()
    table = page.split(f"## {section}")[1].split("\n## ")[0]
    rows = [line.split(" | ") for line in table.splitlines() if line.startswith("| `")]
    return {row[0].strip("|` "): row[4] for row in rows if row[4].strip()}


def _as_documented(parameter) -> str:
    if isinstance(parameter, CategoricalParameter):
        return "fixed: " + ", ".join(parameter.values)
    return f"{parameter.min_value:g} to {parameter.max_value:g} ({parameter.scaling_type})"


def test_the_fm_preset_is_a_small_space_around_the_defaults_as_documented():
    presets = preset_ranges("fm")
    assert {name: _as_documented(r) for name, r in presets.items()} == _documented_tuning_ranges(
        "Factorization Machines"
    )
    assert set(presets) == {"epochs", "eps", "factors_lr", "factors_wd", "optimizer"}
    assert presets["optimizer"].values == ["adagrad"]
    assert 10 in range(presets["epochs"].min_value, presets["epochs"].max_value + 1)
    for parameter in presets.values():
        if isinstance(parameter, ContinuousParameter):
            assert parameter.scaling_type == "Logarithmic" and parameter.max_value / parameter.min_value <= 1e4
    for predictor_type in ("binary_classifier", "regressor"):  # the defaults that work lie inside
        defaults = optimizer_defaults("adagrad", predictor_type)
        for name in ("eps", "factors_lr", "factors_wd"):
            assert presets[name].is_valid(defaults[name]), (predictor_type, name)


@pytest.mark.parametrize("predictor_type", ["binary_classifier", "regressor"])
def test_the_tuner_takes_the_fm_preset_and_its_jobs_train_with_adagrad(predictor_type):
    fm = FactorizationMachines("r", 1, "local_process", num_factors=4, predictor_type=predictor_type)
    presets = preset_ranges("fm")
    tuner = HyperparameterTuner(fm, "test:rmse" if predictor_type == "regressor" else "test:auc", presets)
    ranges = tuner.hyperparameter_ranges()
    assert {r["Name"] for group in ranges.values() for r in group} == set(presets)
    assert ranges["CategoricalParameterRanges"] == [{"Name": "optimizer", "Values": ["adagrad"]}]
    for bound in ("min_value", "max_value"):  # what a job at either corner of the space trains with
        tuned = {name: getattr(r, bound) for name, r in presets.items() if name != "optimizer"}
        _, hp = parse_for_algorithm({"feature_dim": 10, "num_factors": 4, "predictor_type": predictor_type,
                                     **tuned, "optimizer": presets["optimizer"].values[0]})
        assert hp["optimizer"] == "adagrad" and hp["factors_lr"] == tuned["factors_lr"]


def test_tuner_checks_objective_and_ranges_up_front():
    fm = FactorizationMachines("r", 1, "local_process", num_factors=4, predictor_type="regressor")
    with pytest.raises(ValueError, match=r"not a metric the training jobs report; .*test:rmse"):
        HyperparameterTuner(fm, "validation:rmse", {"epochs": IntegerParameter(1, 3)})
    with pytest.raises(InvalidHyperparameterError, match="num_factors=0 is not valid"):
        HyperparameterTuner(
            fm, "test:rmse", {"num_factors": IntegerParameter(0, 3)}, objective_type="Minimize"
        )
    with pytest.raises(ValueError, match="Hyperband strategy stops jobs itself"):
        HyperparameterTuner(
            fm,
            "test:rmse",
            {"epochs": IntegerParameter(1, 3)},
            strategy="Hyperband",
            early_stopping_type="Auto",
        )
