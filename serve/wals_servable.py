"""WALS behind ``/invocations``: JSON (``{"instances": [...]}``) or JSON Lines (one instance a line) in and
out, each instance one query in the users' own row and column ids (docs/wals.md, "WALS in the container").

    {"row": r, "col": c}                              -> {"score": s}
    {"row": r, "k": 10, "exclude_seen": true,
     "include": [c, ...], "exclude": [c, ...]}        -> {"cols": [...], "scores": [...]}
    {"observed": {"cols": [...], "values": [...]},
     "weight": 1.0, "k", "exclude_seen", "include",
     "exclude"}                                       -> {"cols": [...], "scores": [...]}   (fold-in)
    {"similar_to_col": c, "k": 10}                    -> {"cols": [...], "similarities": [...]}
    {"top_rows_for_col": c, "k": 10}                  -> {"rows": [...], "scores": [...]}

An id the model does not know answers ``{"error": "unknown row id 'u9'"}`` in that instance's slot (ids in
``include``/``exclude`` the model does not know are ignored); a malformed instance fails the request with a
``DataError`` (400) naming the instance and the field.

A request is answered in batches: every instance is checked first, the ids of all instances are looked up
together, all pair scores come from one ``predict`` call, all fold-ins from one ``project_rows`` call, and
the top-k lists of every known or folded-in row without an ``include`` list from one
``recommend_from_factors`` call (each row's exclusions as one row of a sparse mask, k the largest asked,
each answer cut to its own k). ``include`` lists, similar columns and top rows are answered one by one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import scipy.sparse as sp

from container.errors import DataError
from container.formats.registry import JSON, JSONLINES
from container.wals_model import IdMap, WALSModel

DEFAULT_K = 10
REQUEST_SOURCE = "request body"
_RECOMMEND_FIELDS = frozenset({"k", "exclude_seen", "include", "exclude"})
FIELDS = {
    "score": frozenset({"row", "col"}),
    "recommend": frozenset({"row"}) | _RECOMMEND_FIELDS,
    "fold_in": frozenset({"observed", "weight"}) | _RECOMMEND_FIELDS,
    "similar_cols": frozenset({"similar_to_col", "k"}),
    "top_rows": frozenset({"top_rows_for_col", "k"}),
}
ROW_KEY = {"score": "row", "recommend": "row"}
COL_KEY = {"score": "col", "similar_cols": "similar_to_col", "top_rows": "top_rows_for_col"}
NO_COLS = np.zeros(0, np.int64)
NO_COLS.flags.writeable = False


class FieldError(Exception):
    """A malformed field: the whole request fails with 400, naming the instance."""


def _kind(instance: dict[str, Any]) -> str:
    if "similar_to_col" in instance:
        return "similar_cols"
    if "top_rows_for_col" in instance:
        return "top_rows"
    if "observed" in instance:
        return "fold_in"
    if "row" in instance:
        return "score" if "col" in instance else "recommend"
    raise FieldError("needs one of 'row', 'observed', 'similar_to_col' or 'top_rows_for_col'")


def _is_id(value: Any) -> bool:
    return isinstance(value, str | int) and not isinstance(value, bool)


@dataclass
class _Query:
    """One checked instance; the ids are the users' until ``_Batch`` looks them up."""

    kind: str
    fields: dict[str, Any]
    k: int = DEFAULT_K
    exclude_seen: bool = True
    weight: float = 1.0
    values: list[float] = field(default_factory=list)  # observed.values of a fold-in
    error: str | None = None  # an unknown id: the answer of this instance
    row: int = -1  # matrix indices, once looked up
    col: int = -1
    observed: np.ndarray = field(default_factory=lambda: NO_COLS)  # a fold-in's columns (read-only)
    include: np.ndarray | None = None
    exclude: np.ndarray | None = None

    def id(self, name: str, what: str) -> Any:
        value = self.fields[name]
        if not _is_id(value):
            raise FieldError(f"field {name!r} must be a {what} id (a string or an integer), got {value!r}")
        return value

    def id_list(self, name: str) -> list[Any] | None:
        values = self.fields.get(name)
        if values is not None and (not isinstance(values, list) or not all(map(_is_id, values))):
            raise FieldError(f"field {name!r} must be a list of column ids (strings or integers)")
        return values

    def observed_cols(self) -> list[Any]:
        observed = self.fields["observed"]
        result: list[Any] = observed["cols"]
        return result


def _number(name: str, value: Any, low: float | None) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or (
            low is not None and value < low):
        rule = "a finite number" + ("" if low is None else f" >= {low:g}")
        raise FieldError(f"{name} must be {rule}, got {value!r}")
    return float(value)


def _check(instance: dict[str, Any], implicit: bool) -> _Query:
    """The instance's fields checked (``FieldError`` if malformed); ids are not looked up yet."""
    kind = _kind(instance)
    extra = sorted(set(instance) - FIELDS[kind])
    if extra:
        raise FieldError(f"field {extra[0]!r} is not allowed in a {kind} query "
                         f"(allowed: {', '.join(sorted(FIELDS[kind]))})")
    q = _Query(kind, instance)
    if kind in ROW_KEY:
        q.id(ROW_KEY[kind], "row")
    if kind in COL_KEY:
        q.id(COL_KEY[kind], "col")
    if kind != "score":
        q.k = instance.get("k", DEFAULT_K)
        if isinstance(q.k, bool) or not isinstance(q.k, int) or q.k < 1:
            raise FieldError(f"field 'k' must be an integer >= 1, got {q.k!r}")
    if kind in ("recommend", "fold_in"):
        q.exclude_seen = instance.get("exclude_seen", True)
        if not isinstance(q.exclude_seen, bool):
            raise FieldError(f"field 'exclude_seen' must be true or false, got {q.exclude_seen!r}")
        q.id_list("include")
        q.id_list("exclude")
    if kind == "fold_in":
        observed = instance["observed"]
        if not isinstance(observed, dict) or set(observed) - {"cols", "values"} or "cols" not in observed:
            raise FieldError('field \'observed\' must be {"cols": [...], "values": [...]} (values optional)')
        cols, values = observed["cols"], observed.get("values")
        if not isinstance(cols, list) or not cols:
            raise FieldError("field 'observed.cols' must be a non-empty list of column ids")
        if values is None:
            values = [1.0] * len(cols)
        if not isinstance(values, list) or len(values) != len(cols):
            raise FieldError(f"field 'observed.values' must be a list as long as observed.cols ({len(cols)})")
        low = 0.0 if implicit else None
        q.values = [_number(f"observed.values[{i}]", v, low) for i, v in enumerate(values)]
        for position, col in enumerate(cols):
            if not _is_id(col):
                raise FieldError(f"observed.cols[{position}] must be a column id, got {col!r}")
        q.weight = _number("field 'weight'", instance.get("weight", 1.0), 0.0)
    return q


def _index(ids: IdMap, values: list[Any]) -> np.ndarray:
    """The matrix index of each JSON id (int or string; an int map also takes "7" for 7), -1 if unknown."""
    return ids.index(np.array([str(v) for v in values], dtype=str))


def _split(ids: IdMap, lists: list[list[Any]]) -> list[np.ndarray]:
    """``_index`` of several lists in one lookup."""
    flat = _index(ids, [v for values in lists for v in values])
    return np.split(flat, np.cumsum([len(values) for values in lists])[:-1]) if lists else []


def _look_up(queries: list[_Query], model: WALSModel) -> None:
    """Every id of every query in one lookup per kind; unknown ids set the query's error."""
    rows = [q for q in queries if q.kind in ROW_KEY]
    for q, index in zip(rows, _index(model.row_ids, [q.fields[ROW_KEY[q.kind]] for q in rows]), strict=True):
        q.row = int(index)
        if index < 0:
            q.error = f"unknown row id {q.fields[ROW_KEY[q.kind]]!r}"
    cols = [q for q in queries if q.kind in COL_KEY]
    for q, index in zip(cols, _index(model.col_ids, [q.fields[COL_KEY[q.kind]] for q in cols]), strict=True):
        q.col = int(index)
        if index < 0 and q.error is None:
            q.error = f"unknown col id {q.fields[COL_KEY[q.kind]]!r}"
    folds = [q for q in queries if q.kind == "fold_in"]
    for q, found in zip(folds, _split(model.col_ids, [q.observed_cols() for q in folds]), strict=True):
        q.observed = found
        if (found < 0).any():
            q.error = f"unknown col id {q.observed_cols()[int(np.flatnonzero(found < 0)[0])]!r} in observed.cols"
    for name in ("include", "exclude"):
        listing = [q for q in queries if q.fields.get(name) is not None]
        for q, found in zip(listing, _split(model.col_ids, [q.fields[name] for q in listing]), strict=True):
            setattr(q, name, found[found >= 0])


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

    def _seen(self, q: _Query) -> np.ndarray:
        """The columns ``exclude_seen`` leaves out for a query: training entries or observed columns."""
        if not q.exclude_seen:
            return NO_COLS
        return q.observed if q.kind == "fold_in" else self.model.seen_cols(q.row)

    def _top_k(self, queries: list[_Query], results: list[dict[str, Any] | None], slots: list[int]) -> None:
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

    def _one(self, q: _Query) -> dict[str, Any]:
        """Similar columns or top rows of one query."""
        if q.kind == "similar_cols":
            found, values = self.model.wals.similar_cols(q.col, q.k)
            return self._ranked(self.model.col_ids, found, values, "cols", "similarities")
        found, values = self.model.wals.top_rows_for_col(q.col, q.k)
        return self._ranked(self.model.row_ids, found, values, "rows", "scores")

    def answer(self, instances: list[Any]) -> list[dict[str, Any]]:
        """The result of every instance, in order, ``{"error": ...}`` for an unknown id; DataError naming the
        first malformed instance."""
        implicit = self.model.wals.alpha is not None
        queries = []
        for position, instance in enumerate(instances):
            where = f"{REQUEST_SOURCE}: instance {position}"
            if not isinstance(instance, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(instance).__name__}")
            try:
                queries.append(_check(instance, implicit))
            except FieldError as err:
                raise DataError(f"{where}: {err}") from None
        _look_up(queries, self.model)
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

    @staticmethod
    def _instances(body: bytes, content_type: str) -> list[Any]:
        if content_type == JSONLINES:
            return [_json(line, f"line {n}") for n, line in enumerate(body.splitlines(), 1) if line.strip()]
        document = _json(body, "body")
        if isinstance(document, dict) and "instances" in document:
            document = document["instances"]
            if not isinstance(document, list):
                raise DataError(f"{REQUEST_SOURCE}: 'instances' must be a list of queries")
        return document if isinstance(document, list) else [document]

    def invoke(self, body: bytes, content_type: str, accept: str) -> bytes:
        instances = self._instances(body, content_type)
        if not instances:
            raise DataError(f"{REQUEST_SOURCE}: no instances")
        results = self.answer(instances)
        if accept == JSONLINES:
            return b"\n".join(orjson.dumps(r) for r in results)
        return orjson.dumps({"predictions": results})

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


def _json(text: bytes, where: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise DataError(f"{REQUEST_SOURCE}: {where} is not valid JSON: {err}") from None
