"""libsvm / svmlight (``text/libsvm``): ``[label] index:value index:value ...`` per line, sparse.

Indices are taken as written, 0-based, as scikit-learn's ``dump_svmlight_file`` writes by default (pairs are
kept in their order, duplicates included). With ``with_labels`` (training) the first token of every line
is the label. Without it (serving) a first token with no ``:`` is a label and is ignored, so a training
file can be sent for prediction as it is. ``# comments`` are stripped, ``qid:`` tokens ignored and blank
lines skipped. A numba scanner reads the common bodies (plain digits and decimals); any other body is
split in Python and its numbers parsed in one numpy call, and errors name the 1-based line.
"""

from __future__ import annotations

import codecs

import numpy as np

from algorithm.csr import CSR
from container.errors import DataError
from container.formats._text import is_number, parse_floats, to_float32
from container.formats._text_kernels import scan_libsvm

_NOT_SEPARATORS = bytes(b for b in range(256) if b not in b": ")
_MAX_INDEX = 2**53  # float64 holds every integer below this exactly


def decode_libsvm(
    body: bytes | memoryview,
    *,
    source: str,
    feature_dim: int | None = None,
    with_labels: bool = False,
    first_line: int = 1,
) -> CSR:
    """Decode libsvm rows to a CSR; see the module docstring. A body that is a piece of a longer stream numbers
    its lines in errors from ``first_line``."""
    text = bytes(body).removeprefix(codecs.BOM_UTF8)
    scanned = _scanned(text, feature_dim, with_labels)
    return scanned if scanned is not None else _split(text, source, feature_dim, with_labels, first_line)


def _split(text: bytes, source: str, feature_dim: int | None, with_labels: bool, first_line: int = 1) -> CSR:
    """The checking path: the body split in Python, all numbers parsed in one numpy call, errors named."""
    has_comments = b"#" in text
    labels: list[bytes] = []
    pairs: list[bytes] = []
    counts: list[int] = []
    numbers: list[int] = []
    for number, line in enumerate(text.split(b"\n"), first_line):
        tokens = (line.split(b"#", 1)[0] if has_comments else line).split()
        if not tokens:
            continue
        if with_labels:
            labels.append(tokens.pop(0))
        elif b":" not in tokens[0]:
            tokens.pop(0)
        if b"qid:" in line:
            tokens = [t for t in tokens if not t.startswith(b"qid:")]
        pairs += tokens
        counts.append(len(tokens))
        numbers.append(number)
    indptr = np.zeros(len(counts) + 1, np.int64)
    np.cumsum(counts, out=indptr[1:])
    joined = b" ".join(pairs)
    parsed = None
    if joined.translate(None, _NOT_SEPARATORS) == b": " * (len(pairs) - 1) + b":" * bool(pairs):
        parsed = parse_floats(joined.replace(b":", b" "), 2 * len(pairs), " ")
    if parsed is None:
        raise _first_bad_pair(source, pairs, indptr, numbers)
    columns, values = parsed[0::2], to_float32(parsed[1::2])

    def line_of(position: int) -> int:
        return numbers[int(np.searchsorted(indptr, position, "right")) - 1]

    bad = np.flatnonzero((columns < 0) | (columns >= _MAX_INDEX) | (columns != np.floor(columns)))
    if bad.size:
        raise DataError(f"{source}: line {line_of(bad[0])}: {_shown(pairs[bad[0]])} is not index:value")
    if feature_dim is not None and (bad := np.flatnonzero(columns >= feature_dim)).size:
        row = int(np.searchsorted(indptr, bad[0], "right")) - 1
        raise DataError(
            f"{source}: line {numbers[row]} key[{bad[0] - indptr[row]}]={int(columns[bad[0]])} is outside "
            f"[0, {feature_dim}) (feature_dim {feature_dim}): {_index_advice(columns, feature_dim)}"
        )
    if (bad := np.flatnonzero(~np.isfinite(values))).size:
        raise DataError(f"{source}: line {line_of(bad[0])} holds NaN or infinity")
    n_cols = feature_dim if feature_dim is not None else int(columns.max(initial=-1)) + 1
    return CSR(
        data=values,
        indices=columns.astype(np.int64),
        indptr=indptr,
        n_cols=n_cols,
        labels=_labels(source, labels, numbers) if with_labels else None,
    )


def _index_advice(columns: np.ndarray, feature_dim: int) -> str:
    """What to do about indices >= feature_dim: a 1-based file (no index 0, largest index feature_dim) is
    named as such, with how to shift it."""
    if int(columns.min()) >= 1 and int(columns.max()) == feature_dim:
        return ("indices are 0-based, and this file has no index 0 and reaches feature_dim, so it looks 1-based "
                "(as libFM and xLearn write): subtract 1 from every index, e.g. with scikit-learn "
                "X, y = load_svmlight_file(path, zero_based=False); dump_svmlight_file(X, y, new_path)")
    return (f"indices are 0-based, so feature_dim must be at least the largest index + 1 "
            f"({int(columns.max()) + 1})")


def _scanned(text: bytes, feature_dim: int | None, with_labels: bool) -> CSR | None:
    """The CSR from the numba scanner (plain digits and decimals, the common case), or None when it
    declines the body or an index is out of range: the checking path then decodes it or names the fault."""
    max_rows = text.count(b"\n") + 1
    indices, values = np.empty(text.count(b":"), np.int64), np.empty(text.count(b":"), np.float64)
    labels, counts = np.empty(max_rows if with_labels else 0, np.float64), np.empty(max_rows, np.int64)
    ok, rows, pairs = scan_libsvm(np.frombuffer(text, np.uint8), with_labels, indices, values, labels, counts)
    if not ok:
        return None
    indices = indices[:pairs]
    high = int(indices.max(initial=-1))
    if feature_dim is not None and high >= feature_dim:
        return None
    indptr = np.zeros(rows + 1, np.int64)
    np.cumsum(counts[:rows], out=indptr[1:])
    return CSR(
        data=to_float32(values[:pairs]),
        indices=indices,
        indptr=indptr,
        n_cols=feature_dim if feature_dim is not None else high + 1,
        labels=to_float32(labels[:rows]) if with_labels else None,
    )


def _labels(source: str, tokens: list[bytes], numbers: list[int]) -> np.ndarray:
    parsed = parse_floats(b" ".join(tokens), len(tokens), " ")
    if parsed is None:
        row = next(i for i, token in enumerate(tokens) if not is_number(token))
        raise DataError(f"{source}: line {numbers[row]}: label {_shown(tokens[row])} is not a number")
    labels = to_float32(parsed)
    if (bad := np.flatnonzero(~np.isfinite(labels))).size:
        raise DataError(f"{source}: line {numbers[bad[0]]} holds NaN or infinity in the label")
    return labels


def _first_bad_pair(source: str, pairs: list[bytes], indptr: np.ndarray, numbers: list[int]) -> DataError:
    """The error for the first token that is not ``index:value``."""
    for position, token in enumerate(pairs):
        index, colon, value = token.partition(b":")
        if not (colon and is_number(index) and is_number(value)):
            row = int(np.searchsorted(indptr, position, "right")) - 1
            return DataError(f"{source}: line {numbers[row]}: {_shown(token)} is not index:value")
    return DataError(f"{source}: cannot parse the index:value pairs")


def _shown(token: bytes) -> str:
    return repr(token[:40].decode("utf-8", "replace"))
