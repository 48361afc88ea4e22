"""JSON (``application/json``) and JSON Lines (``application/jsonlines``) request bodies.

Instances may be dense ``{"features": [...]}``, ``{"data": {"features": {"values": [...]}}}`` or sparse
``{"data": {"features": {"keys": [...], "shape": [d], "values": [...]}}}`` (an optional ``configuration`` is
ignored). A JSON body is ``{"instances": [...]}``, a bare list of rows ``[[...], [...]]`` (what the SDK's
JSONSerializer sends for a 2-D array), or one flat row ``[...]``. A JSON Lines body has one instance (or one
bare row) per line. Errors name the instance and field, e.g. ``instances[3].data.features.keys``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson

from container.errors import DataError
from container.formats._rows import check_finite, check_keys, check_width, sparse_rows
from container.formats.dataset import Dataset


def _numbers(value: Any, dtype: type, source: str, where: str) -> np.ndarray:
    if not isinstance(value, list):
        raise DataError(f"{source}: {where} must be a list of numbers, got {type(value).__name__}")
    try:
        array: np.ndarray = np.array(value, dtype=dtype)
    except (ValueError, TypeError, OverflowError):
        raise DataError(f"{source}: {where} must be a list of numbers") from None
    if array.ndim != 1:
        raise DataError(f"{source}: {where} must be a flat list of numbers")
    if dtype is np.int64 and not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
        raise DataError(f"{source}: {where} must hold whole numbers")
    return array


def _instance(item: Any, source: str, where: str, feature_dim: int | None) -> tuple[np.ndarray, np.ndarray, int]:
    """(keys, values, n_cols) of one instance."""
    if isinstance(item, list):
        values = _numbers(item, np.float32, source, where)
        check_finite(values, source, where)
        nonzero = np.flatnonzero(values)
        return nonzero.astype(np.int64), values[nonzero], check_width(len(values), feature_dim, source, where)
    if not isinstance(item, dict):
        raise DataError(f"{source}: {where} must be an object or a list of numbers")
    if "features" in item:
        return _instance(item["features"], source, f"{where}.features", feature_dim)
    features = item.get("data", {}).get("features") if isinstance(item.get("data"), dict) else None
    if not isinstance(features, dict):
        raise DataError(f"{source}: {where} needs 'features' or 'data.features'")
    where = f"{where}.data.features"
    if "keys" not in features:
        return _instance(features.get("values"), source, f"{where}.values", feature_dim)
    keys = _numbers(features["keys"], np.int64, source, f"{where}.keys")
    values = _numbers(features.get("values"), np.float32, source, f"{where}.values")
    if len(keys) != len(values):
        raise DataError(f"{source}: {where} has {len(keys)} keys but {len(values)} values")
    check_finite(values, source, f"{where}.values")
    n_cols = feature_dim
    if "shape" in features:
        shape = _numbers(features["shape"], np.int64, source, f"{where}.shape")
        if len(shape) != 1 or shape[0] <= 0:
            raise DataError(f"{source}: {where}.shape must be [number_of_features]")
        if feature_dim is not None and shape[0] != feature_dim:
            raise DataError(f"{source}: {where}.shape is [{shape[0]}], expected [{feature_dim}] (feature_dim)")
        n_cols = int(shape[0])
    if n_cols is None:
        raise DataError(f"{source}: {where} has keys but no shape")
    check_keys(keys, n_cols, source, f"{where}.keys")
    return keys, values, n_cols


def _dataset(items: list[Any], source: str, prefix: str, feature_dim: int | None) -> Dataset:
    keys, values, widths = [], [], []
    for i, item in enumerate(items):
        k, v, n = _instance(item, source, f"{prefix}[{i}]", feature_dim)
        keys.append(k)
        values.append(v)
        widths.append(n)
    n_cols = feature_dim if feature_dim is not None else max(widths, default=0)
    return sparse_rows(keys, values, n_cols)


def _load(text: bytes | memoryview, source: str, where: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise DataError(f"{source}: {where}is not valid JSON: {err}") from None


def decode_json(
    body: bytes | memoryview, *, source: str, feature_dim: int | None = None, with_labels: bool = False
) -> Dataset:
    """A JSON request body to a Dataset (``with_labels`` is not supported by this request format)."""
    del with_labels
    doc = _load(bytes(body), source, "")
    if isinstance(doc, dict):
        if "instances" not in doc:
            raise DataError(f"{source}: a JSON object body needs an 'instances' list")
        if not isinstance(doc["instances"], list):
            raise DataError(f"{source}: 'instances' must be a list")
        return _dataset(doc["instances"], source, "instances", feature_dim)
    if isinstance(doc, list):
        if doc and not isinstance(doc[0], (list, dict)):
            return _dataset([doc], source, "row", feature_dim)
        return _dataset(doc, source, "rows", feature_dim)
    raise DataError(f"{source}: the JSON body must be an object with 'instances' or a list of rows")


def decode_jsonlines(
    body: bytes | memoryview, *, source: str, feature_dim: int | None = None, with_labels: bool = False
) -> Dataset:
    """A JSON Lines body (one instance or bare row per non-blank line) to a Dataset."""
    del with_labels
    items = [_load(line, source, f"line {n} ")
             for n, line in enumerate(bytes(body).splitlines(), start=1) if line.strip()]
    return _dataset(items, source, "lines", feature_dim)
