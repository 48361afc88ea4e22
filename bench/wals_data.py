"""Seeded synthetic data for the WALS benchmark, generated in memory in seconds (nothing cached).

- ``implicit_counts``: MovieLens-20M-shaped implicit feedback, scaled down to run in minutes on 2 cores:
  25,000 rows (users) x 8,000 columns (items), ~1.2M distinct (user, item, count) entries. Each item belongs
  to one of 32 hidden taste clusters and has a Zipf-like popularity; each user has a lognormal activity
  (at least 5 draws) and a sparse Dirichlet mixture over the clusters; a draw picks the global popularity
  list with probability 0.2, else a cluster from the user's mixture, then an item by popularity within it.
  Repeated draws of a pair add up to its count (play-count-like values 1, 2, ...).
- ``holdout``: 20% of the entries of every row with at least 5 entries, drawn per entry, as the test matrix.
- ``ratings``: the FM benchmark's MovieLens-1M-shaped ratings (``bench.fm_data.generate_ratings``: 6,040 x
  3,706, 1,000,209 ratings 1..5 from a hidden rank-10 model with biases), as a matrix with the FM
  benchmark's split (the last 10% of its shuffled ratings are the test set), so RMSEs compare one to one.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from bench.fm_data import ML_ITEMS, ML_USERS, generate_ratings

IMPLICIT_ROWS = 25_000
IMPLICIT_COLS = 8_000
IMPLICIT_DRAWS = 1_500_000
CLUSTERS = 32
GLOBAL_SHARE = 0.2
HOLDOUT_SHARE = 0.2
HOLDOUT_MIN_ENTRIES = 5


def _pick(cumulative: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draws: indices into ``cumulative`` (increasing, last value 1) for uniforms ``u``."""
    return np.minimum(np.searchsorted(cumulative, u, side="right"), cumulative.size - 1)


def implicit_counts(seed: int = 0, n_rows: int = IMPLICIT_ROWS, n_cols: int = IMPLICIT_COLS,
                    n_draws: int = IMPLICIT_DRAWS) -> sp.csr_matrix:
    """The implicit-feedback count matrix described in the module docstring (float32 CSR, canonical)."""
    rng = np.random.default_rng([seed, 20])
    cluster_of = rng.integers(0, CLUSTERS, n_cols)
    popularity = 1.0 / rng.permutation(np.arange(1, n_cols + 1)) ** 0.9
    activity = rng.lognormal(0.0, 1.0, n_rows)
    counts = 5 + np.floor(activity / activity.sum() * (n_draws - 5 * n_rows)).astype(np.int64)
    users = np.repeat(np.arange(n_rows), counts)
    mixture = rng.dirichlet(np.full(CLUSTERS, 0.1), n_rows)
    cumulative_mixture = np.cumsum(mixture, axis=1)
    cumulative_mixture[:, -1] = 1.0
    u = rng.random(users.size)
    clusters = np.empty(users.size, dtype=np.int64)
    for start in range(0, users.size, 100_000):  # row-wise inverse CDF, in chunks to bound memory
        part = slice(start, start + 100_000)
        clusters[part] = (cumulative_mixture[users[part]] < u[part, None]).sum(axis=1)
    clusters = np.minimum(clusters, CLUSTERS - 1)
    items = np.empty(users.size, dtype=np.int64)
    from_global = rng.random(users.size) < GLOBAL_SHARE
    draws = rng.random(users.size)
    global_cdf = np.cumsum(popularity) / popularity.sum()
    items[from_global] = _pick(global_cdf, draws[from_global])
    for c in range(CLUSTERS):
        members = np.flatnonzero(cluster_of == c)
        chosen = ~from_global & (clusters == c)
        cdf = np.cumsum(popularity[members]) / popularity[members].sum()
        items[chosen] = members[_pick(cdf, draws[chosen])]
    R = sp.csr_matrix((np.ones(users.size, dtype=np.float32), (users, items)), shape=(n_rows, n_cols))
    R.sum_duplicates()
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
