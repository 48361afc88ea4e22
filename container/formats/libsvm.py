"""libsvm / svmlight (``text/libsvm``): ``[label] index:value ...`` per line, sparse.

Indices are taken as written: 0-based, as scikit-learn's ``dump_svmlight_file`` writes by default. With
``with_labels`` (training) the first token of every line is the label. Without it (serving) a first token
that has no ``:`` is a label and is ignored, so the training file itself can be sent for prediction.
``# comments`` are stripped and ``qid:`` tokens are ignored.
"""

from __future__ import annotations

import numpy as np

from container.errors import DataError
from container.formats._rows import check_finite, check_keys, sparse_rows
from container.formats.csv import _text
from container.formats.dataset import Dataset


def _parse_line(tokens: list[str], source: str, number: int) -> tuple[np.ndarray, np.ndarray]:
    pairs = [t.split(":", 1) for t in tokens if not t.startswith("qid:")]
    try:
        keys = np.array([p[0] for p in pairs], dtype=np.int64)
        values = np.array([p[1] for p in pairs], dtype=np.float32)
    except (ValueError, IndexError):
        for token in tokens:
            index, _, value = token.partition(":")
            try:
                int(index), float(value)
            except ValueError:
                raise DataError(f"{source}: line {number}: {token[:40]!r} is not index:value") from None
        raise DataError(f"{source}: line {number}: malformed index:value pairs") from None
    return keys, values


def decode_libsvm(
    body: bytes | memoryview, *, source: str, feature_dim: int | None = None, with_labels: bool = False
) -> Dataset:
    """Sparse libsvm rows to a Dataset; errors name the line."""
    keys, values, labels = [], [], []
    for number, line in enumerate(_text(body, source).splitlines(), start=1):
        tokens = line.split("#", 1)[0].split()
        if not tokens:
            continue
        if with_labels or ":" not in tokens[0]:
            label = tokens.pop(0)
            if with_labels:
                try:
                    labels.append(float(label))
                except ValueError:
                    raise DataError(f"{source}: line {number}: label {label[:40]!r} is not a number") from None
        elif with_labels:
            raise DataError(f"{source}: line {number} has no label before its index:value pairs")
        row_keys, row_values = _parse_line(tokens, source, number)
        check_finite(row_values, source, f"line {number}")
        if feature_dim is not None:
            check_keys(row_keys, feature_dim, source, f"line {number}")
        elif row_keys.size and row_keys.min() < 0:
            raise DataError(f"{source}: line {number}: negative index {int(row_keys.min())}")
        keys.append(row_keys)
        values.append(row_values)
    label_array = np.array(labels, np.float32) if with_labels else None
    if label_array is not None:
        check_finite(label_array, source, "a label")
    n_cols = feature_dim if feature_dim is not None else max((int(k.max()) + 1 for k in keys if k.size),
                                                                default=0)
    return sparse_rows(keys, values, n_cols, label_array)
