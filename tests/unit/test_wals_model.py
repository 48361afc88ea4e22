"""The WALS estimator: objective and metrics, TF-style weights, the implicit form against ``implicit``,
early stopping, scoring, recommendation, projection (fold-in) and the artifact hooks."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import scipy.sparse as sp

from algorithm import _wals_kernels as kernels
from algorithm import _wals_reference as reference
from algorithm import artifact
from algorithm.schemas import JOB_PARAMS, WALS_SCHEMA
from algorithm.wals import WALS, NotFittedError, _entries
from algorithm.warmup import warm_up_wals

N_ROWS, N_COLS, K = 30, 20, 4


def _matrix(seed: int = 0, n: int = N_ROWS, m: int = N_COLS, density: float = 0.25) -> sp.csr_matrix:
    R = sp.random(n, m, density=density, format="csr", random_state=seed, dtype=np.float32)
    R.data = np.ceil(R.data * 5).astype(np.float32)  # ratings / counts 1..5
    return R


def _history(model: WALS, R: sp.csr_matrix, test: sp.csr_matrix | None = None) -> list[tuple]:
    calls: list[tuple] = []
    model.fit(R, eval_set=test, on_epoch=lambda *args: calls.append(args))
    return calls


def _dense_problem(model: WALS, R: sp.csr_matrix) -> tuple[np.ndarray, np.ndarray]:
    """Dense targets T and weights W of the full matrix, straight from the objective in docs/wals.md."""
    n, m = R.shape
    w0 = model.unobserved_weight
    r = np.broadcast_to(np.asarray(model.row_weights, dtype=np.float64), (n,))
    c = np.broadcast_to(np.asarray(model.col_weights, dtype=np.float64), (m,))
    A = R.toarray().astype(np.float64)
    observed = np.zeros((n, m), dtype=bool)
    observed[R.nonzero()] = True
    if model.alpha is None:
        T, W = A, w0 + np.outer(r, c) * observed
    else:
        T, W = (A > 0).astype(np.float64), w0 + model.alpha * np.outer(r, c) * A
    return T, W


# ----------------------------------------------------------------------------------------- parameters


def test_parameters_are_the_schema_names_and_defaults() -> None:
    model = WALS(embedding_dimension=3)
    params = model.get_params()
    assert set(params) == set(WALS_SCHEMA) - set(JOB_PARAMS)
    for name, value in params.items():
        if name != "embedding_dimension":
            assert value == WALS_SCHEMA[name].default, name


def test_the_kernels_implement_every_solver_the_schema_allows() -> None:
    assert WALS_SCHEMA["solver"].choices == kernels.SOLVERS


def test_set_params_and_validation() -> None:
    model = WALS(embedding_dimension=3).set_params(solver="cg", alpha=2.0)
    assert (model.solver, model.alpha) == ("cg", 2.0)
    with pytest.raises(ValueError, match="Invalid parameter"):
        model.set_params(factors=3)
    bad = WALS(embedding_dimension=0, solver="lu", row_weights=-1.0, alpha=0.0)
    with pytest.raises(ValueError) as err:
        bad.fit(_matrix())
    message = str(err.value)
    for name in ("embedding_dimension", "solver", "row_weights", "alpha"):
        assert repr(name) in message


def test_not_fitted() -> None:
    with pytest.raises(NotFittedError):
        WALS(embedding_dimension=2).predict([0], [0])


# ----------------------------------------------------------------------------------------- objective


@pytest.mark.parametrize("alpha", [None, 3.0])
@pytest.mark.parametrize("weights", ["scalar", "vector"])
def test_loss_and_rwse_match_the_dense_objective(alpha: float | None, weights: str) -> None:
    rng = np.random.default_rng(1)
    R = _matrix(1)
    row_w = 0.7 if weights == "scalar" else rng.uniform(0, 2, N_ROWS)
    col_w = 1.3 if weights == "scalar" else rng.uniform(0, 2, N_COLS)
    model = WALS(embedding_dimension=K, alpha=alpha, row_weights=row_w, col_weights=col_w,
                 unobserved_weight=0.2, regularization_coeff=0.3, max_sweeps=2)
    calls = _history(model, R)
    T, W = _dense_problem(model, R)
    loss, regularization = reference.dense_objective(T, W, model.row_factors_, model.col_factors_, 0.3)
    train = calls[-1][1]
    assert train["loss"] == pytest.approx(loss + regularization, rel=1e-5)
    assert train["rwse"] == pytest.approx(math.sqrt(loss / W.sum()), rel=1e-5)


@pytest.mark.parametrize("solver", kernels.SOLVERS)
@pytest.mark.parametrize("alpha", [None, 5.0])
def test_the_objective_never_increases(solver: str, alpha: float | None) -> None:
    """Each half-sweep minimizes the objective over one side (exactly for cholesky, by descent for cg)."""
    model = WALS(embedding_dimension=K, solver=solver, alpha=alpha, max_sweeps=8)
    losses = [call[1]["loss"] for call in _history(model, _matrix(2))]
    assert all(b <= a * (1 + 1e-5) for a, b in itertools.pairwise(losses)), losses


def test_worked_example_of_the_docs() -> None:
    """docs/wals.md: one row, observed a_00 = 4 and a_02 = 2, k = 1, V = (1, 2, 0.5), w0 = 0.1, λ = 0.5,
    column weights (1, 2, 1)."""
    model = WALS.from_artifact(
        {"hyperparameters": {"embedding_dimension": 1, "unobserved_weight": 0.1, "regularization_coeff": 0.5,
                             "row_weights": 1.0, "col_weights": None},
         "num_rows": 1, "num_cols": 3, "embedding_dimension": 1},
        {"row_factors": np.zeros((1, 1), np.float32),
         "col_factors": np.array([[1.0], [2.0], [0.5]], np.float32),
         "col_weights": np.array([1.0, 2.0, 1.0], np.float32)})
    row = sp.csr_matrix(np.array([[4.0, 0.0, 2.0]], dtype=np.float32))
    assert model.project_rows(row)[0, 0] == pytest.approx(5.5 / 2.275, rel=1e-6)
    model.set_params(alpha=2.0, unobserved_weight=1.0)
    assert model.project_rows(row)[0, 0] == pytest.approx(11.5 / 14.75, rel=1e-6)


def test_duplicates_are_summed_and_the_input_is_not_modified() -> None:
    rows, cols = np.array([0, 0, 1, 2, 0]), np.array([1, 1, 2, 0, 1])
    values = np.array([1.0, 2.0, 4.0, 5.0, 0.5], dtype=np.float32)
    coo = sp.coo_matrix((values, (rows, cols)), shape=(3, 3))
    summed = sp.csr_matrix(([3.5, 4.0, 5.0], ([0, 1, 2], [1, 2, 0])), shape=(3, 3), dtype=np.float32)
    a = WALS(embedding_dimension=2, max_sweeps=2).fit(coo)
    b = WALS(embedding_dimension=2, max_sweeps=2).fit(summed)
    np.testing.assert_array_equal(a.row_factors_, b.row_factors_)
    assert coo.nnz == 5


def test_stored_zeros_are_unobserved_in_the_implicit_form_only() -> None:
    R = _matrix(3)
    with_zeros = R.copy()
    with_zeros.data[::3] = 0.0
    without = with_zeros.copy()
    without.eliminate_zeros()
    implicit = [WALS(embedding_dimension=K, alpha=2.0, max_sweeps=2).fit(m).row_factors_
                for m in (with_zeros, without)]
    np.testing.assert_allclose(implicit[0], implicit[1], rtol=1e-4, atol=1e-5)
    explicit = [WALS(embedding_dimension=K, max_sweeps=2).fit(m).row_factors_ for m in (with_zeros, without)]
    assert not np.allclose(explicit[0], explicit[1])


@pytest.mark.parametrize("alpha", [None, 3.0])
def test_entry_weights_match_the_reference(alpha: float | None) -> None:
    """fit(entry_weights=S): one sweep equals the float64 reference built entry by entry from docs/wals.md
    (explicit w = w0 + r c s; implicit count s·a), and the loss is the dense objective with those weights.
    S is given with duplicates and R has a stored zero with weight 0 (its pattern must still match)."""
    rng = np.random.default_rng(30)
    R = _matrix(30)
    R.data[1] = 0.0
    S = R.copy()
    S.data = rng.uniform(0.0, 3.0, R.nnz).astype(np.float32)
    S.data[[1, 4]] = 0.0
    halves = S.tocoo()
    S_duplicated = sp.coo_matrix((np.concatenate([halves.data / 2, halves.data / 2]),
                                  (np.tile(halves.row, 2), np.tile(halves.col, 2))), shape=R.shape)
    row_w, col_w = rng.uniform(0.5, 2, N_ROWS), rng.uniform(0.5, 2, N_COLS)
    U0, V0 = rng.normal(size=(N_ROWS, K)), rng.normal(size=(N_COLS, K))
    model = WALS(embedding_dimension=K, alpha=alpha, row_weights=row_w, col_weights=col_w,
                 unobserved_weight=0.2, regularization_coeff=0.3, max_sweeps=1, row_init="model",
                 col_init="model")
    calls: list[tuple] = []
    model.fit(R, entry_weights=S_duplicated, init_row_factors=U0, init_col_factors=V0,
              on_epoch=lambda *args: calls.append(args))
    rows, cols = reference.entries(R, row_w, col_w, alpha, S_duplicated)
    U = reference.solve_cholesky(*rows, V0.astype(np.float32), 0.2, 0.3)
    V = reference.solve_cholesky(*cols, U.astype(np.float32), 0.2, 0.3)
    assert np.abs(model.row_factors_ - U).max() <= 1e-4 * max(1.0, np.abs(U).max())
    assert np.abs(model.col_factors_ - V).max() <= 1e-4 * max(1.0, np.abs(V).max())
    observed = np.zeros(R.shape, dtype=bool)
    observed[R.nonzero()] = True
    A, s = R.toarray().astype(np.float64), S.toarray().astype(np.float64)
    if alpha is None:
        T, W = A, 0.2 + np.outer(row_w, col_w) * s * observed
    else:
        T, W = (s * A > 0).astype(np.float64), 0.2 + alpha * np.outer(row_w, col_w) * s * A
    loss, regularization = reference.dense_objective(T, W, model.row_factors_, model.col_factors_, 0.3)
    assert calls[0][1]["loss"] == pytest.approx(loss + regularization, rel=1e-5)


def test_entry_weights_of_one_change_nothing_and_bad_ones_are_refused() -> None:
    R = _matrix(31)
    ones = R.copy()
    ones.data[:] = 1.0
    for alpha in (None, 2.0):
        plain = WALS(embedding_dimension=K, alpha=alpha, max_sweeps=2).fit(R)
        weighted = WALS(embedding_dimension=K, alpha=alpha, max_sweeps=2).fit(R, entry_weights=ones)
        np.testing.assert_array_equal(plain.row_factors_, weighted.row_factors_)
    other_pattern = ones.copy()
    other_pattern.data[0] = 0.0
    other_pattern.eliminate_zeros()
    with pytest.raises(ValueError, match="exactly the entries of R"):
        WALS(embedding_dimension=K).fit(R, entry_weights=other_pattern)
    negative = ones.copy()
    negative.data[0] = -1.0
    with pytest.raises(ValueError, match=">= 0"):
        WALS(embedding_dimension=K).fit(R, entry_weights=negative)
    with pytest.raises(ValueError, match="entry_weights has shape"):
        WALS(embedding_dimension=K).fit(R, entry_weights=ones[:5])
    padded = WALS(embedding_dimension=K, num_rows=N_ROWS + 2, max_sweeps=1).fit(R, entry_weights=ones)
    assert padded.row_factors_.shape == (N_ROWS + 2, K)


def test_declared_shape_pads_with_empty_rows_and_columns() -> None:
    model = WALS(embedding_dimension=K, num_rows=N_ROWS + 3, num_cols=N_COLS + 2, max_sweeps=2).fit(_matrix())
    assert model.row_factors_.shape == (N_ROWS + 3, K)
    assert model.col_factors_.shape == (N_COLS + 2, K)
    assert not model.row_factors_[N_ROWS:].any() and not model.col_factors_[N_COLS:].any()
    with pytest.raises(ValueError, match="num_rows=5"):
        WALS(embedding_dimension=K, num_rows=5).fit(_matrix())


def test_input_errors() -> None:
    R = _matrix()
    with pytest.raises(TypeError, match="scipy sparse"):
        WALS(embedding_dimension=K).fit(R.toarray())
    negative = R.copy()
    negative.data[0] = -1.0
    with pytest.raises(ValueError, match="values >= 0"):
        WALS(embedding_dimension=K, alpha=1.0).fit(negative)
    with pytest.raises(ValueError, match="eval_set has shape"):
        WALS(embedding_dimension=K).fit(R, eval_set=R[:5])
    with pytest.raises(ValueError, match="row_weights"):
        WALS(embedding_dimension=K, row_weights=np.ones(3)).fit(R)
    with pytest.raises(ValueError, match="col_init='model' needs"):
        WALS(embedding_dimension=K, col_init="model").fit(R)
    with pytest.raises(ValueError, match="set row_init='model'"):
        WALS(embedding_dimension=K).fit(R, init_row_factors=np.zeros((N_ROWS, K)))
    with pytest.raises(ValueError, match="shape"):
        WALS(embedding_dimension=K, col_init="model").fit(R, init_col_factors=np.zeros((N_COLS, K + 1)))


# ----------------------------------------------------------------------------------------- runs


@pytest.mark.parametrize("solver", kernels.SOLVERS)
def test_same_seed_same_factors_on_any_thread_count(solver: str) -> None:
    R = _matrix(4)
    runs = [WALS(embedding_dimension=K, solver=solver, seed=7, num_threads=threads, max_sweeps=3).fit(R)
            for threads in (1, 2, 1)]
    for run in runs[1:]:
        np.testing.assert_array_equal(run.row_factors_, runs[0].row_factors_)
        np.testing.assert_array_equal(run.col_factors_, runs[0].col_factors_)
    other = WALS(embedding_dimension=K, solver=solver, seed=8, max_sweeps=3).fit(R)
    assert not np.array_equal(other.row_factors_, runs[0].row_factors_)


def test_fitted_state_and_callbacks() -> None:
    R, test = _matrix(5), _matrix(6, density=0.05)
    model = WALS(embedding_dimension=K, max_sweeps=3)
    calls = _history(model, R, test)
    assert [call[0] for call in calls] == [0, 1, 2]
    for _, train, test_metrics, seconds in calls:
        assert set(train) == {"loss", "rwse"} and set(test_metrics) == {"rmse"} and seconds >= 0
    for factors in (model.row_factors_, model.col_factors_):
        assert factors.dtype == np.float32 and factors.flags.c_contiguous
    assert (model.best_sweep_, model.n_sweeps_, model.best_score_) == (2, 3, calls[-1][2]["rmse"])
    implicit = WALS(embedding_dimension=K, max_sweeps=2, alpha=1.0, eval_k=5)
    assert set(_history(implicit, R, test)[0][2]) == {"precision_at_k", "map_at_k", "ndcg_at_k", "auc"}
    assert _history(WALS(embedding_dimension=K, max_sweeps=1), R)[0][2] is None


def test_test_rmse_is_over_the_held_out_entries() -> None:
    R, test = _matrix(7), _matrix(8, density=0.05)
    model = WALS(embedding_dimension=K, max_sweeps=2)
    rmse = _history(model, R, test)[-1][2]["rmse"]
    rows, cols = test.nonzero()
    predictions = np.einsum("ij,ij->i", model.row_factors_[rows], model.col_factors_[cols])
    assert rmse == pytest.approx(float(np.sqrt(np.mean((test[rows, cols].A1 - predictions) ** 2))), rel=1e-5)


@pytest.mark.parametrize("alpha,scores,expected_best,expected_run", [
    (None, [1.0, 0.8, 0.9, 0.95, 0.7], 1, 4),   # rmse: lower is better
    (1.0, [0.1, 0.3, 0.2, 0.25, 0.9], 1, 4),    # ndcg_at_k: higher is better
])
def test_early_stopping_keeps_the_best_sweep(monkeypatch: pytest.MonkeyPatch, alpha: float | None,
                                             scores: list[float], expected_best: int,
                                             expected_run: int) -> None:
    metric = "rmse" if alpha is None else "ndcg_at_k"
    script = iter(scores)
    monkeypatch.setattr(WALS, "_test_metrics", lambda *args: {metric: next(script)})
    R = _matrix(9)
    model = WALS(embedding_dimension=K, alpha=alpha, max_sweeps=5, early_stopping_patience=2)
    model.fit(R, eval_set=R)
    assert (model.best_sweep_, model.n_sweeps_, model.best_score_) == (expected_best, expected_run,
                                                                       scores[expected_best])
    best = WALS(embedding_dimension=K, alpha=alpha, max_sweeps=expected_best + 1).fit(R)
    np.testing.assert_array_equal(model.row_factors_, best.row_factors_)


def test_early_stopping_tolerance() -> None:
    from algorithm.best_epoch import improves as _improves

    assert _improves(0.95, 1.0, 0.01) and not _improves(0.995, 1.0, 0.01)


@pytest.mark.parametrize("solver", kernels.SOLVERS)
def test_implicit_form_matches_implicit_als(solver: str) -> None:
    """Same init, regularization, sweeps: the factors of implicit's AlternatingLeastSquares (confidence
    1 + alpha·value, given to implicit as the data with its alpha = 1). Three float32 CG steps amplify
    rounding: both implementations lie ~1e-3 (relative) from a float64 CG, in different directions."""
    implicit_als = pytest.importorskip("implicit.cpu.als")
    R, alpha, lam, sweeps = _matrix(10, n=60, m=40), 4.0, 0.1, 4
    rng = np.random.default_rng(11)
    U0 = rng.random((60, K), dtype=np.float32) * 0.01
    V0 = rng.random((40, K), dtype=np.float32) * 0.01
    theirs = implicit_als.AlternatingLeastSquares(factors=K, regularization=lam, alpha=1.0, iterations=sweeps,
                                                  use_cg=solver == "cg", num_threads=1, random_state=0)
    theirs.user_factors, theirs.item_factors = U0.copy(), V0.copy()
    confidence = R.copy()
    confidence.data = 1.0 + alpha * confidence.data
    theirs.fit(confidence, show_progress=False)
    ours = WALS(embedding_dimension=K, alpha=alpha, unobserved_weight=1.0, regularization_coeff=lam,
                solver=solver, max_sweeps=sweeps, row_init="model", col_init="model", num_threads=1)
    ours.fit(R, init_row_factors=U0, init_col_factors=V0)
    tolerance = 1e-4 if solver == "cholesky" else 5e-3
    for mine, other in ((ours.row_factors_, theirs.user_factors), (ours.col_factors_, theirs.item_factors)):
        assert np.abs(mine - other).max() <= tolerance * np.abs(other).max()


# ----------------------------------------------------------------------------------------- scoring


@pytest.fixture(scope="module")
def fitted() -> tuple[WALS, sp.csr_matrix]:
    R = _matrix(12)
    return WALS(embedding_dimension=K, alpha=2.0, max_sweeps=3).fit(R), R


def test_predict(fitted: tuple[WALS, sp.csr_matrix]) -> None:
    model, _ = fitted
    rows, cols = np.array([0, 3, 29]), np.array([19, 0, 5])
    expected = np.einsum("ij,ij->i", model.row_factors_[rows], model.col_factors_[cols])
    got = model.predict(rows, cols)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-6)
    with pytest.raises(ValueError, match="outside"):
        model.predict([N_ROWS], [0])
    with pytest.raises(ValueError, match="ids"):
        model.predict([0, 1], [0])


def test_recommend(fitted: tuple[WALS, sp.csr_matrix]) -> None:
    model, R = fitted
    scores = model.row_factors_ @ model.col_factors_.T
    ids, values = model.recommend(4, k=5)
    assert ids.shape == (5,) and values.dtype == np.float32
    assert ids.tolist() == np.argsort(-scores[4], kind="stable")[:5].tolist()
    batch, _ = model.recommend([4, 7], k=5, exclude_seen=R[[4, 7]], include=list(range(10)), exclude=[0, 1])
    assert batch.shape == (2, 5)
    for row, got in zip((4, 7), batch, strict=True):
        allowed = [j for j in range(2, 10) if j not in set(R[row].indices)]
        expected = sorted(allowed, key=lambda j: (-scores[row, j], j))[:5]
        assert got[: len(expected)].tolist() == expected
        assert (got[len(expected):] == -1).all()
    with pytest.raises(ValueError, match="one row per queried row"):
        model.recommend(4, k=5, exclude_seen=R)


def test_recommend_from_projected_factors(fitted: tuple[WALS, sp.csr_matrix]) -> None:
    model, R = fitted
    factors = model.project_rows(R[[1, 2]])
    ids, _ = model.recommend_from_factors(factors, k=3, exclude_seen=R[[1, 2]])
    scores = factors @ model.col_factors_.T
    for i, row in enumerate((1, 2)):
        scores[i, R[row].indices] = -np.inf
        assert ids[i].tolist() == sorted(range(N_COLS), key=lambda j: (-scores[i, j], j))[:3]


def test_similar_cols_and_top_rows(fitted: tuple[WALS, sp.csr_matrix]) -> None:
    model, _ = fitted
    V = model.col_factors_.astype(np.float64)
    cosine = V @ V[3] / (np.linalg.norm(V, axis=1) * np.linalg.norm(V[3]))
    ids, values = model.similar_cols(3, k=4)
    assert 3 not in ids.tolist()
    np.testing.assert_allclose(values, np.sort(np.delete(cosine, 3))[::-1][:4], rtol=1e-5)
    rows, row_scores = model.top_rows_for_col(3, k=4)
    expected = model.row_factors_ @ model.col_factors_[3]
    assert rows.tolist() == np.argsort(-expected, kind="stable")[:4].tolist()
    np.testing.assert_allclose(row_scores, expected[rows], rtol=1e-6)


# ----------------------------------------------------------------------------------------- projection


@pytest.mark.parametrize("alpha", [None, 2.0])
def test_projection_is_a_training_half_sweep(alpha: float | None) -> None:
    rng = np.random.default_rng(13)
    R = _matrix(13)
    col_w = rng.uniform(0.5, 2, N_COLS).astype(np.float32)
    model = WALS(embedding_dimension=K, alpha=alpha, col_weights=col_w, max_sweeps=2).fit(R)
    expected = np.zeros((N_ROWS, K), dtype=np.float32)
    kernels.solve(*_entries(R, np.ones(N_ROWS, np.float32), col_w, alpha), model.col_factors_, expected,
                  model.unobserved_weight, model.regularization_coeff, "cholesky", 1, 1)
    np.testing.assert_allclose(model.project_rows(R), expected, rtol=1e-6, atol=1e-7)
    row_w = rng.uniform(0.5, 2, 3).astype(np.float32)
    weighted = model.project_rows(R[:3], weights=row_w)
    assert not np.allclose(weighted, expected[:3])
    cols = model.project_cols(R[:, [2, 5]])
    expected_cols = np.zeros((2, K), dtype=np.float32)
    transposed = sp.csr_matrix(R[:, [2, 5]].T)
    kernels.solve(*_entries(transposed, np.ones(2, np.float32), np.ones(N_ROWS, np.float32), alpha),
                  model.row_factors_, expected_cols, model.unobserved_weight, model.regularization_coeff,
                  "cholesky", 1, 1)
    np.testing.assert_allclose(cols, expected_cols, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="columns"):
        model.project_rows(R[:, :5])


# ----------------------------------------------------------------------------------------- artifact


@pytest.mark.parametrize("weights", ["scalar", "vector"])
def test_artifact_round_trip(tmp_path, weights: str) -> None:
    R = _matrix(14)
    col_w = 2.0 if weights == "scalar" else np.linspace(0.5, 1.5, N_COLS)
    model = WALS(embedding_dimension=K, col_weights=col_w, max_sweeps=2).fit(R)
    json.dumps(model.artifact_meta())
    artifact.save(tmp_path, model)
    loaded = artifact.load(tmp_path).wals
    assert isinstance(loaded, WALS)
    np.testing.assert_array_equal(loaded.row_factors_, model.row_factors_)
    np.testing.assert_array_equal(loaded.col_weights_, model.col_weights_)
    np.testing.assert_array_equal(loaded.project_rows(R[:4]), model.project_rows(R[:4]))
    assert loaded.get_params().keys() == model.get_params().keys()


def test_warm_up_runs() -> None:
    warm_up_wals()


def test_tf_style_accessors_and_projections():
    import scipy.sparse as sp

    from algorithm.wals import WALS

    rng = np.random.default_rng(3)
    R = sp.random(30, 20, density=0.2, random_state=4, format="csr", dtype=np.float32)
    model = WALS(embedding_dimension=4, max_sweeps=3, seed=1).fit(R)
    assert model.get_row_factors() is model.row_factors_ and model.get_col_factors().shape == (20, 4)
    new_rows = sp.csr_matrix(rng.random((2, 20)).astype(np.float32) * (rng.random((2, 20)) > 0.7))
    np.testing.assert_array_equal(model.get_projections(new_rows), model.project_rows(new_rows))
    new_cols = sp.csr_matrix(R[:, :3])
    np.testing.assert_array_equal(model.get_projections(new_cols, project_row=False), model.project_cols(new_cols))
