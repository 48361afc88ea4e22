"""Slow float64 NumPy twins of the WALS kernels (``algorithm._wals_kernels``) and the dense objective, for the
parity tests only. Arguments mirror the kernels: ``entries`` is a ``CSR`` of one side with the targets t_ij
as values, ``extra`` the extra weights e_ij = w_ij − w0 aligned with them, ``Y`` the other side's factors.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from algorithm.csr import CSR

Side = tuple[CSR, np.ndarray]  # (entries, extra)


def entries(R: sp.spmatrix, row_weights: np.ndarray, col_weights: np.ndarray, alpha: float | None,
            entry_weights: sp.spmatrix | None = None) -> tuple[Side, Side]:
    """(row side, column side) (entries, extra) of R, entry by entry from docs/wals.md: explicit t = a,
    e = r_i c_j s_ij; implicit a' = s_ij a_ij, t = 1[a' > 0], e = α r_i c_j a' (s_ij = 1 without
    ``entry_weights``). Duplicates of R and of ``entry_weights`` are summed first."""
    values: dict[tuple[int, int], float] = {}
    coo = sp.coo_matrix(R)
    for i, j, a in zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist(), strict=True):
        values[i, j] = values.get((i, j), 0.0) + a
    scale = dict.fromkeys(values, 1.0)
    if entry_weights is not None:
        scale = dict.fromkeys(values, 0.0)
        coo = sp.coo_matrix(entry_weights)
        for i, j, w in zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist(), strict=True):
            scale[i, j] += w
    table: dict[tuple[int, int], tuple[float, float]] = {}
    for (i, j), a in values.items():
        s, product = scale[i, j], float(row_weights[i]) * float(col_weights[j])
        if alpha is None:
            table[i, j] = (a, product * s)
        else:
            table[i, j] = (float(s * a > 0), alpha * product * s * a)
    sides = []
    for key in (lambda ij: ij, lambda ij: (ij[1], ij[0])):
        ordered = sorted(table, key=key)
        n, n_other = R.shape if key((0, 1)) == (0, 1) else R.shape[::-1]
        owners = np.array([key(ij)[0] for ij in ordered], dtype=np.int64)
        indptr = np.searchsorted(owners, np.arange(n + 1)).astype(np.int64)
        sides.append((CSR(np.array([table[ij][0] for ij in ordered], dtype=np.float32),
                          np.array([key(ij)[1] for ij in ordered], dtype=np.int64), indptr, n_other),
                      np.array([table[ij][1] for ij in ordered], dtype=np.float32)))
    return sides[0], sides[1]


def gramian(Y: np.ndarray, w0: float, regularization: float) -> np.ndarray:
    """G = w0 YᵀY + λI."""
    Y = Y.astype(np.float64)
    return w0 * Y.T @ Y + regularization * np.eye(Y.shape[1])


def row_system(entries: CSR, extra: np.ndarray, row: int, Y: np.ndarray, w0: float, regularization: float
               ) -> tuple[np.ndarray, np.ndarray]:
    """(A, b) of row ``row``: A = G + Σ e_ij y_j y_jᵀ, b = Σ (w0 + e_ij) t_ij y_j."""
    A = gramian(Y, w0, regularization)
    b = np.zeros(Y.shape[1])
    for e in range(entries.indptr[row], entries.indptr[row + 1]):
        y = Y[entries.indices[e]].astype(np.float64)
        A += float(extra[e]) * np.outer(y, y)
        b += (w0 + float(extra[e])) * float(entries.data[e]) * y
    return A, b


def solve_cholesky(entries: CSR, extra: np.ndarray, Y: np.ndarray, w0: float, regularization: float
                   ) -> np.ndarray:
    """Exact solve of every row's normal equations (least-norm solution when A is singular)."""
    X = np.zeros((entries.n_rows, Y.shape[1]))
    for row in range(entries.n_rows):
        if entries.indptr[row] == entries.indptr[row + 1]:
            continue
        A, b = row_system(entries, extra, row, Y, w0, regularization)
        X[row] = np.linalg.lstsq(A, b, rcond=None)[0]
    return X


def solve_cg(entries: CSR, extra: np.ndarray, Y: np.ndarray, X0: np.ndarray, w0: float, regularization: float,
             cg_steps: int, tolerance: float = 1e-20) -> np.ndarray:
    """``cg_steps`` conjugate-gradient steps per row from ``X0`` (implicit's least_squares_cg, literally)."""
    X = X0.astype(np.float64)
    for row in range(entries.n_rows):
        if entries.indptr[row] == entries.indptr[row + 1]:
            X[row] = 0.0
            continue
        A, b = row_system(entries, extra, row, Y, w0, regularization)
        x = X[row]
        r = b - A @ x
        p = r.copy()
        rs_old = r @ r
        if rs_old < tolerance:
            continue
        for _ in range(cg_steps):
            Ap = A @ p
            curvature = p @ Ap
            if curvature <= 0:
                break
            step = rs_old / curvature
            x += step * p
            r -= step * Ap
            rs_new = r @ r
            if rs_new < tolerance:
                break
            p = r + (rs_new / rs_old) * p
            rs_old = rs_new
    return X


def row_losses(entries: CSR, extra: np.ndarray, X: np.ndarray, Y: np.ndarray, w0: float) -> np.ndarray:
    """Per row: Σ_{j∈obs(i)} [w_ij (t_ij − x_i·y_j)² − w0 (x_i·y_j)²]."""
    out = np.zeros(entries.n_rows)
    for row in range(entries.n_rows):
        for e in range(entries.indptr[row], entries.indptr[row + 1]):
            prediction = float(X[row].astype(np.float64) @ Y[entries.indices[e]].astype(np.float64))
            weight = w0 + float(extra[e])
            out[row] += weight * (float(entries.data[e]) - prediction) ** 2 - w0 * prediction**2
    return out


def dense_objective(targets: np.ndarray, weights: np.ndarray, U: np.ndarray, V: np.ndarray,
                    regularization: float) -> tuple[float, float]:
    """(unregularized loss Σ_ij W_ij (T_ij − u_i·v_j)², regularization λ(|U|² + |V|²)) over the full dense
    matrices: W_ij = w0 on unobserved entries (where T_ij = 0)."""
    P = U.astype(np.float64) @ V.astype(np.float64).T
    loss = float((weights * (targets - P) ** 2).sum())
    return loss, regularization * float((U.astype(np.float64) ** 2).sum() + (V.astype(np.float64) ** 2).sum())
