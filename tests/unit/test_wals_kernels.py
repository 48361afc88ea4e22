"""The numba WALS kernels against their float64 NumPy twins in ``algorithm._wals_reference``."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp

from algorithm import _wals_kernels as kernels
from algorithm import _wals_reference as reference
from algorithm.csr import CSR

N_ROWS, N_OTHER, K = 40, 25, 6


def _entries(seed: int = 0, n: int = N_ROWS, m: int = N_OTHER, density: float = 0.3
             ) -> tuple[CSR, np.ndarray]:
    """Random entries (targets as values) and their extra weights, with an empty row, a full row and rows of
    every length mod 4 (the build's remainder)."""
    rng = np.random.default_rng(seed)
    R = sp.random(n, m, density=density, format="lil", random_state=seed, dtype=np.float32)
    R[2, :] = 0.0
    R[3, :] = rng.uniform(0.5, 2.0, m)
    R = sp.csr_matrix(R)
    R.eliminate_zeros()
    target = rng.normal(size=R.nnz).astype(np.float32)
    extra = rng.uniform(0.0, 3.0, R.nnz).astype(np.float32)
    return CSR(target, R.indices.astype(np.int64), R.indptr.astype(np.int64), m), extra


def _factors(seed: int, n: int, k: int = K) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 0.5, (n, k)).astype(np.float32)


def _scale(a: np.ndarray) -> float:
    return max(1.0, float(np.abs(a).max()))


def test_gramian_matches_reference() -> None:
    Y = _factors(1, N_OTHER)
    expected = reference.gramian(Y, 0.3, 0.7)
    got = kernels.gramian(Y, 0.3, 0.7)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6 * _scale(expected))


@pytest.mark.parametrize("w0,lam", [(0.1, 0.01), (1.0, 1.0), (0.0, 0.5)])
def test_cholesky_matches_reference(w0: float, lam: float) -> None:
    entries, extra = _entries()
    Y = _factors(1, N_OTHER)
    X = _factors(2, N_ROWS)
    kernels.solve(entries, extra, Y, X, w0, lam, "cholesky", 1, 1)
    expected = reference.solve_cholesky(entries, extra, Y, w0, lam)
    assert np.abs(X - expected).max() <= 2e-4 * _scale(expected)
    assert not X[2].any()  # an empty row solves to exactly 0


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_a_given_gramian_is_the_one_solved_with(solver: str) -> None:
    entries, extra = _entries()
    Y = _factors(1, N_OTHER)
    start = _factors(2, N_ROWS)
    computed, given = start.copy(), start.copy()
    kernels.solve(entries, extra, Y, computed, 0.4, 0.8, solver, 3, 1)
    kernels.solve(entries, extra, Y, given, 0.4, 0.8, solver, 3, 1, gram=kernels.gramian(Y, 0.4, 0.8))
    np.testing.assert_array_equal(given, computed)
    other = start.copy()
    kernels.solve(entries, extra, Y, other, 0.4, 0.8, solver, 3, 1, gram=kernels.gramian(Y, 0.4, 5.0))
    assert not np.allclose(other, computed)
    with pytest.raises(ValueError, match="gram must have shape"):
        kernels.solve(entries, extra, Y, start.copy(), 0.4, 0.8, solver, 3, 1, gram=np.eye(K + 1, dtype=np.float32))


@pytest.mark.parametrize("cg_steps", [1, 3])
def test_cg_matches_reference(cg_steps: int) -> None:
    entries, extra = _entries(seed=3)
    Y = _factors(4, N_OTHER)
    X0 = _factors(5, N_ROWS)
    X = X0.copy()
    kernels.solve(entries, extra, Y, X, 0.5, 0.1, "cg", cg_steps, 1)
    expected = reference.solve_cg(entries, extra, Y, X0, 0.5, 0.1, cg_steps)
    assert np.abs(X - expected).max() <= 2e-4 * _scale(expected)
    assert not X[2].any()


def test_cg_converges_to_the_exact_solution() -> None:
    entries, extra = _entries(seed=6)
    Y = _factors(7, N_OTHER)
    exact = _factors(8, N_ROWS)
    kernels.solve(entries, extra, Y, exact, 0.2, 0.1, "cholesky", 1, 1)
    X = _factors(9, N_ROWS)
    kernels.solve(entries, extra, Y, X, 0.2, 0.1, "cg", 3 * K, 1)
    assert np.abs(X - exact).max() <= 1e-3 * _scale(exact)


def test_cg_keeps_a_row_that_already_solves_its_system() -> None:
    entries, extra = _entries(seed=10)
    Y = _factors(11, N_OTHER)
    X = _factors(12, N_ROWS)
    kernels.solve(entries, extra, Y, X, 0.2, 0.1, "cholesky", 1, 1)
    before = X.copy()
    kernels.solve(entries, extra, Y, X, 0.2, 0.1, "cg", 3, 1)
    assert np.abs(X - before).max() <= 1e-4 * _scale(before)


def test_singular_systems_give_finite_solutions_of_the_normal_equations() -> None:
    """λ = 0 and w0 = 0: a row with fewer entries than K has a singular system; the kernel drops the null
    directions instead of failing (implicit raises here), and the result still solves A x = b."""
    entries, extra = _entries(seed=13, density=0.08)
    Y = _factors(14, N_OTHER)
    X = _factors(15, N_ROWS)
    kernels.solve(entries, extra, Y, X, 0.0, 0.0, "cholesky", 1, 1)
    assert np.isfinite(X).all()
    for row in range(N_ROWS):
        A, b = reference.row_system(entries, extra, row, Y, 0.0, 0.0)
        scale = (np.abs(A) @ np.abs(X[row])).max() + np.abs(b).max()  # backward error of a float32 solve
        assert np.abs(A @ X[row] - b).max() <= 1e-4 * scale, row


@pytest.mark.parametrize("solver", kernels.SOLVERS)
def test_results_do_not_depend_on_the_worker_count(solver: str) -> None:
    n = 5 * kernels.CG_BLOCK_ROWS + 7  # several cg blocks
    entries, extra = _entries(seed=16, n=n)
    Y = _factors(17, N_OTHER)
    results = []
    for workers in (1, 2, 3):
        X = _factors(18, n)
        kernels.solve(entries, extra, Y, X, 0.1, 0.05, solver, 3, workers)
        results.append(X)
    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])
    if solver == "cg":
        expected = reference.solve_cg(entries, extra, Y, _factors(18, n), 0.1, 0.05, 3)
        assert np.abs(results[0] - expected).max() <= 2e-4 * _scale(expected)


def test_row_blocks() -> None:
    indptr = np.array([0, 1, 3, 3, 10, 11, 12, 13], dtype=np.int64)  # lengths 1, 2, 0, 7, 1, 1, 1
    np.testing.assert_array_equal(kernels._row_blocks(indptr, 3, 4), [0, 3, 4, 7])
    np.testing.assert_array_equal(kernels._row_blocks(indptr, 2, 100), [0, 2, 4, 6, 7])
    np.testing.assert_array_equal(kernels._row_blocks(np.zeros(1, dtype=np.int64), 3, 4), [0])


def test_cg_rows_longer_than_the_gather_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """A row with more entries than the gather limit reads y_j from Y directly instead of a gathered copy."""
    rng = np.random.default_rng(19)
    monkeypatch.setattr(kernels, "CG_GATHER_BYTES", 4 * 4 * 50)  # 50 entries at k = 4
    m = 150
    lengths = np.array([m, 7])
    indices = np.concatenate([np.arange(m), rng.choice(m, 7, replace=False)]).astype(np.int64)
    entries = CSR(rng.normal(size=indices.size).astype(np.float32), indices,
                  np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), m)
    extra = rng.uniform(0, 1, indices.size).astype(np.float32)
    Y = _factors(20, m, k=4)
    X0 = _factors(21, 2, k=4)
    X = X0.copy()
    kernels.solve(entries, extra, Y, X, 0.1, 0.05, "cg", 3, 1)
    expected = reference.solve_cg(entries, extra, Y, X0, 0.1, 0.05, 3)
    assert np.abs(X - expected).max() <= 1e-3 * _scale(expected)


@pytest.mark.parametrize("short_rows", ["none", "all"])
def test_cholesky_paths_match_reference(monkeypatch: pytest.MonkeyPatch, short_rows: str) -> None:
    """Rows solved through their n×n system (Woodbury, short rows) and through the k×k system built from
    gathered chunks (direct) agree with the reference; a row holding an entry with e = 0 but a nonzero
    target, which the n×n form cannot express, is solved directly; entries with e = 0 and t = 0 are skipped."""
    monkeypatch.setattr(kernels, "SHORT_ROW_FACTOR", 0.0 if short_rows == "none" else 100.0)
    monkeypatch.setattr(kernels, "DIRECT_CHUNK", 3)  # several chunks per row
    entries, extra = _entries(seed=31)
    row_4 = slice(entries.indptr[4], entries.indptr[5])
    row_5 = slice(entries.indptr[5], entries.indptr[6])
    extra[row_4.start] = 0.0  # e = 0, t != 0: direct
    extra[row_5.start] = 0.0  # e = 0, t = 0: skipped
    entries.data[row_5.start] = 0.0
    Y = _factors(32, N_OTHER)
    X = _factors(33, N_ROWS)
    kernels.solve(entries, extra, Y, X, 0.3, 0.2, "cholesky", 1, 2)
    expected = reference.solve_cholesky(entries, extra, Y, 0.3, 0.2)
    assert np.abs(X - expected).max() <= 2e-4 * _scale(expected)
    assert not X[2].any()


def test_short_rows_need_a_well_conditioned_gramian() -> None:
    entries, _ = _entries()
    Y = _factors(1, N_OTHER)
    Z, Linv, short = kernels._short_row_inputs(entries.indptr, Y, kernels.gramian(Y, 0.5, 0.1))
    assert short == K and Z.shape == (N_OTHER, K) and Linv.shape == (K, K)
    G = kernels.gramian(Y, 0.5, 0.1).astype(np.float64)
    np.testing.assert_allclose(Linv.astype(np.float64) @ G @ Linv.T.astype(np.float64), np.eye(K), atol=1e-4)
    singular = kernels.gramian(Y[:2], 1.0, 0.0)  # rank 2 < K, λ = 0
    assert kernels._short_row_inputs(entries.indptr, Y[:2], singular)[2] == 0


def test_row_losses_match_reference() -> None:
    entries, extra = _entries(seed=22)
    X, Y = _factors(23, N_ROWS), _factors(24, N_OTHER)
    for workers in (1, 2):
        got = kernels.row_losses(entries, extra, X, Y, 0.3, workers)
        np.testing.assert_allclose(got, reference.row_losses(entries, extra, X, Y, 0.3), rtol=1e-4, atol=1e-4)


def test_pair_scores() -> None:
    X, Y = _factors(25, N_ROWS), _factors(26, N_OTHER)
    rows = np.array([0, 5, 39, 5])
    cols = np.array([24, 0, 3, 3])
    expected = np.einsum("ij,ij->i", X[rows].astype(np.float64), Y[cols].astype(np.float64))
    for workers in (1, 2):
        np.testing.assert_allclose(kernels.pair_scores(rows, cols, X, Y, workers), expected, rtol=1e-5)


def test_gates_reject_wrong_inputs() -> None:
    entries, extra = _entries()
    Y = _factors(1, N_OTHER)
    X = _factors(2, N_ROWS)
    with pytest.raises(ValueError, match="float32"):
        kernels.solve(entries, extra, Y.astype(np.float64), X, 0.1, 0.1, "cholesky", 1, 1)
    with pytest.raises(ValueError, match="int64"):
        kernels.solve(replace(entries, indices=entries.indices.astype(np.int32)), extra, Y, X, 0.1, 0.1, "cg",
                      1, 1)
    with pytest.raises(ValueError, match="indices must lie"):
        kernels.solve(entries, extra, Y[:3], X, 0.1, 0.1, "cholesky", 1, 1)
    with pytest.raises(ValueError, match="indptr"):
        kernels.solve(entries, extra, Y, X[:5], 0.1, 0.1, "cholesky", 1, 1)
    with pytest.raises(ValueError, match="solver"):
        kernels.solve(entries, extra, Y, X, 0.1, 0.1, "lu", 1, 1)
    read_only = X.copy()
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        kernels.solve(entries, extra, Y, read_only, 0.1, 0.1, "cholesky", 1, 1)


@pytest.mark.parametrize("solver", kernels.SOLVERS)
def test_half_sweep_matches_implicit(solver: str) -> None:
    """With w0 = 1, targets 1 and e_ij = c_ij − 1, one half-sweep is implicit's least_squares(_cg)."""
    als = pytest.importorskip("implicit.cpu._als")
    R = sp.random(N_ROWS, N_OTHER, density=0.3, format="csr", random_state=27, dtype=np.float32)
    confidence = sp.csr_matrix((1.0 + 4.0 * R.data, R.indices, R.indptr), shape=R.shape, dtype=np.float32)
    entries = CSR(np.ones(R.nnz, np.float32), R.indices.astype(np.int64), R.indptr.astype(np.int64), N_OTHER)
    extra = (confidence.data - 1.0).astype(np.float32)
    Y = np.random.default_rng(28).random((N_OTHER, K), dtype=np.float32) * 0.1
    X = np.random.default_rng(29).random((N_ROWS, K), dtype=np.float32) * 0.1
    theirs = X.copy()
    if solver == "cg":
        als.least_squares_cg(confidence, theirs, Y, 0.05, num_threads=1, cg_steps=3)
    else:
        als.least_squares(confidence, theirs, Y, 0.05, num_threads=1)
    kernels.solve(entries, extra, Y, X, 1.0, 0.05, solver, 3, 1)
    assert np.abs(X - theirs).max() <= 1e-4 * _scale(theirs)
