"""FactorizationMachines: parameters, inputs, training behaviour, early stopping, warm start, real data."""

from __future__ import annotations

import inspect
import logging
import re

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from algorithm import _fm_kernels as kernels
from algorithm._threads import numba_threads
from algorithm.csr import CSR
from algorithm.fm import DivergedError, FactorizationMachines, NotFittedError
from algorithm.metrics import binary_classification_cross_entropy, rmse
from algorithm.schemas import FM_SCHEMA, JOB_SETTINGS


def _toy(n: int = 400, d: int = 50, seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """Sparse rows with a planted FM: (X, 0/1 labels, real targets)."""
    rng = np.random.default_rng(seed)
    X = sp.random(n, d, density=0.1, format="csr", random_state=seed, dtype=np.float32)
    V = rng.normal(0, 0.7, (d, 3))
    target = X @ rng.normal(0, 1, d) + 0.5 * (((X @ V) ** 2).sum(1) - (X.multiply(X) @ V**2).sum(1))
    return X, (target > np.median(target)).astype(np.float32), target.astype(np.float32)


def _ctr(n: int = 2000, fields: int = 10, values: int = 50, seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray]:
    """One-hot click-like rows (``fields`` features of 1 each), about 1 in 4 labels positive."""
    rng = np.random.default_rng(seed)
    cols = (rng.integers(0, values, (n, fields)) + np.arange(fields) * values).ravel()
    X = sp.csr_matrix((np.ones(n * fields, np.float32), cols, np.arange(0, n * fields + 1, fields)),
                      shape=(n, fields * values))
    z = X @ rng.normal(0, 0.5, fields * values) - 1.5
    return X, (rng.random(n) < 1 / (1 + np.exp(-z))).astype(np.float32)


def _model(**params) -> FactorizationMachines:
    defaults = dict(feature_dim=50, num_factors=3, predictor_type="binary_classifier", mini_batch_size=50,
                    num_threads=1)
    return FactorizationMachines(**{**defaults, **params})


def test_parameters_are_the_schema() -> None:
    signature = inspect.signature(FactorizationMachines.__init__).parameters
    schema_names = [name for name in FM_SCHEMA if name not in JOB_SETTINGS]
    assert [name for name in signature if name != "self"] == schema_names
    for name, param in FM_SCHEMA.items():
        if name not in JOB_SETTINGS and not param.required:
            assert signature[name].default == param.default, name


def test_the_kernels_implement_every_optimizer_the_schema_allows() -> None:
    assert set(kernels.OPTIMIZER_CODES) == set(FM_SCHEMA["optimizer"].choices) == set(kernels.STATE_ARRAYS)


def test_get_set_params_and_no_work_in_init() -> None:
    model = _model(epochs=3)
    assert model.get_params()["epochs"] == 3
    assert model.set_params(epochs=5).epochs == 5
    with pytest.raises(ValueError, match="Invalid parameter"):
        model.set_params(learning_rate=1.0)
    with pytest.raises(NotFittedError):
        model.predict_scores(np.zeros((1, 50)))
    assert not [name for name in vars(model) if name.endswith("_")]


def test_invalid_parameters_are_all_reported() -> None:
    with pytest.raises(ValueError) as err:
        _model(epochs=0, optimizer="rmsprop", factors_lr=-1.0).fit(np.ones((2, 50)), [0, 1])
    for name in ("'epochs'", "'optimizer'", "'factors_lr'"):
        assert name in str(err.value)


def test_dataset_scipy_and_dense_inputs_agree() -> None:
    X, y, _ = _toy()
    dataset = CSR.from_matrix(X)
    inputs = (dataset, X, X.toarray(), X.tocoo())
    scores = [_model(epochs=2).fit(data, y).predict_scores(data) for data in inputs]
    for other in scores[1:]:
        np.testing.assert_array_equal(other, scores[0])
    assert scores[0].dtype == np.float32


def test_bad_inputs_are_clear_errors() -> None:
    X, y, _ = _toy()
    with pytest.raises(ValueError, match="labels 0 or 1"):
        _model().fit(X, y + 1)
    with pytest.raises(ValueError, match="feature index 50"):
        _model(feature_dim=50).fit(sp.csr_matrix((1, 60), dtype=np.float32) + sp.eye(1, 60, 50), [1.0])
    with pytest.raises(ValueError, match="one value per row"):
        _model().fit(X, y[:-1])
    with pytest.raises(ValueError, match="non-finite"):
        _model().fit(np.full((2, 50), np.nan), [0, 1])


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "adagrad", "ftrl"])
def test_each_optimizer_learns_the_planted_model(optimizer: str) -> None:
    X, y, _ = _toy()
    rates = {} if optimizer == "adam" else dict(bias_lr=0.1, linear_lr=0.2, factors_lr=0.1)
    history: list[float] = []
    def record(epoch: int, train: dict, test: dict, seconds: float) -> None:
        history.append(test["binary_classification_accuracy"])

    _model(epochs=30, optimizer=optimizer, **rates).fit(X, y, eval_set=(X, y), on_epoch=record)
    assert history[-1] > 0.8 and history[-1] > history[0]


def test_regressor_and_on_epoch_contract() -> None:
    X, _, target = _toy()
    calls = []
    model = FactorizationMachines(feature_dim=50, num_factors=3, predictor_type="regressor", epochs=4,
                                  mini_batch_size=20, num_threads=1, bias_lr=0.1, linear_lr=0.05,
                                  factors_lr=0.05, optimizer="adagrad")
    model.fit(X, target, eval_set=(X, target), on_epoch=lambda *args: calls.append(args))
    assert [c[0] for c in calls] == [0, 1, 2, 3]
    _, train, test, seconds = calls[-1]
    assert list(train) == ["rmse", "mse", "absolute_loss"] and list(test) == list(train)
    assert seconds > 0 and test["rmse"] < calls[0][2]["rmse"]
    assert model.best_epoch_ == 3 and model.n_epochs_ == 4 and model.best_score_ == test["rmse"]
    np.testing.assert_array_equal(model.predict(X), model.predict_scores(X))


def test_classifier_predict_is_thresholded_scores() -> None:
    X, y, _ = _toy()
    model = _model(epochs=2).fit(X, y)
    scores = model.predict_scores(X)
    assert ((scores >= 0) & (scores <= 1)).all()
    np.testing.assert_array_equal(model.predict(X), (scores >= 0.5).astype(np.float32))


def test_same_seed_and_threads_give_the_same_model() -> None:
    X, y, _ = _toy()
    for threads, deterministic in ((1, False), (2, True)):
        a = _model(epochs=3, seed=4, num_threads=threads, deterministic=deterministic).fit(X, y)
        b = _model(epochs=3, seed=4, num_threads=threads, deterministic=deterministic).fit(X, y)
        np.testing.assert_array_equal(a.V_, b.V_)
        np.testing.assert_array_equal(a.w_, b.w_)
        assert a.n_threads_ == threads
    c = _model(epochs=3, seed=5, num_threads=2, deterministic=True).fit(X, y)
    assert not np.array_equal(a.V_, c.V_)
    serial = _model(epochs=3, seed=4).fit(X, y)
    np.testing.assert_allclose(serial.V_, a.V_, atol=1e-5)  # other thread count: same maths, other sum order


def test_epoch_kernel_follows_threads_and_deterministic() -> None:
    from algorithm import _fm_kernels as kernels

    assert _model()._epoch_kernel(1, 1) == (kernels.train_epoch_serial, 1)
    assert _model()._epoch_kernel(4, 2) == (kernels.train_epoch_hogwild, 2)
    assert _model()._epoch_kernel(4, 1) == (kernels.train_epoch_serial, 1)
    assert _model(deterministic=True)._epoch_kernel(4, 2) == (kernels.train_epoch_parallel, 4)
    assert _model(deterministic=True)._epoch_kernel(4, 1) == (kernels.train_epoch_parallel, 4)


@pytest.mark.parametrize("k", [1, 8, 15, 32])
def test_per_thread_scratch_rows_never_share_a_cache_line(k: int) -> None:
    """The per-factor sums, squares and row slots are written for every nonzero: two threads' rows on one
    64-byte line would bounce it between the cores (sharing a line makes the 2-thread CTR epoch 1.5x as long)."""
    from algorithm.fm import _training_buffers

    X = sp.random(64, 40, density=0.3, format="csr", random_state=1, dtype=np.float32)
    rows = CSR(X.data, X.indices.astype(np.int64), X.indptr.astype(np.int64), 40)
    buffers = _training_buffers(3, rows, 16, 40, k, split_batches=False)
    for name, array, used in (("sums", buffers.sums, 1 + k), ("squares", buffers.squares, k),
                              ("row slots", buffers.row_slots, int(np.diff(X.indptr).max()))):
        assert array.shape[1] >= used, name
        for t in range(2):
            last_line = (array[t].ctypes.data + used * array.itemsize - 1) // 64
            assert last_line < array[t + 1].ctypes.data // 64, (name, t)


def test_hogwild_threads_learn_as_well_as_one_thread() -> None:
    X, y, _ = _toy(n=3000)
    train, test = slice(0, 2000), slice(2000, None)
    losses = {}
    with numba_threads(2) as running:
        assert running == 2, "needs NUMBA_NUM_THREADS >= 2"
        for threads in (1, 2):
            model = _model(epochs=20, num_threads=threads, optimizer="sgd", bias_lr=0.1, linear_lr=0.2,
                           factors_lr=0.1).fit(X[train], y[train])
            losses[threads] = binary_classification_cross_entropy(y[test], model.predict_scores(X[test]))
    assert losses[1] < 0.6
    assert losses[2] == pytest.approx(losses[1], rel=0.03)


def test_num_threads_zero_uses_numba_threads() -> None:
    X, y, _ = _toy()
    with numba_threads(1):
        assert _model(num_threads=0).fit(X, y).n_threads_ == 1


def test_early_stopping_keeps_the_best_epoch() -> None:
    X, y, _ = _toy(n=120)
    X_test, y_test, _ = _toy(n=400, seed=1)
    losses: list[float] = []
    model = _model(epochs=60, early_stopping_patience=3, bias_lr=0.5, linear_lr=0.5, factors_lr=0.5,
                   optimizer="sgd", mini_batch_size=10)
    model.fit(X, y, eval_set=(X_test, y_test),
              on_epoch=lambda e, tr, te, s: losses.append(te["binary_classification_cross_entropy"]))
    assert model.n_epochs_ < 60 and len(losses) == model.n_epochs_
    assert model.best_epoch_ == int(np.argmin(losses)) == model.n_epochs_ - 4
    assert model.best_score_ == pytest.approx(min(losses))
    final = binary_classification_cross_entropy(y_test, model.predict_scores(X_test))
    assert final == pytest.approx(min(losses))


def test_a_steadily_growing_loss_is_divergence_that_names_the_settings_to_lower(caplog) -> None:
    """SGD with positive_class_weight=20 on click-like data: the weighted loss grows for epochs on end without
    becoming NaN. Without early stopping no epoch's weights are known to be good: one warning, and the fit goes
    on; with it, a warning, and the fit stops with the best epoch's weights."""
    X, y = _ctr()
    params = dict(feature_dim=500, num_factors=4, optimizer="sgd", positive_class_weight=20.0, bias_lr=1.0,
                  linear_lr=1.0, factors_lr=1.0, mini_batch_size=20, epochs=10)
    caplog.set_level(logging.WARNING, logger="algorithm.fm")
    model = _model(**params).fit(X, y)
    assert model.n_epochs_ == 10 and model.stopped_early_ is None
    assert re.search(r"rose in each of the last 3 epochs.*linear_lr=1\.0.*positive_class_weight=20\.0.*"
                     r"clip_gradient.*Training goes on", caplog.text)
    assert caplog.text.count("rose in each of the last") == 1
    caplog.clear()
    X_test, y_test = _ctr(seed=1)
    losses: list[float] = []
    model = _model(**params, early_stopping_patience=5).fit(
        X, y, eval_set=(X_test, y_test),
        on_epoch=lambda e, tr, te, s: losses.append(te["binary_classification_cross_entropy"]))
    assert model.stopped_early_ == "diverging" and model.n_epochs_ < 10
    assert "positive_class_weight=20.0" in caplog.text
    assert f"keeps the weights of epoch {model.best_epoch_}" in caplog.text
    assert model.best_epoch_ == int(np.argmin(losses))
    final = binary_classification_cross_entropy(y_test, model.predict_scores(X_test))
    assert final == pytest.approx(min(losses))


def test_positive_class_weight_with_a_regressor_is_refused() -> None:
    X, _, target = _toy()
    with pytest.raises(ValueError, match=r"positive_class_weight=5\.0 applies to predictor_type=binary_classifier"):
        _model(predictor_type="regressor", positive_class_weight=5.0).fit(X, target)
    _model(predictor_type="regressor", positive_class_weight=1.0).fit(X, target)


def test_divergence_names_the_epoch_and_the_fix() -> None:
    X, _, target = _toy()
    model = FactorizationMachines(feature_dim=50, num_factors=3, predictor_type="regressor", epochs=5,
                                  optimizer="sgd", bias_lr=1e3, linear_lr=1e3, factors_lr=1e3, num_threads=1)
    with pytest.raises(DivergedError, match=r"epoch \d.*Lower the learning rates.*clip_gradient"):
        model.fit(X, target * 1e3)
    assert issubclass(DivergedError, ValueError)


@pytest.mark.parametrize(("optimizer", "adagrad_state"),
                         [("adam", "row"), ("sgd", "row"), ("adagrad", "row"), ("adagrad", "element"), ("ftrl", "row")])
def test_a_warm_start_continues_the_optimizer(optimizer: str, adagrad_state: str) -> None:
    """3 epochs and a warm start of 3 more train as 6 epochs do: the optimizer's state, its step count (Adam's
    bias correction) and the epochs' row orders continue."""
    X, _, target = _toy(n=600)
    train, test = slice(0, 450), slice(450, 600)
    params = dict(predictor_type="regressor", optimizer=optimizer, num_factors=4, adagrad_state=adagrad_state)
    six = _model(epochs=6, **params).fit(X[train], target[train])
    three = _model(epochs=3, **params).fit(X[train], target[train])
    continued = _model(epochs=3, **params).warm_start_from(three).fit(X[train], target[train])
    np.testing.assert_allclose(continued.V_, six.V_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(continued.w_, six.w_, rtol=1e-5, atol=1e-6)
    expected = rmse(target[test], six.predict_scores(X[test]))
    assert rmse(target[test], continued.predict_scores(X[test])) == pytest.approx(expected, rel=1e-4)
    assert continued.optimizer_state_.epochs == 6 and continued.optimizer_state_.steps == six.optimizer_state_.steps


def test_early_stopping_keeps_the_best_epochs_optimizer_state() -> None:
    """A warm start from an early-stopped fit continues from the kept epoch, not from where it stopped."""
    X, y = _ctr(n=600)
    X_test, y_test = _ctr(n=600, seed=1)
    params = dict(feature_dim=500, optimizer="adagrad", factors_lr=0.5, mini_batch_size=20)
    stopped = _model(epochs=40, early_stopping_patience=2, **params).fit(X, y, eval_set=(X_test, y_test))
    assert stopped.stopped_early_ == "early_stopping" and stopped.best_epoch_ < stopped.n_epochs_ - 1
    kept = stopped.best_epoch_ + 1
    assert stopped.optimizer_state_.epochs == kept
    continued = _model(epochs=2, **params).warm_start_from(stopped).fit(X, y)
    uninterrupted = _model(epochs=kept + 2, **params).fit(X, y)
    np.testing.assert_allclose(continued.V_, uninterrupted.V_, rtol=1e-5, atol=1e-6)


def test_a_warm_start_without_a_matching_state_starts_fresh_and_says_why(caplog) -> None:
    X, y, _ = _toy()
    first = _model(epochs=2, optimizer="adagrad").fit(X, y)
    caplog.set_level(logging.INFO, logger="algorithm.fm")
    _model(optimizer="adagrad").warm_start_from(first).fit(X, y)
    assert "adagrad optimizer continues from its state after 2 epoch(s)" in caplog.text
    caplog.clear()
    _model(optimizer="adam").warm_start_from(first).fit(X, y)
    assert "adam optimizer starts fresh (the earlier model was trained with optimizer=adagrad" in caplog.text
    caplog.clear()
    _model(optimizer="adagrad").warm_start_from(first.artifact_arrays()).fit(X, y)
    assert "starts fresh (the earlier model carries no optimizer state)" in caplog.text
    with pytest.raises(TypeError, match="fitted FactorizationMachines"):
        _model().warm_start_from([first.w0_, first.w_, first.V_])


def test_adagrad_state_per_row_and_per_factor_in_warm_starts(caplog) -> None:
    """Row-wise AdaGrad keeps one h per feature for its factors; an element-wise state continues as a row-wise
    one with each feature's mean h (what row-wise AdaGrad accumulates from the same gradients); a row-wise state
    does not continue an element-wise fit, which starts fresh and says why."""
    X, y, _ = _toy()
    row = _model(epochs=2, optimizer="adagrad", adagrad_state="row").fit(X, y)
    element = _model(epochs=2, optimizer="adagrad", adagrad_state="element").fit(X, y)
    assert row.optimizer_state_.arrays["h_V"].shape == (50, 1)
    assert element.optimizer_state_.arrays["h_V"].shape == (50, 3)
    assert row.optimizer_state_.arrays["h_w"].shape == element.optimizer_state_.arrays["h_w"].shape == (50,)
    caplog.set_level(logging.INFO, logger="algorithm.fm")
    frozen = dict(bias_lr=0.0, linear_lr=0.0, factors_lr=0.0)
    continued = _model(optimizer="adagrad", adagrad_state="row", **frozen).warm_start_from(element).fit(X, y)
    assert "this fit keeps one per feature (adagrad_state=row), their mean" in caplog.text
    np.testing.assert_allclose(continued.optimizer_state_.arrays["h_V"],
                               element.optimizer_state_.arrays["h_V"].mean(axis=1, keepdims=True), rtol=1e-6)
    caplog.clear()
    _model(optimizer="adagrad", adagrad_state="element").warm_start_from(row).fit(X, y)
    assert "adagrad optimizer starts fresh (the earlier model kept AdaGrad's h per feature" in caplog.text
    meta, arrays = row.artifact_optimizer_state()
    loaded = _model(optimizer="adagrad")
    loaded.w0_, loaded.w_, loaded.V_ = row.w0_, row.w_, row.V_
    loaded.restore_optimizer_state(meta, arrays)  # either width is a state of AdaGrad
    with pytest.raises(ValueError, match="not the state of that optimizer"):
        loaded.restore_optimizer_state(meta, {**arrays, "h_V": np.zeros((50, 2), np.float32)})


def test_warm_start_continues_from_earlier_weights() -> None:
    X, y, _ = _toy()
    first = _model(epochs=2).fit(X, y)
    frozen = _model(bias_lr=0.0, linear_lr=0.0, factors_lr=0.0).warm_start_from(first).fit(X, y)
    np.testing.assert_array_equal(frozen.V_, first.V_)
    np.testing.assert_array_equal(frozen.w0_, first.w0_)
    np.testing.assert_array_equal(_model().warm_start_from(first.artifact_arrays()).fit(X, y).w_.shape, (50,))
    with pytest.raises(ValueError, match=r"V \(50, 3\).*V \(50, 4\)"):
        _model(num_factors=4).warm_start_from(first)


def test_initializers_and_switches() -> None:
    X, y, _ = _toy()
    frozen = dict(bias_lr=0.0, linear_lr=0.0, factors_lr=0.0)
    model = _model(factors_init_method="constant", factors_init_value=0.25, linear_init_method="uniform",
                   linear_init_scale=0.5, **frozen).fit(X, y)
    assert (model.V_ == 0.25).all()
    assert np.abs(model.w_).max() <= 0.5 and np.abs(model.w_).max() > 0.3
    default_scale = _model(linear_init_method="uniform", linear_init_sigma=0.1, **frozen).fit(X, y)
    assert np.abs(default_scale.w_).max() <= np.sqrt(3) * 0.1
    off = _model(use_bias=False, use_linear=False, epochs=2).fit(X, y)
    assert off.w0_[0] == 0.0 and not off.w_.any() and off.V_.any()


def test_sample_weight_zero_rows_do_not_train() -> None:
    X, y, _ = _toy()
    X = sp.hstack([X, sp.csr_matrix(np.eye(400, 1, dtype=np.float32))]).tocsr()  # feature 50 only in row 0
    weights = np.ones(400, dtype=np.float32)
    weights[0] = 0.0
    params = dict(feature_dim=51, epochs=2, linear_wd=0.0, factors_wd=0.0)
    trained = _model(**params).fit(X, y, sample_weight=weights)
    untrained = _model(**params, linear_lr=0.0, factors_lr=0.0, bias_lr=0.0).fit(X, y)
    assert trained.w_[50] == untrained.w_[50]
    np.testing.assert_array_equal(trained.V_[50], untrained.V_[50])
    ones = _model(epochs=2).fit(X[:, :50], y, sample_weight=np.ones(400))
    np.testing.assert_array_equal(ones.V_, _model(epochs=2).fit(X[:, :50], y).V_)


def test_positive_class_weight_raises_positive_scores() -> None:
    X, y, _ = _toy()
    plain = _model(epochs=5).fit(X, y).predict_scores(X).mean()
    weighted = _model(epochs=5, positive_class_weight=5.0).fit(X, y).predict_scores(X).mean()
    assert weighted > plain


def test_state_bytes() -> None:
    d, k = 1000, 8
    model = 4 * (1 + d + d * k)
    assert FactorizationMachines.state_bytes(d, k, "sgd") == model + 4 * d
    assert FactorizationMachines.state_bytes(d, k, "adam") == 3 * model + 4 * d
    assert FactorizationMachines.state_bytes(d, k, "adagrad", n_threads=4, adagrad_state="element") == (
        2 * model + 16 * d)
    assert FactorizationMachines.state_bytes(d, k, "adagrad", adagrad_state="row") == model + 4 * (1 + 2 * d) + 4 * d
    assert FactorizationMachines.state_bytes(d, k, "adam", early_stopping=True) == 6 * model + 4 * d


def test_digits_is_it_a_zero_with_builtin_defaults() -> None:
    """Real data, built-in default learning rates (Adam): pixels scaled to [0, 1] by dividing by 16."""
    X, digit = load_digits(return_X_y=True)
    X = (X / 16.0).astype(np.float32)
    y = (digit == 0).astype(np.float32)
    X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=0, stratify=y)
    model = FactorizationMachines(feature_dim=64, num_factors=10, predictor_type="binary_classifier",
                                  epochs=100, mini_batch_size=100, num_threads=1)
    model.fit(X_train, y_train)
    assert (model.predict(X_test) == y_test).mean() >= 0.98


def test_predict_proba_is_sklearn_shaped():
    from algorithm.fm import FactorizationMachines

    rng = np.random.default_rng(0)
    X = rng.random((60, 5)).astype(np.float32)
    y = (X[:, 0] > 0.5).astype(np.float32)
    model = FactorizationMachines(feature_dim=5, num_factors=2, predictor_type="binary_classifier",
                                  epochs=2).fit(X, y)
    proba = model.predict_proba(X)
    assert proba.shape == (60, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(proba[:, 1], model.predict_scores(X))
    regressor = FactorizationMachines(feature_dim=5, num_factors=2, predictor_type="regressor").fit(X, y)
    with pytest.raises(AttributeError, match="binary_classifier"):
        regressor.predict_proba(X)
