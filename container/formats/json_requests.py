"""JSON (``application/json``) and JSON Lines (``application/jsonlines``) request bodies.

An instance is dense ``{"features": [...]}`` or ``{"data": {"features": {"values": [...]}}}``, sparse
``{"data": {"features": {"keys": [...], "shape": [d], "values": [...]}}}`` (``shape`` may be left out when
feature_dim is known; ``shape`` alone is an all-zero row), or a bare list of numbers. Other members, such as
``configuration``, are ignored. A JSON body is ``{"instances": [...]}``, a bare list of rows ``[[...], ...]``
(what the SDK's JSONSerializer sends for a 2-D array) or one flat row ``[...]``. A JSON Lines body has one
instance (or bare row) per line. JSON booleans count as 0/1, as numpy reads them.

Tensor rules are those of RecordIO: sparse keys must be < the shape's product and < feature_dim (a key given
twice is one feature holding the sum, as ``CSR`` makes it); dense rows
must have feature_dim values (or, without it, all the same count); explicit zeros of dense rows are dropped.
Errors name the instance and field, e.g. ``instances[3].data.features.keys[2]=5000 >= feature_dim 2000``.

Three paths give the same rows: a numba scanner reads bodies of sparse instances straight from the bytes
(_text_kernels.scan_json); else orjson parses the body and ``fast_dataset`` converts the common shapes in
bulk; else ``_Rows`` checks every instance and names the first fault.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import accumulate, chain
from typing import Any

import numpy as np
import orjson

from algorithm.csr import CSR, concatenate
from container.errors import DataError
from container.formats._text import dense_dataset, to_float32
from container.formats._text_kernels import scan_json

_MAX_WIDTH = 1 << 62


def decode_json(
    body: bytes | memoryview, *, source: str, feature_dim: int | None = None, with_labels: bool = False
) -> CSR:
    """Decode a JSON request body to a CSR; see the module docstring."""
    _no_labels(source, with_labels)
    text = body if isinstance(body, bytes) else bytes(body)
    scanned = _Scanned(text, False, feature_dim, source)
    if scanned.complete:
        return scanned.dataset
    if scanned.rows and text.count(b'"instances"') == 1 and b"\\" not in text:
        return scanned.followed_by(_rest_of_instances(text, scanned, source, feature_dim), scanned.rows)
    doc = _load(text, source)
    path_of: Callable[[int], str]
    if isinstance(doc, dict):
        instances = doc.get("instances")
        if not isinstance(instances, list):
            raise DataError(f"{source}: a JSON object body needs an 'instances' list")
        items, path_of = instances, "instances[{}]".format
    elif isinstance(doc, list) and doc and not isinstance(doc[0], (list, dict)):
        items, path_of = [doc], lambda _: "row"
    elif isinstance(doc, list):
        items, path_of = doc, "rows[{}]".format
    else:
        raise DataError(f"{source}: the JSON body must be an object with 'instances' or a list of rows")
    return _decode_items(items, path_of, source, feature_dim)


_INSTANCES_OPEN = b'{"instances":['


def _rest_of_instances(text: bytes, scanned: _Scanned, source: str, feature_dim: int | None) -> CSR | None:
    """The instances after those the scanner read, parsed from where it stopped: the scanned part (checked
    JSON, ASCII, no escapes) replaced by an empty list's opening, so orjson parses only the rest. The body
    has one "instances" member (the caller checks), so the list is the document's. Syntax errors are
    reported at their place in the body."""
    done = scanned.rows
    try:
        items = orjson.loads(_INSTANCES_OPEN + text[scanned.stop:])["instances"]
    except orjson.JSONDecodeError as err:
        pos = err.pos - len(_INSTANCES_OPEN) + scanned.stop
        line = err.lineno + text.count(b"\n", 0, scanned.stop)
        column = err.colno if err.lineno > 1 else pos - text.rfind(b"\n", 0, scanned.stop)
        raise DataError(f"{source}: the body is not valid JSON: {err.msg}: line {line} column {column} "
                        f"(char {pos})") from None
    return _decode_items(items, lambda i: f"instances[{i + done}]", source, feature_dim) if items else None


def decode_jsonlines(
    body: bytes | memoryview, *, source: str, feature_dim: int | None = None, with_labels: bool = False
) -> CSR:
    """Decode a JSON Lines body (one instance or bare row per non-blank line) to a CSR."""
    _no_labels(source, with_labels)
    text = body if isinstance(body, bytes) else bytes(body)
    scanned = _Scanned(text, True, feature_dim, source)
    if scanned.complete:
        return scanned.dataset
    done = scanned.rows
    stop = scanned.stop if done else 0
    items, numbers = [], []
    for number, line in enumerate(text[stop:].split(b"\n"), text.count(b"\n", 0, stop) + 1):
        if line.strip():
            try:
                items.append(orjson.loads(line))
            except orjson.JSONDecodeError as err:
                raise DataError(f"{source}: line {number} is not valid JSON: {err}") from None
            numbers.append(number)
    rest = _decode_items(items, lambda i: f"line {numbers[i]}", source, feature_dim) if items else None
    return scanned.followed_by(rest, done)


def _decode_items(items: list[Any], path_of: Callable[[int], str], source: str, feature_dim: int | None) -> CSR:
    """The rows of parsed instances: the fast path for the common shapes, else the checking path, which
    decodes every other shape and names the first fault."""
    fast = fast_dataset(items, feature_dim)
    if fast is not None:
        return fast
    rows = _Rows(source)
    for i, item in enumerate(items):
        rows.add(item, path_of(i))
    return rows.dataset(feature_dim)


class _Scanned:
    """What the numba scanner reads of a body of sparse instances (``_text_kernels.scan_json``): all of it
    (``complete``), or, when feature_dim is known, the ``rows`` instances before the first one it declines,
    which the parsed rest then follows. A key out of range among them is named here. Whenever it gives rows,
    they are the ones parsing and ``fast_dataset`` give (tests/unit/test_json_fast_path.py)."""

    def __init__(self, text: bytes, lines: bool, feature_dim: int | None, source: str) -> None:
        bound = text.count(b",") + text.count(b"[")  # numbers in the lists
        keys, values = np.empty(bound), np.empty(bound)
        counts = np.empty(text.count(b"{") + 1, np.int64)
        buf = np.frombuffer(text, np.uint8)
        ok, rows, pairs, shape, self.stop = scan_json(buf, lines, keys, values, counts)
        self.complete = bool(ok) and (shape >= 0 or feature_dim is not None)
        self.rows = rows if self.complete or (feature_dim is not None and self.stop >= 0) else 0
        self.dataset = CSR(np.empty(0, np.float32), np.empty(0, np.int64), np.zeros(1, np.int64), feature_dim or 0)
        if not self.rows:
            return
        n_cols = feature_dim if feature_dim is not None else int(shape)
        declared = int(shape) if shape >= 0 else _MAX_WIDTH
        indices = keys[:pairs].astype(np.int64)
        indptr = np.zeros(self.rows + 1, np.int64)
        np.cumsum(counts[:self.rows], out=indptr[1:])
        outside = indices.view(np.uint64) >= min(n_cols, declared)  # as unsigned, a negative key is outside too
        if outside.any():
            position = int(np.flatnonzero(outside)[0])
            row = int(np.searchsorted(indptr, position, "right")) - 1
            key = int(indices[position])
            why = ("is negative" if key < 0 else f">= shape {declared}" if key >= declared
                   else f">= feature_dim {feature_dim}")
            where = f"line {_line_of_row(buf, row)}: data.features" if lines else f"instances[{row}].data.features"
            raise DataError(f"{source}: {where}.keys[{position - indptr[row]}]={key} {why}")
        self.dataset = CSR(data=to_float32(values[:pairs]), indices=indices, indptr=indptr, n_cols=n_cols)

    def followed_by(self, rest: CSR | None, done: int) -> CSR:
        """The first ``done`` rows read followed by ``rest`` (the parsed instances after them)."""
        if not done:
            return rest if rest is not None else self.dataset
        head = self.dataset.head(done)
        return head if rest is None else concatenate([head, rest], head.n_cols)


def _line_of_row(buf: np.ndarray, row: int) -> int:
    """The 1-based line number of the ``row``-th non-blank line of a JSON Lines body."""
    newline = buf == ord("\n")
    line_of_byte = np.cumsum(newline) - newline
    content = ~np.isin(buf, np.frombuffer(b" \t\r\n", np.uint8))
    return int(np.unique(line_of_byte[content])[row]) + 1


def _no_labels(source: str, with_labels: bool) -> None:
    if with_labels:
        raise DataError(f"{source}: JSON and JSON Lines bodies carry no labels, so they cannot train: training "
                        "channels take application/x-recordio-protobuf (label['values']), text/csv or text/libsvm "
                        "(the label first on each line); set the channel's ContentType to the one the data is in")


def _load(text: bytes | memoryview, source: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as err:
        raise DataError(f"{source}: the body is not valid JSON: {err}") from None


def _at(base: str, member: str) -> str:
    """The path of ``member`` inside the instance at ``base`` (``instances[3]`` or ``line 4``)."""
    return f"{base}: {member}" if base.startswith("line ") else f"{base}.{member}"


@dataclass
class _Rows:
    """Instances as raw lists, converted to arrays in bulk by ``dataset``."""

    source: str
    values: list[list[Any]] = field(default_factory=list)
    keys: list[list[Any]] = field(default_factory=list)  # [] for rows without keys
    widths: list[int] = field(default_factory=list)  # the shape's product, -1 without a shape
    values_paths: list[str] = field(default_factory=list)
    tensor_paths: list[str] = field(default_factory=list)

    def add(self, item: Any, path: str) -> None:
        """Record one instance (a row list or an instance object)."""
        keys: Any = []
        shape: Any = None
        tensor_path = path
        if isinstance(item, list):
            values, values_path = item, path
        elif isinstance(item, dict) and "features" in item:
            values, values_path = item["features"], _at(path, "features")
        elif isinstance(item, dict) and isinstance(item.get("data"), dict) and "features" in item["data"]:
            tensor, tensor_path = item["data"]["features"], _at(path, "data.features")
            if not isinstance(tensor, dict):
                raise self.error(f"{tensor_path} must be an object with values (and keys, shape)")
            values, values_path = tensor.get("values", []), f"{tensor_path}.values"
            keys, shape = tensor.get("keys", []), tensor.get("shape")
        elif isinstance(item, dict):
            raise self.error(f"{path} needs 'features' or 'data.features'")
        else:
            raise self.error(f"{path} must be an object or a list of numbers")
        for name, member in (("values", values), ("keys", keys)):
            if not isinstance(member, list):
                shown = values_path if name == "values" else f"{tensor_path}.keys"
                raise self.error(f"{shown} must be a list of numbers, got {type(member).__name__}")
        self.values.append(values)
        self.keys.append(keys)
        self.widths.append(-1 if shape is None else self._width(shape, f"{tensor_path}.shape"))
        self.values_paths.append(values_path)
        self.tensor_paths.append(tensor_path)

    def _width(self, shape: Any, path: str) -> int:
        if not (isinstance(shape, list) and shape and all(type(d) is int and d >= 0 for d in shape)):
            raise self.error(f"{path} must be a list of non-negative whole numbers, e.g. [feature_dim]")
        width = math.prod(shape)
        if width > _MAX_WIDTH:
            raise self.error(f"{path} holds more than 2**62 elements")
        return width

    def error(self, message: str) -> DataError:
        return DataError(f"{self.source}: {message}")

    def dataset(self, feature_dim: int | None) -> CSR:
        """Check every row against the tensor rules and build the CSR arrays."""
        n_values = np.array([len(v) for v in self.values], np.int64)
        n_keys = np.array([len(k) for k in self.keys], np.int64)
        widths = np.array(self.widths, np.int64)
        sparse = n_keys > 0
        if (bad := np.flatnonzero(sparse & (n_keys != n_values))).size:
            i = bad[0]
            raise self.error(f"{self.tensor_paths[i]} has {n_keys[i]} keys but {n_values[i]} values")
        if feature_dim is None and (bad := np.flatnonzero(sparse & (widths < 0))).size:
            raise self.error(f"{self.tensor_paths[bad[0]]} has keys but no shape (and feature_dim is unknown)")
        all_zero = ~sparse & (n_values == 0) & (widths >= 0)
        dense = ~sparse & ~all_zero
        if (bad := np.flatnonzero(dense & (widths >= 0) & (widths != n_values))).size:
            i = bad[0]
            raise self.error(f"{self.tensor_paths[i]} has {n_values[i]} values but its shape holds {widths[i]}")
        self._check_dense_widths(n_values, dense, feature_dim)
        values = self._numbers(self.values, "values")
        if (bad := np.flatnonzero(~np.isfinite(values))).size:
            row, j = self._locate(n_values, int(bad[0]))
            raise self.error(f"{self.values_paths[row]}[{j}] is NaN or infinity as float32")
        keys = self._keys(n_keys, widths, feature_dim)
        value_is_sparse = np.repeat(sparse, n_values)
        starts = np.concatenate([[0], np.cumsum(n_values)])
        columns = np.arange(len(values), dtype=np.int64) - np.repeat(starts[:-1], n_values)
        columns[value_is_sparse] = keys
        keep = value_is_sparse | (values != 0)
        kept = np.concatenate([[0], np.cumsum(keep)])
        row_widths = np.where(dense, n_values, widths)
        n_cols = feature_dim if feature_dim is not None else int(row_widths.max(initial=0))
        return CSR(data=values[keep], indices=columns[keep], indptr=kept[starts], n_cols=n_cols)

    def _check_dense_widths(self, n_values: np.ndarray, dense: np.ndarray, feature_dim: int | None) -> None:
        rows = np.flatnonzero(dense)
        if not rows.size:
            return
        expected = n_values[rows[0]] if feature_dim is None else feature_dim
        wrong = rows[n_values[rows] != expected]
        if wrong.size:
            i = wrong[0]
            if feature_dim is not None:
                raise self.error(
                    f"{self.values_paths[i]} has {n_values[i]} feature values, expected feature_dim={feature_dim}"
                )
            raise self.error(
                f"{self.values_paths[i]} has {n_values[i]} values but {self.values_paths[rows[0]]} has {expected}"
            )

    def _keys(self, n_keys: np.ndarray, widths: np.ndarray, feature_dim: int | None) -> np.ndarray:
        keys = self._numbers(self.keys, "keys")
        if keys.size and keys.dtype.kind not in "iu":
            row = next(i for i, k in enumerate(self.keys) if not all(type(v) is int and abs(v) < 2**63 for v in k))
            raise self.error(f"{self.tensor_paths[row]}.keys must hold whole numbers below 2**63")
        declared = np.repeat(np.where(widths >= 0, widths, _MAX_WIDTH), n_keys)
        limit = np.minimum(declared, _MAX_WIDTH if feature_dim is None else feature_dim)
        if (bad := np.flatnonzero((keys < 0) | (keys >= limit))).size:
            row, j = self._locate(n_keys, int(bad[0]))
            key = int(keys[bad[0]])
            why = (
                "is negative"
                if key < 0
                else (f">= shape {declared[bad[0]]}" if key >= declared[bad[0]] else f">= feature_dim {feature_dim}")
            )
            raise self.error(f"{self.tensor_paths[row]}.keys[{j}]={key} {why}")
        return keys.astype(np.int64)

    def _numbers(self, lists: list[list[Any]], name: str) -> np.ndarray:
        """All the lists' numbers in one array (float32 values, keys as numpy reads them); names the first
        item that is not a number."""
        flat = list(chain.from_iterable(lists))
        array = _bulk_numbers(lists, len(flat)) if flat else np.empty(0, np.int64)
        if array is None:
            row, j = self._locate(np.fromiter(map(len, lists), np.int64, len(lists)), _first_non_number(flat))
            path = self.values_paths[row] if name == "values" else f"{self.tensor_paths[row]}.keys"
            raise self.error(f"{path} must be a list of numbers; {path}[{j}] is {lists[row][j]!r:.40}")
        return to_float32(array.astype(np.float64)) if name == "values" else array

    @staticmethod
    def _locate(counts: np.ndarray, position: int) -> tuple[int, int]:
        """(row, index in row) of a position in the concatenated lists."""
        ends = np.cumsum(counts)
        row = int(np.searchsorted(ends, position, "right"))
        return row, position - int(ends[row] - counts[row])


def fast_dataset(items: list[Any], feature_dim: int | None) -> CSR | None:
    """The rows of the common request shapes, built with a few bulk conversions and no per-row paths: sparse
    instances whose keys and values are non-empty lists and whose shapes are all ``[d]`` (or all absent, with
    feature_dim known), or dense rows (bare lists or ``{"features": [...]}``) of one length. None for any
    other shape or any fault; ``_Rows`` then decodes the body or names the fault. Whenever it returns a
    CSR, it is the one ``_Rows`` builds: the same conversions (``np.array`` of the numbers, float64 then
    float32) under the same rules (tests/unit/test_json_fast_path.py)."""
    if not items:
        return None
    if type(items[0]) is dict and "features" not in items[0]:
        return _fast_sparse(items, feature_dim)
    return _fast_dense(items, feature_dim)


def _fast_sparse(items: list[Any], feature_dim: int | None) -> CSR | None:
    try:
        tensors = [item["data"]["features"] for item in items]
        keys = [tensor["keys"] for tensor in tensors]
        values = [tensor["values"] for tensor in tensors]
        shapes = [tensor.get("shape") for tensor in tensors]
    except (KeyError, TypeError, AttributeError):
        return None
    if any("features" in item for item in items):  # the dense form wins when an instance has both
        return None
    if not all(type(k) is list for k in keys) or not all(type(v) is list for v in values):
        return None
    counts = [len(k) for k in keys]
    if counts != [len(v) for v in values] or 0 in counts:
        return None
    shape = shapes[0]
    if shape is None:
        if feature_dim is None or any(s is not None for s in shapes):
            return None
        n_cols = limit = feature_dim
    else:
        if not (type(shape) is list and len(shape) == 1 and type(shape[0]) is int and 0 <= shape[0] <= _MAX_WIDTH):
            return None
        if not all(s == shape and type(s[0]) is int for s in shapes):
            return None
        n_cols = limit = shape[0] if feature_dim is None else feature_dim
        limit = min(limit, shape[0])
    total = sum(counts)
    indices = _bulk_numbers(keys, total)
    numbers = _bulk_numbers(values, total)
    # as unsigned, a negative key is above any limit: one reduction checks both ends
    if indices is None or numbers is None or indices.dtype != np.int64 or indices.view(np.uint64).max() >= limit:
        return None
    data = to_float32(numbers.astype(np.float64, copy=False))
    if not np.isfinite(data).all():
        return None
    indptr = np.fromiter(accumulate(counts, initial=0), np.int64, len(counts) + 1)
    return CSR(data=data, indices=indices, indptr=indptr, n_cols=n_cols)


def _fast_dense(items: list[Any], feature_dim: int | None) -> CSR | None:
    try:
        rows = items if all(type(item) is list for item in items) else [item["features"] for item in items]
        if not all(type(row) is list for row in rows) or not set(map(type, chain.from_iterable(rows))) <= _NUMBER_TYPES:
            return None
        matrix = np.array(rows)
    except (KeyError, TypeError, ValueError, OverflowError):
        return None
    if matrix.ndim != 2 or matrix.dtype.kind not in "biuf" or not matrix.shape[1]:
        return None
    if feature_dim is not None and matrix.shape[1] != feature_dim:
        return None
    features = to_float32(matrix.astype(np.float64, copy=False))
    if not np.isfinite(features).all():
        return None
    return dense_dataset(features, None)


_NUMBER_TYPES = frozenset({int, float, bool})


def _bulk_numbers(lists: list[list[Any]], total: int) -> np.ndarray | None:
    """``np.array`` of the lists' items, as ``_Rows._numbers`` makes it; None unless a 1-D array of numbers.
    The item types are checked first, in C (``np.array`` of a list holding a string would format every
    number as a string first)."""
    flat = list(chain.from_iterable(lists))
    if not set(map(type, flat)) <= _NUMBER_TYPES:
        return None
    try:
        array = np.array(flat)
    except (ValueError, TypeError, OverflowError):
        return None
    return array if array.dtype.kind in "biuf" and array.shape == (total,) else None


def _first_non_number(flat: list[Any]) -> int:
    """The position of the first item that is not a number (a JSON number, or an integer numpy holds)."""
    kinds = list(map(type, flat))
    others = set(kinds) - _NUMBER_TYPES
    if others:
        return min(kinds.index(kind) for kind in others)
    return next(i for i, item in enumerate(flat) if type(item) is int and not -(2**63) <= item < 2**64)
