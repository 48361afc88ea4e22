"""FM top-k queries in ``/invocations`` bodies (README, "Top-k queries"): the best candidates for a context.

A JSON body ``{"queries": [query, ...]}`` or a JSON Lines body with one query a line; each query is

    {"context": {"keys": [...], "values": [...]},          the user's (and any other) features; values
                                                            optional (1.0 each), context optional (empty)
     "candidates": {"range": [lo, hi]}                      one-hot features lo <= c < hi
                 | {"ids": [c, ...]}                        one-hot features, listed
                 | {"rows": [{"keys": [...], "values": [...]}, ...], "row_ids": [...]},
                                                            feature rows; row_ids optional (else positions)
     "k": 10,                                               default: 10, or all candidates when fewer
     "exclude": [...], "include": [...]}                    candidate ids (feature indices, or row ids)

and its answer ``{"candidates": [...], "scores": [...]}`` (plus ``"predicted_labels"`` for the binary
classifier), best first, in the ids the query used: the score is what scoring the row "context's features
followed by the candidate's" gives. Ties go to the lower feature index (to the earlier row for rows).
``exclude`` ids that are not candidates are ignored; ``include`` ranks only the listed candidates, each of
which must be one. A JSON answer is ``{"predictions": [answer, ...]}``, JSON Lines one answer a line.

A malformed query fails the request with a ``DataError`` (400) naming the query and the field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

from algorithm.csr import CSR
from algorithm.fm_topk import Candidates, Ranked, TopKQuery
from container.errors import DataError
from container.formats.queries import REQUEST_SOURCE, FieldError, check_each, encode_answers
from container.formats.registry import JSON, JSONLINES

DEFAULT_K = 10
FIELDS = frozenset({"context", "candidates", "k", "exclude", "include"})
CANDIDATE_KINDS = ("range", "ids", "rows")
ROW_FIELDS = frozenset({"keys", "values"})
Labels = Callable[[np.ndarray], Any]  # candidate positions -> the ids the user sent


@dataclass(frozen=True)
class Query:
    """A checked query: the algorithm's ``ranked`` query and ``labels``, its positions' ids."""

    ranked: TopKQuery
    labels: Labels


@dataclass(frozen=True)
class _CandidateSet:
    candidates: Candidates
    positions: Callable[[str, list[Any]], tuple[np.ndarray, np.ndarray]]  # ids -> (positions, found mask)
    labels: Labels


def query_instances(body: bytes, content_type: str) -> list[Any] | None:
    """The queries of a top-k body, or None when the body is not one (plain scoring instances). A JSON body
    is one when it is an object with ``"queries"``, a JSON Lines body when its first line has
    ``"candidates"``; other bodies are never parsed here."""
    if content_type == JSON and b'"queries"' in body:
        document = _json(body, "body")
        if isinstance(document, dict) and "queries" in document:
            extra = sorted(set(document) - {"queries"})
            if extra:
                raise DataError(f"{REQUEST_SOURCE}: field {extra[0]!r} is not allowed beside 'queries'")
            if not isinstance(document["queries"], list) or not document["queries"]:
                raise DataError(f"{REQUEST_SOURCE}: 'queries' must be a non-empty list of queries")
            return document["queries"]
    elif content_type == JSONLINES and b'"candidates"' in body:
        lines = [line for line in body.splitlines() if line.strip()]
        first = _json(lines[0], "line 1")
        if isinstance(first, dict) and "candidates" in first:
            return [first] + [_json(line, f"line {n}") for n, line in enumerate(lines[1:], 2)]
    return None


def _json(text: bytes, where: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise DataError(f"{REQUEST_SOURCE}: {where} is not valid JSON: {err}") from None


def _ints(name: str, values: Any) -> np.ndarray:
    """A JSON list of integers as int64 (empty allowed)."""
    if not isinstance(values, list):
        raise FieldError(f"field {name!r} must be a list of integers, got {type(values).__name__}")
    try:
        array = np.array(values) if values else np.zeros(0, np.int64)
    except ValueError:  # lists of different lengths inside
        array = None
    if array is None or array.ndim != 1 or array.dtype.kind != "i":  # uint64, object: integers past int64
        bad = next((v for v in values if isinstance(v, bool) or not isinstance(v, int)), values)
        raise FieldError(f"field {name!r} must be a list of 64-bit integers, got {bad!r:.60}")
    return array.astype(np.int64, copy=False)


def _features(name: str, row: Any, feature_dim: int) -> tuple[np.ndarray, np.ndarray]:
    """The (keys, values) of a ``{"keys": [...], "values": [...]}`` object."""
    if not isinstance(row, dict):
        raise FieldError(f'field {name!r} must be {{"keys": [...], "values": [...]}}, got {row!r}')
    extra = sorted(set(row) - ROW_FIELDS)
    if extra:
        raise FieldError(f"field '{name}.{extra[0]}' is not allowed (allowed: keys, values)")
    keys = _ints(f"{name}.keys", row.get("keys", []))
    bad = np.flatnonzero((keys < 0) | (keys >= feature_dim))
    if bad.size:
        raise FieldError(f"field '{name}.keys[{bad[0]}]' = {keys[bad[0]]} is outside [0, feature_dim={feature_dim})")
    values = row.get("values")
    if values is None:
        return keys, np.ones(keys.size, np.float32)
    if (not isinstance(values, list) or len(values) != keys.size
            or not all(not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v) for v in values)):
        raise FieldError(f"field '{name}.values' must be a list of {keys.size} finite numbers, one per key")
    return keys, np.array(values, np.float32)


def _feature_set(features: np.ndarray) -> _CandidateSet:
    def positions(name: str, ids: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        wanted = _ints(name, ids)
        at = np.minimum(np.searchsorted(features, wanted), features.size - 1)
        found = features[at] == wanted
        return at, found

    return _CandidateSet(Candidates(features=features), positions, lambda at: features[at])


def _row_set(spec: dict[str, Any], feature_dim: int) -> _CandidateSet:
    rows = spec["rows"]
    if not isinstance(rows, list) or not rows:
        raise FieldError("field 'candidates.rows' must be a non-empty list of {\"keys\": [...], \"values\": [...]}")
    parts = [_features(f"candidates.rows[{r}]", row, feature_dim) for r, row in enumerate(rows)]
    indptr = np.zeros(len(rows) + 1, np.int64)
    np.cumsum([keys.size for keys, _ in parts], out=indptr[1:])
    csr = CSR(np.concatenate([v for _, v in parts]).astype(np.float32), np.concatenate([k for k, _ in parts]),
              indptr, feature_dim)
    row_ids = spec.get("row_ids")
    if row_ids is None:
        def by_position(name: str, ids: list[Any]) -> tuple[np.ndarray, np.ndarray]:
            wanted = _ints(name, ids)
            return np.clip(wanted, 0, len(rows) - 1), (wanted >= 0) & (wanted < len(rows))

        return _CandidateSet(Candidates(rows=csr), by_position, lambda at: at)
    if (not isinstance(row_ids, list) or len(row_ids) != len(rows)
            or not all(isinstance(v, str | int) and not isinstance(v, bool) for v in row_ids)):
        raise FieldError(f"field 'candidates.row_ids' must be a list of {len(rows)} ids (strings or integers), "
                         "one per row")
    index = {value: position for position, value in enumerate(row_ids)}
    if len(index) != len(row_ids):
        raise FieldError("field 'candidates.row_ids' holds an id twice; row ids must be unique")

    def by_id(name: str, ids: list[Any]) -> tuple[np.ndarray, np.ndarray]:
        if not isinstance(ids, list):
            raise FieldError(f"field {name!r} must be a list of row ids")
        at = np.array([index.get(v, -1) if isinstance(v, str | int) else -1 for v in ids], np.int64)
        return np.maximum(at, 0), at >= 0

    return _CandidateSet(Candidates(rows=csr), by_id, lambda at: [row_ids[p] for p in at.tolist()])


def _candidate_set(spec: Any, feature_dim: int) -> _CandidateSet:
    if not isinstance(spec, dict) or sum(kind in spec for kind in CANDIDATE_KINDS) != 1:
        raise FieldError('field \'candidates\' must be one of {"range": [lo, hi]}, {"ids": [...]} or '
                         '{"rows": [...], "row_ids": [...]}')
    kind = next(kind for kind in CANDIDATE_KINDS if kind in spec)
    allowed = {"rows", "row_ids"} if kind == "rows" else {kind}
    extra = sorted(set(spec) - allowed)
    if extra:
        raise FieldError(f"field 'candidates.{extra[0]}' is not allowed with {kind!r}")
    if kind == "rows":
        return _row_set(spec, feature_dim)
    if kind == "range":
        span = spec["range"]
        if (not isinstance(span, list) or len(span) != 2
                or not all(isinstance(v, int) and not isinstance(v, bool) for v in span)):
            raise FieldError(f"field 'candidates.range' must be [lo, hi] (integers), got {span!r}")
        lo, hi = span
        if not 0 <= lo < hi <= feature_dim:
            raise FieldError(f"field 'candidates.range' = [{lo}, {hi}] must satisfy 0 <= lo < hi <= "
                             f"feature_dim={feature_dim}")
        return _feature_set(np.arange(lo, hi, dtype=np.int64))
    ids = _ints("candidates.ids", spec["ids"])
    if not ids.size:
        raise FieldError("field 'candidates.ids' must not be empty")
    bad = np.flatnonzero((ids < 0) | (ids >= feature_dim))
    if bad.size:
        raise FieldError(f"field 'candidates.ids[{bad[0]}]' = {ids[bad[0]]} is outside "
                         f"[0, feature_dim={feature_dim})")
    features = np.unique(ids)
    if features.size != ids.size:
        raise FieldError("field 'candidates.ids' holds a feature twice; candidate ids must be unique")
    return _feature_set(features)


def _check(query: dict[str, Any], feature_dim: int, sets: dict[bytes, _CandidateSet]) -> Query:
    extra = sorted(set(query) - FIELDS)
    if extra:
        raise FieldError(f"field {extra[0]!r} is not allowed (allowed: {', '.join(sorted(FIELDS))})")
    if "candidates" not in query:
        raise FieldError("field 'candidates' is missing")
    keys, values = _features("context", query.get("context", {}), feature_dim)
    spec_key = orjson.dumps(query["candidates"], option=orjson.OPT_SORT_KEYS)
    if spec_key not in sets:  # queries with the same candidates share one set (one product)
        sets[spec_key] = _candidate_set(query["candidates"], feature_dim)
    found_set = sets[spec_key]
    n = len(found_set.candidates)
    k = query.get("k", min(DEFAULT_K, n))
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise FieldError(f"field 'k' must be an integer from 1 to the number of candidates ({n}), got {k!r}")
    exclude = np.zeros(0, np.int64)
    if query.get("exclude") is not None:
        at, found = found_set.positions("exclude", query["exclude"])
        exclude = at[found]  # ids that are not candidates are ignored
    include = None
    if query.get("include") is not None:
        at, found = found_set.positions("include", query["include"])
        if not found.all():
            bad = query["include"][int(np.flatnonzero(~found)[0])]
            raise FieldError(f"field 'include' holds {bad!r}, which is not a candidate")
        both = np.flatnonzero(np.isin(at, exclude))
        if both.size:
            raise FieldError(f"field 'include' holds {query['include'][int(both[0])]!r}, which 'exclude' also "
                             "holds; a candidate is either included or excluded")
        include = np.unique(at)
    return Query(TopKQuery(keys, values, found_set.candidates, k, exclude, include), found_set.labels)


def read_queries(instances: list[Any], feature_dim: int) -> list[Query]:
    """The checked queries, in order; ``DataError`` naming the first malformed query and its field."""
    sets: dict[bytes, _CandidateSet] = {}
    return check_each(instances, "query", lambda query: _check(query, feature_dim, sets))


def encode_ranked(queries: list[Query], ranked: list[Ranked], classifier: bool, accept: str) -> bytes:
    """The response body: per query its ``candidates`` (the ids the user sent), ``scores`` and, for the
    classifier, ``predicted_labels``, as ``queries.encode_answers`` writes them."""
    answers = []
    for query, answer in zip(queries, ranked, strict=True):
        fields: dict[str, Any] = {"candidates": query.labels(answer.positions), "scores": answer.scores}
        if classifier:
            fields["predicted_labels"] = (answer.scores >= 0.5).astype(np.float32)
        answers.append(fields)
    return encode_answers(answers, accept)
