"""Slow NumPy/SciPy twins of the kernels in ``_fm_kernels`` (float64, whole-batch matrix algebra), for the
parity tests only. Same argument conventions as the kernels.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from algorithm import _fm_kernels as kernels


def _csr(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, n_cols: int) -> sp.csr_matrix:
    return sp.csr_matrix((data.astype(np.float64), indices, indptr), shape=(len(indptr) - 1, n_cols))


def raw_scores(X: sp.csr_matrix, w0: np.ndarray, w: np.ndarray,
               V: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(z per row, per-factor sums X @ V) of the FM formula."""
    sums = np.asarray(X @ V)
    squares = np.asarray(X.multiply(X) @ (V * V))
    return w0[0] + X @ w + 0.5 * (sums**2 - squares).sum(axis=1), sums


def score_rows(data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, w0: np.ndarray, w: np.ndarray,
               V: np.ndarray, logistic: bool) -> np.ndarray:
    """Twin of ``score_serial``/``score_parallel``: the score of every row (probability when logistic)."""
    z, _ = raw_scores(_csr(data, indices, indptr, V.shape[0]), w0, w, V)
    return 1.0 / (1.0 + np.exp(-z)) if logistic else z


def _step(opt: int, W: np.ndarray, state: np.ndarray, rows: np.ndarray, grad: np.ndarray, scale: float,
          hp: np.ndarray, group: int, t: int) -> None:
    """Twin of ``_fm_kernels._step`` on rows ``rows`` of W (and of each ``state[s]``)."""
    lr, wd = hp[kernels.HP_LR + group], hp[kernels.HP_WD + group]
    eps, clip = hp[kernels.HP_EPS], hp[kernels.HP_CLIP]
    if lr <= 0:
        return
    w = W[rows]
    if opt == kernels.ADAM:
        g = np.clip(grad * scale + wd * w, -clip, clip)
        m = kernels.ADAM_BETA1 * state[0][rows] + (1 - kernels.ADAM_BETA1) * g
        v = kernels.ADAM_BETA2 * state[1][rows] + (1 - kernels.ADAM_BETA2) * g * g
        state[0][rows], state[1][rows] = m, v
        lr_t = lr * np.sqrt(1 - kernels.ADAM_BETA2**t) / (1 - kernels.ADAM_BETA1**t)
        W[rows] = w - lr_t * m / (np.sqrt(v) + eps)
    elif opt == kernels.SGD:
        W[rows] = w - lr * (np.clip(grad * scale, -clip, clip) + wd * w)
    elif opt in (kernels.ADAGRAD, kernels.ADAGRAD_ROW):
        g = np.clip(grad * scale, -clip, clip)
        squares = g * g
        if opt == kernels.ADAGRAD_ROW and g.ndim == 2:  # the factors of a row share one h (state (d, 1))
            squares = squares.mean(axis=1, keepdims=True)
        h = state[0][rows] + squares
        state[0][rows] = h
        W[rows] = w - lr * (g / np.sqrt(h + eps) + wd * w)
    else:
        g = np.clip(grad * scale, -clip, clip)
        n = state[1][rows]
        n_new = n + g * g
        z = state[0][rows] + g - (np.sqrt(n_new) - np.sqrt(n)) * w / lr
        state[0][rows], state[1][rows] = z, n_new
        shrunk = (np.sign(z) * kernels.FTRL_LAMBDA1 - z) / ((kernels.FTRL_BETA + np.sqrt(n_new)) / lr + wd)
        W[rows] = np.where(np.abs(z) > kernels.FTRL_LAMBDA1, shrunk, 0.0)


def train_epoch(X: tuple[np.ndarray, np.ndarray, np.ndarray], y: np.ndarray, row_weight: np.ndarray,
                order: np.ndarray, batch_size: int, model: tuple[np.ndarray, np.ndarray, np.ndarray],
                state: tuple[np.ndarray, np.ndarray, np.ndarray], opt: int, loss_kind: int, hp: np.ndarray,
                train_bias: bool, train_linear: bool, step: int) -> tuple[int, float, np.ndarray]:
    """Twin of ``train_epoch_serial`` on float64 arrays; returns (step, weighted loss sum, row scores)."""
    w0, w, V = model
    state0, state_w, state_V = state
    matrix = _csr(*X, V.shape[0])
    scores = np.zeros(matrix.shape[0])
    total_loss = 0.0
    for b0 in range(0, order.size, batch_size):
        rows = order[b0:b0 + batch_size]
        step += 1
        batch = matrix[rows]
        z, sums = raw_scores(batch, w0, w, V)
        label = y[rows].astype(np.float64)
        weight = row_weight[rows].astype(np.float64) if row_weight.size else np.ones(rows.size)
        if loss_kind == kernels.LOGISTIC:
            score = 1.0 / (1.0 + np.exp(-z))
            loss = np.log1p(np.exp(-np.abs(z))) + np.maximum(z, 0) - label * z
        else:
            score = z
            loss = (z - label) ** 2
        scores[rows] = score
        total_loss += float(weight @ loss)
        mult = weight * (score - label)
        touched = np.unique(batch.indices)
        grad_w = np.asarray(batch.T @ mult)
        x_squared_mult = np.asarray(batch.multiply(batch).T @ mult)
        grad_V = np.asarray(batch.T @ (mult[:, None] * sums)) - x_squared_mult[:, None] * V
        scale = hp[kernels.HP_RESCALE] if hp[kernels.HP_RESCALE] > 0 else 1.0 / rows.size
        if train_linear:
            _step(opt, w, state_w, touched, grad_w[touched], scale, hp, kernels.LINEAR, step)
        _step(opt, V, state_V, touched, grad_V[touched], scale, hp, kernels.FACTORS, step)
        if train_bias:
            _step(opt, w0, state0, np.array([0]), np.array([mult.sum()]), scale, hp, kernels.BIAS, step)
    return step, total_loss, scores
