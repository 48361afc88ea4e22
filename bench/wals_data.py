"""Seeded synthetic data for the WALS benchmark, generated in memory in seconds (nothing cached).

- ``implicit_counts``: implicit feedback, 100,000 rows (users) x 20,000 columns (items)
  with exactly 5,000,000 distinct (user, item, count) entries by default (``nnz`` sets another count). Each
  item belongs to one of 32 hidden taste clusters and has a Zipf-like popularity; each user has a lognormal
  activity (at least 5 draws) and a sparse Dirichlet mixture over the clusters; a draw picks the global
  popularity list with probability 0.2, else a cluster from the user's mixture, then an item by popularity
  within it. Repeated draws of a pair add up to its count (play-count-like values 1, 2, ...). Draws are
  added until the matrix has at least ``nnz`` entries, then a seeded random subset of the surplus entries
  is dropped so it has exactly ``nnz``.
- ``holdout``: 20% of the entries of every row with at least 5 entries, drawn per entry, as the test matrix.
- ``ratings``: the FM benchmark's MovieLens-1M-shaped ratings (``bench.fm_data.generate_ratings``: 6,040 x
  3,706, 1,000,209 ratings 1..5 from a hidden rank-10 model with biases), as a matrix with the FM
  benchmark's split (the last 10% of its shuffled ratings are the test set), so RMSEs compare one to one.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from bench.fm_data import ML_ITEMS, ML_USERS, generate_ratings

IMPLICIT_ROWS = 100_000
IMPLICIT_COLS = 20_000
IMPLICIT_NNZ = 5_000_000
CLUSTERS = 32
GLOBAL_SHARE = 0.2
HOLDOUT_SHARE = 0.2
HOLDOUT_MIN_ENTRIES = 5


def _pick(cumulative: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws: indices into ``cumulative`` (increasing, last value 1) for uniforms ``u``."""
    return np.minimum(np.searchsorted(cumulative, u, side="right"), cumulative.size - 1)


def implicit_counts(seed: int = 0, n_rows: int = IMPLICIT_ROWS, n_cols: int = IMPLICIT_COLS,
                    nnz: int = IMPLICIT_NNZ) -> sp.csr_matrix:
    """The implicit-feedback count matrix described in the module docstring (float32 CSR, canonical, exactly
    ``nnz`` entries; ``nnz`` must be at most half of n_rows * n_cols)."""
    if not 5 * n_rows <= nnz <= n_rows * n_cols // 2:
        raise ValueError(f"nnz must lie in [{5 * n_rows}, {n_rows * n_cols // 2}], got {nnz}")
    rng = np.random.default_rng([seed, 20])
    cluster_of = rng.integers(0, CLUSTERS, n_cols)
    popularity = 1.0 / rng.permutation(np.arange(1, n_cols + 1)) ** 0.9
    global_cdf = np.cumsum(popularity) / popularity.sum()
    cluster_members = [np.flatnonzero(cluster_of == c) for c in range(CLUSTERS)]
    cluster_cdfs = [np.cumsum(popularity[m]) / popularity[m].sum() for m in cluster_members]
    share = rng.lognormal(0.0, 1.0, n_rows)
    share /= share.sum()
    mixture = rng.dirichlet(np.full(CLUSTERS, 0.1), n_rows)
    cumulative_mixture = np.cumsum(mixture, axis=1)
    cumulative_mixture[:, -1] = 1.0
    R = sp.csr_matrix((n_rows, n_cols), dtype=np.float32)
    n_draws = nnz
    while R.nnz < nnz:  # each round adds draws in proportion to the entries still missing
        counts = np.floor(share * n_draws).astype(np.int64) + (5 if R.nnz == 0 else 0)
        users = np.repeat(np.arange(n_rows), counts)
        u = rng.random(users.size)
        clusters = np.empty(users.size, dtype=np.int64)
        for begin in range(0, users.size, 100_000):  # row-wise inverse CDF, in chunks to bound memory
            part = slice(begin, begin + 100_000)
            clusters[part] = (cumulative_mixture[users[part]] < u[part, None]).sum(axis=1)
        clusters = np.minimum(clusters, CLUSTERS - 1)
        items = np.empty(users.size, dtype=np.int64)
        from_global = rng.random(users.size) < GLOBAL_SHARE
        draws = rng.random(users.size)
        items[from_global] = _pick(global_cdf, draws[from_global])
        for c in range(CLUSTERS):
            chosen = ~from_global & (clusters == c)
            items[chosen] = cluster_members[c][_pick(cluster_cdfs[c], draws[chosen])]
        R = R + sp.csr_matrix((np.ones(users.size, dtype=np.float32), (users, items)), shape=(n_rows, n_cols))
        R.sum_duplicates()
        n_draws = max(n_rows, int(1.5 * (nnz - R.nnz)))
    drop = rng.choice(R.nnz, R.nnz - nnz, replace=False)
    R.data[drop] = 0.0
    R.eliminate_zeros()
    return R


def holdout(R: sp.csr_matrix, seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """(train, test): each entry of a row with >= 5 entries goes to test with probability 0.2."""
    rng = np.random.default_rng([seed, 21])
    lengths = np.diff(R.indptr)
    eligible = np.repeat(lengths >= HOLDOUT_MIN_ENTRIES, lengths)
    to_test = eligible & (rng.random(R.nnz) < HOLDOUT_SHARE)
    coo = R.tocoo()
    parts = []
    for mask in (~to_test, to_test):
        parts.append(sp.csr_matrix((coo.data[mask], (coo.row[mask], coo.col[mask])), shape=R.shape))
    return parts[0], parts[1]


def ratings(seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix, dict[str, float]]:
    """(train, test, reference RMSEs) of the FM benchmark's ratings as user x item matrices; the reference
    holds ``bayes_rmse`` (predicting with the hidden model) and ``global_mean_rmse``."""
    raw = generate_ratings(seed)
    n_test = len(raw["y"]) // 10
    n_train = len(raw["y"]) - n_test
    matrices = []
    for part in (slice(0, n_train), slice(n_train, None)):
        matrices.append(sp.csr_matrix((raw["y"][part], (raw["user"][part], raw["item"][part])),
                                      shape=(ML_USERS, ML_ITEMS), dtype=np.float32))
    test_y = raw["y"][n_train:].astype(np.float64)
    reference = {
        "bayes_rmse": float(np.sqrt(np.mean((test_y - raw["expected"][n_train:]) ** 2))),
        "global_mean_rmse": float(np.sqrt(np.mean((test_y - raw["y"][:n_train].mean()) ** 2))),
    }
    return matrices[0], matrices[1], reference
