"""WALS behind ``/invocations``: the queries of ``container.formats.wals_queries`` answered by a ``WALSModel``.

A request is answered in batches: every instance is checked first, the ids of all instances are looked up
together, all pair scores come from one ``predict`` call, all fold-ins from one ``project_rows`` call, and
the top-k lists of every known or folded-in row without an ``include`` list from one
``recommend_from_factors`` call (each row's exclusions as one row of a sparse mask, k the largest asked,
each answer cut to its own k). ``include`` lists, similar columns and top rows are answered one by one.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import scipy.sparse as sp

from algorithm.wals_model import IdMap, WALSModel
from container.formats.queries import encode_answers
from container.formats.registry import JSON, JSONLINES
from container.formats.wals_queries import NO_COLS, Query, look_up, read_queries
from serve.limits import MIN_CANDIDATE_BYTES, UNLIMITED, Limits


def _csr(rows: list[np.ndarray], n_cols: int, values: list[list[float]] | None = None) -> sp.csr_matrix:
    """Rows of column indices (and values; else 1) as a CSR matrix, duplicates summed."""
    indptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum([r.size for r in rows], out=indptr[1:])
    indices = np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, np.int64)
    data = np.concatenate([np.asarray(v, np.float32) for v in values]) if values else np.ones(indices.size,
                                                                                             np.float32)
    matrix = sp.csr_matrix((data, indices, indptr), shape=(len(rows), n_cols))
    matrix.sum_duplicates()
    return matrix


class WALSServable:
    """A ``WALSModel`` behind the ``serve.model_store.Servable`` protocol (see the module docstring)."""

    content_types = (JSON, JSONLINES)
    accepts = (JSON, JSONLINES)

    def __init__(self, model: WALSModel) -> None:
        self.model = model
        self.warm = False

    def _ranked(self, ids: IdMap, found: np.ndarray, values: np.ndarray, ids_key: str,
                values_key: str) -> dict[str, Any]:
        keep = (found >= 0) & np.isfinite(values)
        return {ids_key: ids.to_list(found[keep]), values_key: values[keep].tolist()}

    def _seen(self, q: Query) -> np.ndarray:
        """The columns ``exclude_seen`` leaves out for a query: training entries or observed columns."""
        if not q.exclude_seen:
            return NO_COLS
        return q.observed if q.kind == "fold_in" else self.model.seen_cols(q.row)

    def _top_k(self, queries: list[Query], results: list[dict[str, Any] | None], slots: list[int]) -> None:
        """Top-k columns of known rows and fold-ins (see the module docstring)."""
        wals, n_cols = self.model.wals, len(self.model.col_ids)
        factors = np.empty((len(queries), wals.col_factors_.shape[1]), np.float32)
        known = [i for i, q in enumerate(queries) if q.kind == "recommend"]
        factors[known] = wals.row_factors_[[queries[i].row for i in known]]
        folds = [i for i, q in enumerate(queries) if q.kind == "fold_in"]
        if folds:
            observed = _csr([queries[i].observed for i in folds], n_cols, [queries[i].values for i in folds])
            factors[folds] = wals.project_rows(observed, np.array([queries[i].weight for i in folds], np.float32))
            for j, i in enumerate(folds):  # duplicates summed: each observed column once
                queries[i].observed = observed.indices[observed.indptr[j]:observed.indptr[j + 1]]
        batch = [i for i, q in enumerate(queries) if q.include is None]
        if batch:
            mask = _csr([np.concatenate([self._seen(queries[i]), queries[i].exclude if queries[i].exclude
                                         is not None else NO_COLS]) for i in batch], n_cols)
            width = min(max(queries[i].k for i in batch), n_cols)
            found, scores = wals.recommend_from_factors(factors[batch], width, exclude_seen=mask)
            for j, i in enumerate(batch):
                k = queries[i].k
                results[slots[i]] = self._ranked(self.model.col_ids, found[j, :k], scores[j, :k], "cols", "scores")
        for i, q in enumerate(queries):
            if q.include is not None:
                seen = _csr([self._seen(q)], n_cols)
                found, scores = wals.recommend_from_factors(factors[i:i + 1], min(q.k, n_cols), exclude_seen=seen,
                                                            include=q.include, exclude=q.exclude)
                results[slots[i]] = self._ranked(self.model.col_ids, found[0], scores[0], "cols", "scores")

    def _one(self, q: Query) -> dict[str, Any]:
        """Similar columns or top rows of one query."""
        if q.kind == "similar_cols":
            found, values = self.model.wals.similar_cols(q.col, q.k)
            return self._ranked(self.model.col_ids, found, values, "cols", "similarities")
        found, values = self.model.wals.top_rows_for_col(q.col, q.k)
        return self._ranked(self.model.row_ids, found, values, "rows", "scores")

    def answer(self, queries: list[Query]) -> list[dict[str, Any]]:
        """The answer of every checked query, in order, ``{"error": ...}`` for an unknown id."""
        look_up(queries, self.model.row_ids, self.model.col_ids)
        results: list[dict[str, Any] | None] = [None if q.error is None else {"error": q.error} for q in queries]
        pairs = [i for i, q in enumerate(queries) if q.kind == "score" and q.error is None]
        if pairs:
            scores = self.model.wals.predict([queries[i].row for i in pairs], [queries[i].col for i in pairs])
            for i, score in zip(pairs, scores.tolist(), strict=True):
                results[i] = {"score": score}
        ranked = [i for i, q in enumerate(queries) if q.kind in ("recommend", "fold_in") and q.error is None]
        if ranked:
            self._top_k([queries[i] for i in ranked], results, ranked)
        for i, q in enumerate(queries):
            if results[i] is None:
                results[i] = self._one(q)
        return [r for r in results if r is not None]

    def invoke(self, body: bytes, content_type: str, accept: str, limits: Limits = UNLIMITED) -> bytes:
        queries = read_queries(body, content_type, implicit=self.model.wals.alpha is not None)
        limits.check_rows(len(queries), "queries")
        listed = sum(q.k for q in queries if q.kind != "score")
        limits.check_estimate(listed * MIN_CANDIDATE_BYTES, f"{listed} listed ids")
        return limits.check_body(encode_answers(self.answer(queries), accept))

    def warm_up(self) -> None:
        """Run every query kind once (first row and column ids), so that no request pays for compilation."""
        row, col = self.model.row_ids.to_list(np.arange(1))[0], self.model.col_ids.to_list(np.arange(1))[0]
        instances = [{"row": row, "col": col}, {"row": row, "k": 2, "include": [col], "exclude": []},
                     {"row": row, "k": 2, "exclude": [col]}, {"observed": {"cols": [col], "values": [1.0]}, "k": 2},
                     {"similar_to_col": col, "k": 2}, {"top_rows_for_col": col, "k": 2}]
        body = orjson.dumps({"instances": instances})
        for accept in self.accepts:
            self.invoke(body, JSON, accept)
        self.warm = True

