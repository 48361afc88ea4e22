"""Top-k candidates of a Factorization Machine for a context, without scoring a row per pair.

The row scored for a candidate is the context's features followed by the candidate's. With s = Σ_i x_i·V_i
the summed factors of a set of features and q = Σ_i x_i²·|V_i|², the FM score splits exactly into

    z = w0 + lin(ctx) + ½(|s_ctx|² − q_ctx)          the context part, one number per context
          + lin(c)   + ½(|s_c|²   − q_c)             the candidate's own part, one number per candidate
          + <s_ctx, s_c>                             one inner product

(for a one-hot candidate feature c: own part w[c], s_c = V[c]). A row holding a feature twice holds it once with
the summed value (``CSR``), so a feature f that both the context (value a) and a candidate (value b) hold has
x_f = a + b, whose square the split counts as a² + b²: such a candidate's z is corrected by −a·b·|V_f|² (rare,
found per context with a search over the candidate set's features). All candidates of a context are ranked with one
matrix-vector product (all contexts sharing a candidate set: one matrix-matrix product, in blocks) and a
partial sort (``ranking_metrics.top_k``): ranked by z, ties broken by the lower candidate position. Scores are
what ``FactorizationMachines.predict_scores`` gives for the same rows: the probability sigmoid(z) for the binary
classifier, z for the regressor (equal up to float32 rounding of the sums' order).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp
from numba import njit

from algorithm._fastmath import FASTMATH
from algorithm.csr import CSR
from algorithm.fm import FactorizationMachines
from algorithm.ranking_metrics import BLOCK_VALUES, top_k

NO_POSITIONS = np.zeros(0, np.int64)
NO_POSITIONS.flags.writeable = False


@dataclass(frozen=True)
class Candidates:
    """A candidate set: the one-hot feature indices ``features`` (int64, sorted, unique) or the feature rows
    ``rows`` (a ``CSR`` of feature_dim columns). Queries holding the same object share one product."""

    features: np.ndarray | None = None
    rows: CSR | None = None

    def __post_init__(self) -> None:
        if (self.features is None) == (self.rows is None):
            raise ValueError("Candidates takes either features or rows")
        if self.features is not None and not np.all(np.diff(self.features) > 0):
            raise ValueError("candidate features must be sorted and unique")

    def __len__(self) -> int:
        return int(self.features.size) if self.features is not None else self.rows.n_rows  # type: ignore[union-attr]


@dataclass(frozen=True)
class TopKQuery:
    """One context (its features ``keys`` and ``values``), its ``candidates``, ``k`` and the candidate
    positions to leave out (``exclude``) or to rank alone (``include``; None: all)."""

    keys: np.ndarray
    values: np.ndarray
    candidates: Candidates
    k: int
    exclude: np.ndarray = field(default_factory=lambda: NO_POSITIONS)
    include: np.ndarray | None = None


@dataclass(frozen=True)
class Ranked:
    """A query's answer: candidate ``positions`` best first and their ``scores`` (as ``predict_scores``)."""

    positions: np.ndarray
    scores: np.ndarray


class _SharedFeatures:
    """The features a context shares with candidates of one set, and the correction −a·b·|V_f|² of those
    candidates' z (module docstring)."""

    def __init__(self, candidates: Candidates, contexts: CSR, v_sq: np.ndarray) -> None:
        self.contexts, self.v_sq = contexts, v_sq
        if candidates.features is not None:
            self.columns, self.values = candidates.features, None
            self.rows: np.ndarray | None = None
        else:
            rows = candidates.rows
            assert rows is not None
            self.columns, self.values = rows.indices, rows.data
            self.rows = np.repeat(np.arange(rows.n_rows), np.diff(rows.indptr))
        self.distinct = self.columns if self.rows is None else np.unique(self.columns)

    def correct(self, context: int, scores: np.ndarray, subset: np.ndarray | None) -> None:
        """Correct one context's ``scores`` (of the candidate positions ``subset``, else of all) in place."""
        lo, hi = self.contexts.indptr[context], self.contexts.indptr[context + 1]
        keys, values = self.contexts.indices[lo:hi], self.contexts.data[lo:hi]
        at = np.minimum(np.searchsorted(self.distinct, keys), max(self.distinct.size - 1, 0))
        shared = np.flatnonzero(self.distinct[at] == keys) if self.distinct.size else NO_POSITIONS
        for k in shared:
            if self.rows is None:
                positions, products = at[k:k + 1], values[k:k + 1]
            else:
                entries = np.flatnonzero(self.columns == keys[k])
                positions, products = self.rows[entries], values[k] * self.values[entries]  # type: ignore[index]
            amounts = (products * self.v_sq[keys[k]]).astype(np.float32)
            if subset is not None:
                order = np.argsort(subset)
                column = order[np.minimum(np.searchsorted(subset, positions, sorter=order), subset.size - 1)]
                listed = subset[column] == positions
                positions, amounts = column[listed], amounts[listed]
            scores[positions] -= amounts


@njit(fastmath=FASTMATH, cache=True, nogil=True)
def _one_context(factors: np.ndarray, own: np.ndarray, sums: np.ndarray, constant: float, out: np.ndarray) -> None:
    """out[j] = (<sums, factors[j]> + own[j]) + constant: one context's scores, on this thread (a multithreaded
    BLAS matrix-vector product waits for its sleeping threads to wake, milliseconds on a busy machine)."""
    for j in range(factors.shape[0]):
        acc = np.float32(0.0)
        for f in range(factors.shape[1]):
            acc += factors[j, f] * sums[f]
        out[j] = (acc + own[j]) + constant


def _sigmoid(z: np.ndarray) -> np.ndarray:
    z64 = z.astype(np.float64)
    e = np.exp(-np.abs(z64))
    return np.where(z64 >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(np.float32)


class FMTopK:
    """The top-k candidates of contexts under a fitted ``FactorizationMachines`` (module docstring)."""

    def __init__(self, model: FactorizationMachines) -> None:
        model._check_fitted()
        self.w0 = np.float32(model.w0_[0])
        self.w, self.V = model.w_, model.V_
        self.v_sq = np.einsum("ij,ij->i", self.V, self.V, dtype=np.float32)  # |V_i|² per feature
        self.feature_dim = model.feature_dim
        self.logistic = model.predictor_type == "binary_classifier"

    def _parts(self, data: np.ndarray, indices: np.ndarray, indptr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(s, lin + ½(|s|² − q)) of each row of a CSR (whose rows hold each feature once)."""
        shape = (indptr.size - 1, self.feature_dim)
        X = sp.csr_matrix((data, indices, indptr), shape=shape)
        sums = np.asarray(X @ self.V, dtype=np.float32)
        squared = sp.csr_matrix((data * data, indices, indptr), shape=shape)
        own = X @ self.w + np.float32(0.5) * (np.einsum("ij,ij->i", sums, sums) - squared @ self.v_sq)
        return sums, own.astype(np.float32)

    def _candidate_parts(self, candidates: Candidates) -> tuple[np.ndarray, np.ndarray]:
        """(factors, own part) of every candidate: a view for a contiguous feature range, else a gather."""
        if candidates.rows is not None:
            rows = candidates.rows
            return self._parts(rows.data, rows.indices, rows.indptr)
        features = candidates.features
        assert features is not None
        if features.size and features[-1] - features[0] == features.size - 1:  # sorted, unique: a range
            block = slice(int(features[0]), int(features[-1]) + 1)
            return self.V[block], self.w[block]
        return self.V[features], self.w[features]

    def rank(self, queries: list[TopKQuery]) -> list[Ranked]:
        """The top ``k`` candidates of every query, in order. Contexts sharing a ``Candidates`` object (and
        without ``include``) are ranked together; an ``include`` list ranks those candidates alone. Fewer than
        ``k`` come back when exclusions leave fewer."""
        if not queries:
            return []
        keys = [q.keys for q in queries]
        indptr = np.zeros(len(queries) + 1, np.int64)
        np.cumsum([k.size for k in keys], out=indptr[1:])
        contexts = CSR(np.concatenate([q.values for q in queries]).astype(np.float32),
                       np.concatenate(keys).astype(np.int64), indptr, self.feature_dim)  # repeated keys summed
        ctx_sums, ctx_part = self._parts(contexts.data, contexts.indices, contexts.indptr)
        ctx_part += self.w0
        answers: list[Ranked | None] = [None] * len(queries)
        groups: dict[int, list[int]] = {}
        for i, q in enumerate(queries):
            groups.setdefault(id(q.candidates), []).append(i)
        for members in groups.values():
            factors, own = self._candidate_parts(queries[members[0]].candidates)
            shared_features = _SharedFeatures(queries[members[0]].candidates, contexts, self.v_sq)
            shared = [i for i in members if queries[i].include is None]
            if shared:
                self._rank_block(queries, shared, ctx_sums, ctx_part, factors, own, answers, shared_features)
            for i in members:
                include = queries[i].include
                if include is not None:
                    self._rank_block(queries, [i], ctx_sums, ctx_part, factors[include], own[include], answers,
                                     shared_features, include)
        return [a for a in answers if a is not None]

    def _rank_block(self, queries: list[TopKQuery], rows: list[int], ctx_sums: np.ndarray, ctx_part: np.ndarray,
                    factors: np.ndarray, own: np.ndarray, answers: list[Ranked | None],
                    shared_features: _SharedFeatures, subset: np.ndarray | None = None) -> None:
        """Rank ``factors``/``own`` for the contexts ``rows`` in blocks of at most ``BLOCK_VALUES`` scores;
        ``subset``: the candidate positions the columns stand for (an include list)."""
        n = factors.shape[0]
        width = min(max(queries[i].k for i in rows), n)
        step = max(1, BLOCK_VALUES // max(1, n))
        for start in range(0, len(rows), step):
            block = rows[start:start + step]
            if len(block) == 1:
                scores = np.empty((1, n), np.float32)
                _one_context(factors, own, ctx_sums[block[0]], ctx_part[block[0]], scores[0])
            else:
                scores = ctx_sums[block] @ factors.T
                scores += own
                scores += ctx_part[block, None]
            for j, i in enumerate(block):
                shared_features.correct(i, scores[j], subset)
                exclude = queries[i].exclude
                if exclude.size:
                    scores[j, exclude if subset is None else np.flatnonzero(np.isin(subset, exclude))] = -np.inf
            found, z = top_k(scores, width) if width else (np.zeros((len(block), 0), np.int64),
                                                           np.zeros((len(block), 0), np.float32))
            for j, i in enumerate(block):
                keep = found[j, :queries[i].k]
                keep_z = z[j, :queries[i].k]
                valid = keep >= 0
                positions = keep[valid] if subset is None else subset[keep[valid]]
                answers[i] = Ranked(positions, _sigmoid(keep_z[valid]) if self.logistic else keep_z[valid])
