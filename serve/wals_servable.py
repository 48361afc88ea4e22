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
"""

from __future__ import annotations

import math
from collections.abc import Callable
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


class UnknownIdError(Exception):
    """An id the model was not trained on: reported in the instance's slot, not as a failed request."""


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


class _Instance:
    """Field readers of one instance: ``FieldError`` for malformed fields, ``UnknownIdError`` for unknown
    ids."""

    def __init__(self, fields: dict[str, Any], model: WALSModel) -> None:
        self.fields = fields
        self.model = model

    def id(self, name: str, ids: IdMap, what: str) -> int:
        value = self.fields[name]
        if isinstance(value, bool) or not isinstance(value, str | int):
            raise FieldError(f"field {name!r} must be a {what} id (a string or an integer), got {value!r}")
        index = ids.find(value)
        if index is None:
            raise UnknownIdError(f"unknown {what} id {value!r}")
        return index

    def k(self) -> int:
        value = self.fields.get("k", DEFAULT_K)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise FieldError(f"field 'k' must be an integer >= 1, got {value!r}")
        return value

    def flag(self, name: str, default: bool) -> bool:
        value = self.fields.get(name, default)
        if not isinstance(value, bool):
            raise FieldError(f"field {name!r} must be true or false, got {value!r}")
        return value

    def number(self, name: str, value: Any, low: float | None) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or (
                low is not None and value < low):
            rule = "a finite number" + ("" if low is None else f" >= {low:g}")
            raise FieldError(f"{name} must be {rule}, got {value!r}")
        return float(value)

    def id_list(self, name: str) -> np.ndarray | None:
        """Known column indices of an include/exclude list (unknown ids are ignored)."""
        values = self.fields.get(name)
        if values is None:
            return None
        if not isinstance(values, list) or any(isinstance(v, bool) or not isinstance(v, str | int)
                                               for v in values):
            raise FieldError(f"field {name!r} must be a list of column ids (strings or integers)")
        found = [self.model.col_ids.find(v) for v in values]
        return np.array([i for i in found if i is not None], dtype=np.int64)

    def observed(self) -> sp.csr_matrix:
        """The new row's entries as a 1 x num_cols matrix (duplicate columns summed)."""
        observed = self.fields["observed"]
        if not isinstance(observed, dict) or set(observed) - {"cols", "values"} or "cols" not in observed:
            raise FieldError('field \'observed\' must be {"cols": [...], "values": [...]} (values optional)')
        cols, values = observed["cols"], observed.get("values")
        if not isinstance(cols, list) or not cols:
            raise FieldError("field 'observed.cols' must be a non-empty list of column ids")
        if values is None:
            values = [1.0] * len(cols)
        if not isinstance(values, list) or len(values) != len(cols):
            raise FieldError(f"field 'observed.values' must be a list as long as observed.cols ({len(cols)})")
        low = None if self.model.wals.alpha is None else 0.0
        numbers = [self.number(f"observed.values[{i}]", v, low) for i, v in enumerate(values)]
        indices = []
        for position, col in enumerate(cols):
            if isinstance(col, bool) or not isinstance(col, str | int):
                raise FieldError(f"observed.cols[{position}] must be a column id, got {col!r}")
            index = self.model.col_ids.find(col)
            if index is None:
                raise UnknownIdError(f"unknown col id {col!r} in observed.cols")
            indices.append(index)
        matrix = sp.csr_matrix((numbers, ([0] * len(indices), indices)),
                               shape=(1, len(self.model.col_ids)), dtype=np.float32)
        matrix.sum_duplicates()
        return matrix


def _json(text: bytes, where: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise DataError(f"{REQUEST_SOURCE}: {where} is not valid JSON: {err}") from None


class WALSServable:
    """A ``WALSModel`` behind the ``serve.model_store.Servable`` protocol (see the module docstring)."""

    content_types = (JSON, JSONLINES)
    accepts = (JSON, JSONLINES)

    def __init__(self, model: WALSModel) -> None:
        self.model = model
        self.warm = False
        self._queries: dict[str, Callable[[_Instance], dict[str, Any]]] = {
            "score": self._score, "recommend": self._recommend, "fold_in": self._fold_in,
            "similar_cols": self._similar_cols, "top_rows": self._top_rows,
        }

    # ----------------------------------------------------------------------------- queries

    def _ranked(self, ids: IdMap, found: np.ndarray, values: np.ndarray, ids_key: str,
                values_key: str) -> dict[str, Any]:
        keep = (found >= 0) & np.isfinite(values)
        return {ids_key: ids.to_list(found[keep]), values_key: values[keep].tolist()}

    def _recommend_from(self, factors: np.ndarray, q: _Instance, seen: sp.csr_matrix) -> dict[str, Any]:
        k = min(q.k(), len(self.model.col_ids))
        found, scores = self.model.wals.recommend_from_factors(
            factors, k, exclude_seen=seen if q.flag("exclude_seen", True) else None,
            include=q.id_list("include"), exclude=q.id_list("exclude"))
        return self._ranked(self.model.col_ids, found[0], scores[0], "cols", "scores")

    def _score(self, q: _Instance) -> dict[str, Any]:
        row = q.id("row", self.model.row_ids, "row")
        col = q.id("col", self.model.col_ids, "col")
        return {"score": float(self.model.wals.predict([row], [col])[0])}

    def _recommend(self, q: _Instance) -> dict[str, Any]:
        row = q.id("row", self.model.row_ids, "row")
        return self._recommend_from(self.model.wals.row_factors_[row:row + 1], q, self.model.seen[row])

    def _fold_in(self, q: _Instance) -> dict[str, Any]:
        observed = q.observed()
        weight = q.number("field 'weight'", q.fields.get("weight", 1.0), 0.0)
        return self._recommend_from(self.model.wals.project_rows(observed, weight), q, observed)

    def _similar_cols(self, q: _Instance) -> dict[str, Any]:
        col = q.id("similar_to_col", self.model.col_ids, "col")
        found, values = self.model.wals.similar_cols(col, q.k())
        return self._ranked(self.model.col_ids, found, values, "cols", "similarities")

    def _top_rows(self, q: _Instance) -> dict[str, Any]:
        col = q.id("top_rows_for_col", self.model.col_ids, "col")
        found, values = self.model.wals.top_rows_for_col(col, q.k())
        return self._ranked(self.model.row_ids, found, values, "rows", "scores")

    def answer(self, position: int, instance: Any) -> dict[str, Any]:
        """The result of one instance, or ``{"error": ...}`` for an unknown id; DataError if malformed."""
        where = f"{REQUEST_SOURCE}: instance {position}"
        if not isinstance(instance, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(instance).__name__}")
        try:
            kind = _kind(instance)
            extra = sorted(set(instance) - FIELDS[kind])
            if extra:
                raise FieldError(f"field {extra[0]!r} is not allowed in a {kind} query "
                                 f"(allowed: {', '.join(sorted(FIELDS[kind]))})")
            return self._queries[kind](_Instance(instance, self.model))
        except UnknownIdError as err:
            return {"error": str(err)}
        except FieldError as err:
            raise DataError(f"{where}: {err}") from None

    # ----------------------------------------------------------------------------- bodies

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
        results = [self.answer(i, instance) for i, instance in enumerate(instances)]
        if accept == JSONLINES:
            return b"\n".join(orjson.dumps(r) for r in results)
        return orjson.dumps({"predictions": results})

    def warm_up(self) -> None:
        """Run every query kind once (first row and column ids), so that no request pays for compilation."""
        row, col = self.model.row_ids.to_list(np.arange(1))[0], self.model.col_ids.to_list(np.arange(1))[0]
        instances = [{"row": row, "col": col}, {"row": row, "k": 2, "include": [col], "exclude": []},
                     {"observed": {"cols": [col], "values": [1.0]}, "k": 2}, {"similar_to_col": col, "k": 2},
                     {"top_rows_for_col": col, "k": 2}]
        body = orjson.dumps({"instances": instances})
        for accept in self.accepts:
            self.invoke(body, JSON, accept)
        self.warm = True
