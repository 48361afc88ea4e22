"""The WALS endpoint's predictor: the serving queries of the image (docs/wals.md) as methods, in the users'
own row and column ids. Every method sends one instance per query and returns one result per query: the
result dict, or ``{"error": "unknown row id ..."}`` for an id the model does not know."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable
from typing import Any

from fmwals.predictor import Predictor
from fmwals.serializers import JSON, JSONSerializer, PredictionsDeserializer


def _ids(values: Any) -> list[Any]:
    """One id or many, as JSON-ready values (numpy scalars unwrapped)."""
    items = [values] if isinstance(values, (str, int)) or not isinstance(values, Iterable) else list(values)
    return [v.item() if hasattr(v, "item") else v for v in items]


def _recommend_fields(k: int, exclude_seen: bool, include: Any, exclude: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"k": int(k), "exclude_seen": bool(exclude_seen)}
    if include is not None:
        fields["include"] = _ids(include)
    if exclude is not None:
        fields["exclude"] = _ids(exclude)
    return fields


class WALSPredictor(Predictor):
    """Scores, top-k recommendations, fold-in of new rows, similar columns and top rows of a WALS endpoint
    (no SDK counterpart). Each method returns a list with one dict per query, of the shape its docstring
    gives; ``predict`` takes raw queries (``{"instances": [...]}``, docs/wals.md) and returns the same list.
    """

    default_serializer = JSONSerializer
    default_deserializer = PredictionsDeserializer

    def _query(self, instances: list[dict[str, Any]]) -> list[dict[str, Any]]:
        body = json.dumps({"instances": instances}).encode()
        response, content_type = self.backend.invoke_endpoint(self.endpoint_name, body, JSON, JSON)
        return PredictionsDeserializer().deserialize(io.BytesIO(response), content_type)

    def score(self, rows: Any, cols: Any) -> list[dict[str, Any]]:
        """``{"score": s}`` for each (row, col) pair."""
        pairs = zip(_ids(rows), _ids(cols), strict=True)
        return self._query([{"row": r, "col": c} for r, c in pairs])

    def recommend(
        self, rows: Any, k: int = 10, exclude_seen: bool = True, include: Any = None, exclude: Any = None
    ) -> list[dict[str, Any]]:
        """``{"cols": [...], "scores": [...]}``: the top ``k`` columns of each known row."""
        fields = _recommend_fields(k, exclude_seen, include, exclude)
        return self._query([{"row": r, **fields} for r in _ids(rows)])

    def fold_in(
        self,
        observed: dict[str, list[Any]] | list[dict[str, list[Any]]],
        k: int = 10,
        weight: float = 1.0,
        exclude_seen: bool = True,
        include: Any = None,
        exclude: Any = None,
    ) -> list[dict[str, Any]]:
        """Top ``k`` columns of new rows given their observed entries (``{"cols": [...], "values": [...]}``,
        values optional), projected against the trained column factors."""
        rows = [observed] if isinstance(observed, dict) else list(observed)
        fields = _recommend_fields(k, exclude_seen, include, exclude)
        instances = [
            {"observed": {key: _ids(value) for key, value in row.items()}, "weight": float(weight), **fields}
            for row in rows
        ]
        return self._query(instances)

    def similar_cols(self, cols: Any, k: int = 10) -> list[dict[str, Any]]:
        """``{"cols": [...], "similarities": [...]}``: the columns most similar to each column."""
        return self._query([{"similar_to_col": c, "k": int(k)} for c in _ids(cols)])

    def top_rows_for_col(self, cols: Any, k: int = 10) -> list[dict[str, Any]]:
        """``{"rows": [...], "scores": [...]}``: the rows scoring each column highest."""
        return self._query([{"top_rows_for_col": c, "k": int(k)} for c in _ids(cols)])
