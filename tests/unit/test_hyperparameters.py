"""The schema parser: lenient with what launchers send, strict and complete about problems."""

import pytest

from algorithm.hyperparameters import HyperparameterError, serialize_hyperparameters
from algorithm.schemas import FM_SCHEMA, SCHEMAS, WALS_SCHEMA, parse_for_algorithm

FM_REQUIRED = {"feature_dim": "784", "num_factors": "10", "predictor_type": "binary_classifier"}


@pytest.mark.parametrize("raw", ["64", 64, '"64"', '"\\"64\\""', "64.0", "6.4e1", " 64 "])
def test_int_accepts_launcher_spellings(raw):
    _, hp = parse_for_algorithm({**FM_REQUIRED, "num_factors": raw})
    assert hp["num_factors"] == 64 and isinstance(hp["num_factors"], int)


@pytest.mark.parametrize("raw,expected", [("1e-05", 1e-5), ("0.01", 0.01), (2, 2.0), ('"0.5"', 0.5)])
def test_float_accepts_launcher_spellings(raw, expected):
    _, hp = parse_for_algorithm({**FM_REQUIRED, "factors_lr": raw})
    assert hp["factors_lr"] == pytest.approx(expected)


@pytest.mark.parametrize("raw,expected", [("true", True), ("True", True), ("FALSE", False), ("0", False),
                                          (True, True)])
def test_bool_accepts_launcher_spellings(raw, expected):
    _, hp = parse_for_algorithm({**FM_REQUIRED, "use_bias": raw})
    assert hp["use_bias"] is expected


def test_defaults_match_the_builtin():
    _, hp = parse_for_algorithm(FM_REQUIRED)
    assert hp["algorithm"] == "fm"
    assert (hp["epochs"], hp["mini_batch_size"]) == (1, 1000)
    assert (hp["bias_init_sigma"], hp["linear_init_sigma"], hp["factors_init_sigma"]) == (0.01, 0.01, 0.001)
    assert hp["optimizer"] == "adagrad"  # unset: not the built-in's (algorithm.optimizer_defaults)
    _, hp = parse_for_algorithm({**FM_REQUIRED, "optimizer": "adam"})
    assert (hp["bias_lr"], hp["linear_lr"], hp["factors_lr"]) == (0.1, 0.001, 0.0001)
    assert (hp["bias_wd"], hp["linear_wd"], hp["factors_wd"]) == (0.01, 0.001, 0.00001)
    assert (hp["bias_init_sigma"], hp["linear_init_sigma"], hp["factors_init_sigma"]) == (0.01, 0.01, 0.001)
    assert hp["clip_gradient"] is None


def test_reserved_keys_are_ignored_and_logged(caplog):
    caplog.set_level("INFO")
    _, hp = parse_for_algorithm({**FM_REQUIRED, "_tuning_objective_metric": "test:rmse",
                                 "sagemaker_program": "x"})
    assert "_tuning_objective_metric" not in hp and "sagemaker_program" not in hp
    assert "_tuning_objective_metric" in caplog.text


# The built-in's default-conf.json (contract 4.1): its internal settings a job spec written for it may carry.
BUILTIN_INTERNALS = {"_data_format": "record", "_kvstore": "auto", "_learning_rate": "1.0", "_log_level": "info",
                     "_num_gpus": "auto", "_num_kv_servers": "auto", "_optimizer": "adam",
                     "_tuning_objective_metric": "", "_use_full_symbolic": "true", "_wd": "1.0"}


def test_builtin_internal_hyperparameters_are_ignored_each_with_a_log_line(caplog):
    caplog.set_level("INFO")
    _, hp = parse_for_algorithm({**FM_REQUIRED, **BUILTIN_INTERNALS, "_some_future_knob": "1"})
    assert not [name for name in hp if name.startswith("_")]
    for name in [*BUILTIN_INTERNALS, "_some_future_knob"]:
        assert f"Ignoring the built-in's internal hyperparameter {name}=" in caplog.text
    assert "_optimizer='adam': it has no effect here (set optimizer instead)" in caplog.text


def test_unknown_names_without_underscore_still_fail():
    with pytest.raises(HyperparameterError, match="unknown hyperparameter 'kvstore'"):
        parse_for_algorithm({**FM_REQUIRED, "_kvstore": "auto", "kvstore": "auto"})


def test_all_problems_reported_at_once_naming_parameter_value_and_allowed():
    with pytest.raises(HyperparameterError) as info:
        parse_for_algorithm({"feature_dim": "0", "num_factors": "ten", "epochs": "1.5", "bogus": "1",
                             "bias_init_method": "xavier"})
    problems = info.value.problems
    text = str(info.value)
    assert len(problems) == 6
    assert "feature_dim='0' is not valid: expected an integer > 0" in text
    assert "num_factors='ten'" in text
    assert "epochs='1.5'" in text
    assert "unknown hyperparameter 'bogus'" in text
    assert "bias_init_method='xavier' is not valid: expected one of normal, uniform, constant" in text
    assert "predictor_type is required" in text


@pytest.mark.parametrize("bad", ["nan", "inf", "", "[1]", True])
def test_non_finite_or_non_numbers_rejected(bad):
    with pytest.raises(HyperparameterError, match="bias_lr"):
        parse_for_algorithm({**FM_REQUIRED, "bias_lr": bad})


def test_negative_learning_rate_rejected():
    with pytest.raises(HyperparameterError, match=r"linear_lr='-1' is not valid: expected a number >= 0"):
        parse_for_algorithm({**FM_REQUIRED, "linear_lr": "-1"})


def test_algorithm_selects_the_wals_schema():
    algorithm, hp = parse_for_algorithm({"algorithm": "wals", "embedding_dimension": "16"})
    assert algorithm == "wals"
    assert hp["unobserved_weight"] == 0.1 and hp["num_rows"] is None
    with pytest.raises(HyperparameterError, match="algorithm='svd'"):
        parse_for_algorithm({"algorithm": "svd"})
    with pytest.raises(HyperparameterError, match="unknown hyperparameter 'num_factors'"):
        parse_for_algorithm({"algorithm": "wals", "embedding_dimension": "4", "num_factors": "4"})


def test_serialize_round_trips_through_the_parser():
    _, hp = parse_for_algorithm({**FM_REQUIRED, "use_bias": "false", "eps": "1e-8"})
    again = parse_for_algorithm(serialize_hyperparameters(hp))[1]
    assert again == hp


def test_every_param_documented_and_default_valid():
    for schema in SCHEMAS.values():
        for param in schema.values():
            assert param.description.endswith(".")
            if param.default is not None:
                assert param.parse(param.default) == param.default
    assert "feature_dim" in FM_SCHEMA and "embedding_dimension" in WALS_SCHEMA


def test_reference_page_is_generated_from_the_schema():
    from pathlib import Path

    from container.schema_docs import render

    page = Path(__file__).resolve().parents[2] / "docs" / "hyperparameters.md"
    assert page.read_text() == render(), "run: python -m container.schema_docs > docs/hyperparameters.md"


def test_positive_class_weight_with_a_regressor_is_refused_by_the_job_and_the_client():
    from fmwals.errors import InvalidHyperparameterError
    from fmwals.hyperparams import check_complete

    raw = {**FM_REQUIRED, "predictor_type": "regressor", "positive_class_weight": "5"}
    with pytest.raises(HyperparameterError, match=r"positive_class_weight=5\.0 applies to predictor_type="
                                                  r"binary_classifier only"):
        parse_for_algorithm(raw)
    with pytest.raises(InvalidHyperparameterError, match=r"positive_class_weight=5\.0"):
        check_complete(raw)
    assert parse_for_algorithm({**raw, "positive_class_weight": "1"})[1]["positive_class_weight"] == 1.0
    assert parse_for_algorithm({**raw, "predictor_type": "binary_classifier"})[1]["positive_class_weight"] == 5.0
