"""WALS queries in ``/invocations`` bodies: JSON (``{"instances": [...]}``, a bare list of instances, or one
instance) or JSON Lines (one instance a line) in and out, each instance one query in the users' own row and
column ids (docs/wals.md, "WALS in the container").

    {"row": r, "col": c}                              -> {"score": s}
    {"row": r, "k": 10, "exclude_seen": true,
     "include": [c, ...], "exclude": [c, ...]}        -> {"cols": [...], "scores": [...]}
    {"observed": {"cols": [...], "values": [...]},
     "weight": 1.0, "k", "exclude_seen", "include",
     "exclude"}                                       -> {"cols": [...], "scores": [...]}   (fold-in)
    {"similar_to_col": c, "k": 10}                    -> {"cols": [...], "similarities": [...]}
    {"top_rows_for_col": c, "k": 10}                  -> {"rows": [...], "scores": [...]}

``read_queries`` checks every instance; a malformed one fails the request with a ``DataError`` (400) naming
the instance and the field. ``look_up`` then finds the ids of all instances together: an id the model does
not know answers ``{"error": "unknown row id 'u9'"}`` in that instance's slot (ids in ``include``/``exclude``
the model does not know are ignored). ``encode_answers`` writes the answers in the format asked for.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson

from algorithm.wals_model import IdMap
from container.errors import DataError
from container.formats.queries import REQUEST_SOURCE, FieldError, check_each
from container.formats.registry import JSONLINES

DEFAULT_K = 10
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
class Query:
    """One checked instance; its ids are the users' until ``look_up`` turns them into matrix indices."""

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


def _check(instance: dict[str, Any], implicit: bool) -> Query:
    """The instance's fields checked (``FieldError`` if malformed); ids are not looked up yet."""
    kind = _kind(instance)
    extra = sorted(set(instance) - FIELDS[kind])
    if extra:
        raise FieldError(f"field {extra[0]!r} is not allowed in a {kind} query "
                         f"(allowed: {', '.join(sorted(FIELDS[kind]))})")
    q = Query(kind, instance)
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


def look_up(queries: list[Query], row_ids: IdMap, col_ids: IdMap) -> None:
    """Every id of every query in one lookup per kind; unknown ids set the query's error."""
    rows = [q for q in queries if q.kind in ROW_KEY]
    for q, index in zip(rows, _index(row_ids, [q.fields[ROW_KEY[q.kind]] for q in rows]), strict=True):
        q.row = int(index)
        if index < 0:
            q.error = f"unknown row id {q.fields[ROW_KEY[q.kind]]!r}"
    cols = [q for q in queries if q.kind in COL_KEY]
    for q, index in zip(cols, _index(col_ids, [q.fields[COL_KEY[q.kind]] for q in cols]), strict=True):
        q.col = int(index)
        if index < 0 and q.error is None:
            q.error = f"unknown col id {q.fields[COL_KEY[q.kind]]!r}"
    folds = [q for q in queries if q.kind == "fold_in"]
    for q, found in zip(folds, _split(col_ids, [q.observed_cols() for q in folds]), strict=True):
        q.observed = found
        if (found < 0).any():
            q.error = f"unknown col id {q.observed_cols()[int(np.flatnonzero(found < 0)[0])]!r} in observed.cols"
    for name in ("include", "exclude"):
        listing = [q for q in queries if q.fields.get(name) is not None]
        for q, found in zip(listing, _split(col_ids, [q.fields[name] for q in listing]), strict=True):
            setattr(q, name, found[found >= 0])


def _json(text: bytes, where: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise DataError(f"{REQUEST_SOURCE}: {where} is not valid JSON: {err}") from None


def _instances(body: bytes, content_type: str) -> list[Any]:
    if content_type == JSONLINES:
        return [_json(line, f"line {n}") for n, line in enumerate(body.splitlines(), 1) if line.strip()]
    document = _json(body, "body")
    if isinstance(document, dict) and "instances" in document:
        document = document["instances"]
        if not isinstance(document, list):
            raise DataError(f"{REQUEST_SOURCE}: 'instances' must be a list of queries")
    return document if isinstance(document, list) else [document]


def read_queries(body: bytes, content_type: str, implicit: bool) -> list[Query]:
    """The checked queries of a JSON or JSON Lines body, in order; ``DataError`` naming the first malformed
    instance. ``implicit``: the model is the implicit form (fold-in values must be >= 0)."""
    instances = _instances(body, content_type)
    if not instances:
        raise DataError(f"{REQUEST_SOURCE}: no instances")
    return check_each(instances, "instance", lambda instance: _check(instance, implicit))

