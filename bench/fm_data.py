"""Seeded data sets for the FM training benchmark, cached under ``bench/data/`` as ``.npz``.

- ``ctr``: CTR-like clicks. 1,000,000 rows (900,000 train / 100,000 test), 39 one-hot fields (value 1.0,
  one feature per field so the 39 features of a row are distinct), 1,000,000 features hashed (permuted) over
  the id space, Zipf-like frequencies within each field, labels drawn from a hidden rank-8 FM.
- ``ratings``: MovieLens-1M shape. 6,040 users x 3,706 items, 1,000,209 distinct (user, item) ratings in 1..5
  from a hidden rank-10 model + user/item biases + Gaussian noise, rounded and clipped; one-hot user + item
  (feature_dim 9,746); 90/10 split.
- ``digits``: scikit-learn ``load_digits`` as "is it a 0", pixels / 16, 75/25 stratified split.

Each set carries ``meta`` with the Bayes-optimal held-out figures (predicting with the hidden model itself),
the ceiling a learned model can approach.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy.special import ndtr

from algorithm.csr import CSR

GENERATOR_VERSION = 2
DATA_DIR = Path(__file__).resolve().parent / "data"

CTR_ROWS = 1_000_000
CTR_FIELDS = 39
CTR_FEATURES = 1_000_000
CTR_TEST_FRACTION = 0.1
ML_USERS = 6_040
ML_ITEMS = 3_706
ML_RATINGS = 1_000_209


@dataclass(frozen=True)
class BenchData:
    """A train/test pair with its task (``binary_classifier`` or ``regressor``) and generator facts."""

    name: str
    task: str
    train: CSR
    test: CSR
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def feature_dim(self) -> int:
        return self.train.n_cols

    def subsample(self, rows: int | None) -> BenchData:
        """At most ``rows`` training rows and a test set shrunk in proportion (at least 2,000 rows)."""
        if rows is None or rows >= self.train.n_rows:
            return self
        test_rows = max(2_000, math.ceil(rows * self.test.n_rows / self.train.n_rows))
        meta = dict(self.meta, subsampled_rows=rows)
        return BenchData(self.name, self.task, self.train.head(rows), self.test.head(test_rows), meta)


# ---------------------------------------------------------------------------------------------------------
# metrics (kept here so the generators and the anchors need no project code beyond the CSR carrier)


def auc(y: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve of 0/1 labels ``y`` (ties get their average rank)."""
    from scipy.stats import rankdata

    y = np.asarray(y) > 0.5
    n_pos = int(y.sum())
    n_neg = len(y) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def logloss(y: np.ndarray, p: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross entropy of probabilities ``p``."""
    p = np.clip(np.asarray(p, dtype=np.float64), eps, 1 - eps)
    y = np.asarray(y, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log1p(-p)))


def rmse(y: np.ndarray, pred: np.ndarray) -> float:
    """Root mean squared error."""
    d = np.asarray(y, dtype=np.float64) - np.asarray(pred, dtype=np.float64)
    return float(np.sqrt(np.mean(d * d)))


def accuracy(y: np.ndarray, p: np.ndarray) -> float:
    """Share of rows where ``p > 0.5`` matches the 0/1 label."""
    return float(np.mean((np.asarray(p) > 0.5) == (np.asarray(y) > 0.5)))


# ---------------------------------------------------------------------------------------------------------
# CTR-like


def _ctr_field_sizes(rng: np.random.Generator, n_fields: int, n_features: int) -> np.ndarray:
    raw = np.exp(rng.uniform(np.log(4), np.log(n_features / 4), n_fields))
    sizes = np.maximum(2, np.floor(raw / raw.sum() * n_features)).astype(np.int64)
    sizes[np.argmax(sizes)] += n_features - sizes.sum()
    return sizes


def _fm_logit_parts(idx: np.ndarray, w: np.ndarray, V: np.ndarray, chunk: int = 65_536
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Linear and pairwise parts of an FM's logit for one-hot rows given as an (n, nnz) index matrix."""
    lin = np.empty(len(idx), np.float64)
    pair = np.empty(len(idx), np.float64)
    for s in range(0, len(idx), chunk):
        block = idx[s : s + chunk]
        lin[s : s + chunk] = w[block].sum(axis=1)
        Vb = V[block]  # (b, nnz, k)
        total = Vb.sum(axis=1)
        pair[s : s + chunk] = 0.5 * ((total * total).sum(axis=1) - (Vb * Vb).sum(axis=(1, 2)))
    return lin, pair


def generate_ctr(seed: int = 0, n_rows: int = CTR_ROWS, n_features: int = CTR_FEATURES,
                 n_fields: int = CTR_FIELDS, hidden_rank: int = 8, base_rate: float = 0.25,
                 linear_std: float = 0.95, pair_std: float = 0.85, rare_count: float = 10_000.0
                 ) -> dict[str, np.ndarray]:
    """Raw arrays of the CTR-like set: ``idx`` (n_rows, n_fields) int32 sorted per row, ``y`` float32 and
    the hidden model's true click probability ``p`` (float32).

    ``linear_std`` and ``pair_std`` are the standard deviations (over rows) of the linear and pairwise parts
    of the hidden logit; ``base_rate`` is the mean click rate. A feature expected ``c`` times has its hidden
    weights scaled by ``c / (c + rare_count)``: as in real logs, rare values carry little signal, which keeps
    the gap between the Bayes-optimal and a learned model small.
    """
    rng = np.random.default_rng([seed, 1])
    sizes = _ctr_field_sizes(rng, n_fields, n_features)
    offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    exponents = rng.uniform(0.95, 1.25, n_fields)
    idx = np.empty((n_rows, n_fields), np.int32)
    expected = np.empty(n_features)
    for f in range(n_fields):
        cdf = np.cumsum(np.arange(1, sizes[f] + 1, dtype=np.float64) ** -exponents[f])
        cdf /= cdf[-1]
        expected[offsets[f] : offsets[f] + sizes[f]] = np.diff(cdf, prepend=0.0) * n_rows
        rank = np.searchsorted(cdf, rng.random(n_rows), side="right")
        idx[:, f] = offsets[f] + np.minimum(rank, sizes[f] - 1)
    # hidden model with per-field importance, built on the field-ordered ids; the ids get hashed at the end
    field_of = np.repeat(np.arange(n_fields), sizes)
    scale = rng.uniform(0.3, 1.0, n_fields)[field_of] * expected / (expected + rare_count)
    w = rng.standard_normal(n_features) * scale
    V = rng.standard_normal((n_features, hidden_rank)) * np.sqrt(scale)[:, None]
    sample = idx[: min(n_rows, 50_000)]
    lin, pair = _fm_logit_parts(sample, w, V)
    w *= linear_std / lin.std()
    V *= np.sqrt(pair_std / pair.std())
    w, V = w.astype(np.float32), V.astype(np.float32)
    lin, pair = _fm_logit_parts(idx, w, V)
    z = lin + pair
    lo, hi = -20.0, 20.0  # w0 so that the mean click probability is base_rate
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if np.mean(1 / (1 + np.exp(-(z[:50_000] + mid)))) < base_rate else (lo, mid)
    p = 1 / (1 + np.exp(-(z + 0.5 * (lo + hi))))
    y = (rng.random(n_rows) < p).astype(np.float32)
    perm = rng.permutation(n_features).astype(np.int32)  # hash the ids: frequent features are scattered
    idx = np.sort(perm[idx], axis=1)
    return {"idx": idx, "y": y, "p": p.astype(np.float32)}


def _ctr_sets(raw: dict[str, np.ndarray], n_features: int) -> tuple[CSR, CSR, dict[str, Any]]:
    idx, y, p = raw["idx"], raw["y"], raw["p"]
    n_test = round(len(y) * CTR_TEST_FRACTION)
    n_train = len(y) - n_test

    def build(rows: slice) -> CSR:
        block = idx[rows]
        n, nnz = block.shape
        return CSR(np.ones(n * nnz, np.float32), block.reshape(-1).astype(np.int64),
                         np.arange(n + 1, dtype=np.int64) * nnz, n_features, y[rows])

    test_y, test_p = y[n_train:], p[n_train:]
    meta = {"bayes_auc": auc(test_y, test_p), "bayes_logloss": logloss(test_y, test_p),
            "click_rate": float(y.mean()), "train_rows": n_train, "test_rows": n_test}
    return build(slice(0, n_train)), build(slice(n_train, None)), meta


# ---------------------------------------------------------------------------------------------------------
# ratings-like


def _user_counts(rng: np.random.Generator, n_users: int, n_items: int, n_ratings: int,
                 minimum: int = 20, cap: int = 2_314) -> np.ndarray:
    """Ratings per user: at least ``minimum`` (as in MovieLens-1M), a log-normal tail, at most ``cap``."""
    minimum = min(minimum, n_ratings // n_users)
    extra = rng.lognormal(0.0, 1.1, n_users)
    counts = minimum + np.floor(extra / extra.sum() * (n_ratings - minimum * n_users)).astype(np.int64)
    counts = np.minimum(counts, min(cap, n_items))
    while (deficit := n_ratings - int(counts.sum())) > 0:
        room = np.flatnonzero(counts < min(cap, n_items))
        counts += np.bincount(rng.choice(room, deficit), minlength=n_users)
        counts = np.minimum(counts, min(cap, n_items))
    return counts


def generate_ratings(seed: int = 0, n_users: int = ML_USERS, n_items: int = ML_ITEMS,
                     n_ratings: int = ML_RATINGS, hidden_rank: int = 10, mean: float = 3.5,
                     user_std: float = 0.5, item_std: float = 0.55, dot_std: float = 0.6,
                     noise_std: float = 0.77) -> dict[str, np.ndarray]:
    """Raw arrays of the ratings set: ``user``, ``item`` (int32, distinct pairs in random order), ``y``
    (float32 ratings 1..5) and ``expected`` (the hidden model's expected rating E[y | user, item])."""
    rng = np.random.default_rng([seed, 2])
    counts = _user_counts(rng, n_users, n_items, n_ratings)
    popularity = rng.lognormal(0.0, 1.4, n_items)
    # weighted sampling without replacement per user: the top counts[u] of log(popularity) + Gumbel noise
    keys = np.log(popularity).astype(np.float32) + rng.gumbel(size=(n_users, n_items)).astype(np.float32)
    order = np.argsort(-keys, axis=1)
    del keys
    take = np.arange(n_items)[None, :] < counts[:, None]
    item = order[take].astype(np.int32)
    user = np.repeat(np.arange(n_users, dtype=np.int32), counts)
    del order, take
    b_u = rng.normal(0, user_std, n_users)
    b_i = rng.normal(0, item_std, n_items) + 0.1 * (np.log(popularity) - np.log(popularity).mean())
    P = rng.standard_normal((n_users, hidden_rank))
    Q = rng.standard_normal((n_items, hidden_rank))
    scale = dot_std / np.sqrt(hidden_rank)
    m = mean + b_u[user] + b_i[item] + scale * np.einsum("ij,ij->i", P[user], Q[item])
    latent = m + rng.normal(0, noise_std, len(m))
    y = np.clip(np.rint(latent), 1, 5).astype(np.float32)
    # E[clip(round(m + e), 1, 5)] = 5 - sum_k P(m + e < k + 0.5), k = 1..4
    expected = 5.0 - sum(ndtr((k + 0.5 - m) / noise_std) for k in range(1, 5))
    perm = rng.permutation(len(y))
    return {"user": user[perm], "item": item[perm], "y": y[perm],
            "expected": expected[perm].astype(np.float32)}


def _ratings_sets(raw: dict[str, np.ndarray], n_users: int = ML_USERS, n_items: int = ML_ITEMS
                  ) -> tuple[CSR, CSR, dict[str, Any]]:
    user, item, y, expected = raw["user"], raw["item"], raw["y"], raw["expected"]
    n_test = len(y) // 10
    n_train = len(y) - n_test

    def build(rows: slice) -> CSR:
        cols = np.stack([user[rows].astype(np.int64), n_users + item[rows].astype(np.int64)], axis=1)
        n = len(cols)
        return CSR(np.ones(2 * n, np.float32), cols.reshape(-1), np.arange(n + 1, dtype=np.int64) * 2,
                         n_users + n_items, y[rows])

    counts = np.bincount(y.astype(np.int64), minlength=6)[1:] / len(y)
    test_y = y[n_train:]
    meta = {"bayes_rmse": rmse(test_y, expected[n_train:]),
            "global_mean_rmse": rmse(test_y, np.full(n_test, y[:n_train].mean())),
            "rating_mean": float(y.mean()), "rating_std": float(y.std()),
            "rating_shares_1_to_5": [round(float(c), 4) for c in counts],
            "train_rows": n_train, "test_rows": n_test}
    return build(slice(0, n_train)), build(slice(n_train, None)), meta


# ---------------------------------------------------------------------------------------------------------
# digits


def make_digits(seed: int = 0) -> BenchData:
    """scikit-learn's 8x8 digits as "is it a 0": 64 pixel features / 16 (dense rows as CSR), 75/25 split."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    X, target = load_digits(return_X_y=True)
    y = (target == 0).astype(np.float32)
    X_tr, X_te, y_tr, y_te = train_test_split(X / 16.0, y, test_size=0.25, random_state=seed, stratify=y)

    meta = {"positive_rate": float(y.mean()), "train_rows": len(y_tr), "test_rows": len(y_te)}
    return BenchData("digits", "binary_classifier", CSR.from_matrix(X_tr, y_tr), CSR.from_matrix(X_te, y_te), meta)


# ---------------------------------------------------------------------------------------------------------
# cache


def _cache_path(name: str, seed: int, data_dir: Path) -> Path:
    return data_dir / f"{name}_v{GENERATOR_VERSION}_seed{seed}.npz"


def _save(path: Path, arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            named: dict[str, Any] = {**arrays, "meta": np.array(json.dumps(meta))}  # Any: savez's **kwds typing
            np.savez(fh, **named)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load(name: str, seed: int = 0, data_dir: Path | None = None, rows: int | None = None) -> BenchData:
    """The named set (``ctr``, ``ratings`` or ``digits``), generated and cached on first use.

    ``rows`` subsamples the training rows (and the test rows in proportion) for quick runs.
    """
    data_dir = DATA_DIR if data_dir is None else data_dir
    if name == "digits":
        return make_digits(seed).subsample(rows)
    if name not in ("ctr", "ratings"):
        raise ValueError(f"unknown data set {name!r}: expected ctr, ratings or digits")
    path = _cache_path(name, seed, data_dir)
    if path.exists():
        with np.load(path, allow_pickle=False) as npz:
            raw = {k: npz[k] for k in npz.files if k != "meta"}
            cached_meta = json.loads(str(npz["meta"]))
    else:
        raw = generate_ctr(seed) if name == "ctr" else generate_ratings(seed)
        cached_meta = {"seed": seed, "generator_version": GENERATOR_VERSION}
    if name == "ctr":
        train, test, meta = _ctr_sets(raw, CTR_FEATURES)
        task = "binary_classifier"
    else:
        train, test, meta = _ratings_sets(raw)
        task = "regressor"
    if not path.exists():
        _save(path, raw, dict(cached_meta, **meta))
    data = BenchData(name, task, train, test, dict(cached_meta, **meta))
    return data.subsample(rows)
