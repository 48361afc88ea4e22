"""The optimizer and the per-optimizer defaults of the learning rates, weight decays and eps: an unset optimizer
is AdaGrad unless one of the built-in's optimizer settings is set (then the built-in's Adam), Adam keeps the
built-in's defaults, the other optimizers take one tuned table, a value the user sets always wins, and training
reports and stores the optimizer and values it used."""

import json
import logging

import numpy as np
import pytest

from algorithm.checkpoint import Checkpoints
from algorithm.fm import FactorizationMachines
from algorithm.metrics import rmse
from algorithm.optimizer_defaults import (
    BUILTIN_OPTIMIZER_SETTINGS,
    OPTIMIZER_DEFAULTS,
    PREDICTOR_TYPE_DEFAULTS,
    optimizer_defaults,
)
from algorithm.schemas import parse_for_algorithm
from container.config import ChannelConfig
from container.fm_training import train_fm
from container.formats.recordio import write_numpy_to_dense_tensor
from container.paths import SageMakerPaths

REQUIRED = {"feature_dim": "20", "num_factors": "4", "predictor_type": "regressor"}
RATES = ("bias_lr", "linear_lr", "factors_lr", "bias_wd", "linear_wd", "factors_wd")
BUILTIN = {"bias_lr": 0.1, "linear_lr": 0.001, "factors_lr": 0.0001, "bias_wd": 0.01, "linear_wd": 0.001,
           "factors_wd": 0.00001}


def test_every_optimizer_defaults_every_rate_and_nothing_else():
    for table in OPTIMIZER_DEFAULTS.values():
        assert set(RATES) <= set(table) <= {*RATES, "eps", "factors_init_sigma"}


def test_explicit_adam_keeps_the_builtin_defaults_in_the_container_and_the_estimator():
    _, hp = parse_for_algorithm({**REQUIRED, "optimizer": "adam"})
    assert hp["optimizer"] == "adam"
    assert {name: hp[name] for name in RATES} == BUILTIN
    model = FactorizationMachines(feature_dim=20, num_factors=4, predictor_type="regressor", optimizer="adam")
    assert {name: model.resolved_params()[name] for name in RATES} == BUILTIN


@pytest.mark.parametrize("predictor_type", ["regressor", "binary_classifier"])
def test_an_unset_optimizer_is_adagrad_at_its_defaults_in_the_container_and_the_estimator(predictor_type):
    expected = {**optimizer_defaults("adagrad", predictor_type), "optimizer": "adagrad"}
    _, hp = parse_for_algorithm({**REQUIRED, "predictor_type": predictor_type})
    model = FactorizationMachines(feature_dim=20, num_factors=4, predictor_type=predictor_type)
    assert model.get_params()["optimizer"] is None
    for name, value in expected.items():
        assert hp[name] == value == model.resolved_params()[name], name


@pytest.mark.parametrize("name", BUILTIN_OPTIMIZER_SETTINGS)
def test_a_builtin_optimizer_setting_without_optimizer_means_the_builtins_adam(name):
    _, hp = parse_for_algorithm({**REQUIRED, name: "0.5"})
    model = FactorizationMachines(feature_dim=20, num_factors=4, predictor_type="regressor", **{name: 0.5})
    for params in (hp, model.resolved_params()):
        assert params["optimizer"] == "adam" and params[name] == 0.5
        assert {rate: params[rate] for rate in RATES if rate != name} == {
            rate: value for rate, value in BUILTIN.items() if rate != name}


def test_the_unset_optimizer_and_why_are_logged(caplog):
    caplog.set_level(logging.INFO, logger="algorithm.schemas")
    parse_for_algorithm(REQUIRED)
    assert "optimizer unset: training with adagrad" in caplog.text
    caplog.clear()
    parse_for_algorithm({**REQUIRED, "factors_wd": "0.1", "eps": "1e-6"})
    assert "optimizer unset and factors_wd, eps set: training with adam, the built-in's optimizer" in caplog.text
    caplog.clear()
    parse_for_algorithm({**REQUIRED, "optimizer": "sgd"})
    assert "optimizer" not in caplog.text


@pytest.mark.parametrize("optimizer", ["sgd", "adagrad", "ftrl"])
def test_unset_values_take_the_optimizer_table_and_set_values_win(optimizer):
    _, hp = parse_for_algorithm({**REQUIRED, "optimizer": optimizer})
    for name, value in OPTIMIZER_DEFAULTS[optimizer].items():
        assert hp[name] == value, name
    _, hp = parse_for_algorithm({**REQUIRED, "optimizer": optimizer, "linear_lr": "0.02", "factors_wd": "0"})
    assert (hp["linear_lr"], hp["factors_wd"]) == (0.02, 0.0)
    assert hp["bias_lr"] == OPTIMIZER_DEFAULTS[optimizer]["bias_lr"]


def test_predictor_type_overrides_reach_the_container_and_the_estimator():
    for (optimizer, predictor_type), table in PREDICTOR_TYPE_DEFAULTS.items():
        assert optimizer in OPTIMIZER_DEFAULTS and set(table) <= set(OPTIMIZER_DEFAULTS[optimizer])
        expected = optimizer_defaults(optimizer, predictor_type)
        assert {name: expected[name] for name in table} == table
        _, hp = parse_for_algorithm({**REQUIRED, "predictor_type": predictor_type, "optimizer": optimizer})
        model = FactorizationMachines(feature_dim=20, num_factors=4, predictor_type=predictor_type,
                                      optimizer=optimizer)
        for name, value in expected.items():
            assert hp[name] == value == model.resolved_params()[name], name
    classifier = optimizer_defaults("adagrad", "binary_classifier")
    assert classifier["factors_lr"] != optimizer_defaults("adagrad", "regressor")["factors_lr"]


def test_the_estimator_keeps_unset_params_and_stores_the_resolved_values():
    rng = np.random.default_rng(0)
    X, y = rng.random((200, 20), dtype=np.float32), rng.random(200, dtype=np.float32)
    model = FactorizationMachines(feature_dim=20, num_factors=4, predictor_type="regressor", optimizer="adagrad",
                                  linear_lr=0.05, num_threads=1).fit(X, y)
    assert model.get_params()["factors_lr"] is None  # scikit-learn: fit does not change the parameters
    stored = model.artifact_meta()["hyperparameters"]
    assert stored["linear_lr"] == 0.05
    assert stored["factors_lr"] == OPTIMIZER_DEFAULTS["adagrad"]["factors_lr"]
    assert stored["eps"] == OPTIMIZER_DEFAULTS["adagrad"]["eps"]
    # an explicit copy of the resolved values trains the same model
    again = FactorizationMachines(**stored).fit(X, y)
    np.testing.assert_array_equal(again.V_, model.V_)


def _ratings(seed: int, users: int = 400, items: int = 300, n: int = 40_000):
    """One-hot (user, item) rows with ratings from biases + a rank-3 interaction + noise."""
    rng = np.random.default_rng(seed)
    u, i = rng.integers(0, users, n), rng.integers(0, items, n)
    P, Q = rng.standard_normal((users, 3)) * 0.6, rng.standard_normal((items, 3)) * 0.6
    y = 3.5 + rng.normal(0, 0.4, users)[u] + rng.normal(0, 0.4, items)[i] + (P[u] * Q[i]).sum(1)
    y = (y + rng.normal(0, 0.5, n)).astype(np.float32)
    X = np.zeros((n, users + items), np.float32)
    X[np.arange(n), u] = 1.0
    X[np.arange(n), users + i] = 1.0
    return X, y


def test_the_defaults_learn_what_the_builtin_adam_defaults_do_not():
    X, y = _ratings(0)
    train, test = slice(0, 36_000), slice(36_000, None)
    scores = {}
    for optimizer in (None, "adam"):
        model = FactorizationMachines(feature_dim=X.shape[1], num_factors=8, predictor_type="regressor", epochs=10,
                                      optimizer=optimizer, num_threads=1).fit(X[train], y[train])
        scores[optimizer] = rmse(y[test], model.predict_scores(X[test]))
    baseline = float(np.std(y[test]))
    assert scores[None] < 0.85 * baseline, (scores, baseline)  # measured 0.76
    assert scores["adam"] > 0.9 * baseline, (scores, baseline)  # 0.93: the built-in's rates barely move in 10 epochs


def _job_with_ratings(tmp_path, seed: int):
    """A job directory whose train channel holds a small ratings set as dense RecordIO; (paths, X)."""
    paths = SageMakerPaths(tmp_path)
    X, y = _ratings(seed, users=30, items=20, n=600)
    channel = paths.channel_dir("train")
    channel.mkdir(parents=True)
    with open(channel / "part0", "wb") as fh:
        write_numpy_to_dense_tensor(fh, X, y)
    return paths, X


def test_the_training_job_logs_and_stores_the_values_it_used(tmp_path, caplog):
    paths, X = _job_with_ratings(tmp_path, seed=1)
    _, hp = parse_for_algorithm({"feature_dim": str(X.shape[1]), "num_factors": "4",
                                 "predictor_type": "regressor", "optimizer": "adagrad", "bias_lr": "0.3",
                                 "num_threads": "1"})
    caplog.set_level(logging.INFO)
    train_fm(paths, hp, {"train": ChannelConfig("train")}, "algo-1", Checkpoints(None))
    table = OPTIMIZER_DEFAULTS["adagrad"]
    assert f"Optimizer adagrad: bias_lr=0.3, linear_lr={table['linear_lr']:g}" in caplog.text
    stored = json.loads((paths.model_dir / "model.json").read_text())["hyperparameters"]
    assert stored["bias_lr"] == 0.3 and stored["factors_lr"] == table["factors_lr"]


def test_a_default_job_logs_and_stores_the_optimizer_it_resolved(tmp_path, caplog):
    paths, X = _job_with_ratings(tmp_path, seed=2)
    caplog.set_level(logging.INFO)
    _, hp = parse_for_algorithm({"feature_dim": str(X.shape[1]), "num_factors": "4",
                                 "predictor_type": "regressor", "num_threads": "1"})
    train_fm(paths, hp, {"train": ChannelConfig("train")}, "algo-1", Checkpoints(None))
    assert "optimizer unset: training with adagrad" in caplog.text
    assert f"Optimizer adagrad: bias_lr={OPTIMIZER_DEFAULTS['adagrad']['bias_lr']:g}" in caplog.text
    stored = json.loads((paths.model_dir / "model.json").read_text())["hyperparameters"]
    assert {name: stored[name] for name in ("optimizer", *RATES)} == {
        "optimizer": "adagrad", **{name: OPTIMIZER_DEFAULTS["adagrad"][name] for name in RATES}}


def test_the_estimator_with_no_optimizer_stores_adagrad_and_reloads_it():
    X, y = _ratings(3, users=30, items=20, n=600)
    model = FactorizationMachines(feature_dim=X.shape[1], num_factors=4, predictor_type="regressor",
                                  epochs=2, num_threads=1).fit(X, y)
    assert model.get_params()["optimizer"] is None
    stored = model.artifact_meta()["hyperparameters"]
    assert stored["optimizer"] == "adagrad" and stored["eps"] == OPTIMIZER_DEFAULTS["adagrad"]["eps"]
    again = FactorizationMachines(**stored).fit(X, y)
    np.testing.assert_array_equal(again.V_, model.V_)
