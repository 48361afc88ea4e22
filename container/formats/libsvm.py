"""libsvm / svmlight (``text/libsvm``): ``[label] index:value index:value ...`` per line, sparse.

Indices are taken as written, 0-based, as scikit-learn's ``dump_svmlight_file`` writes by default (pairs are
kept in their order; an index given twice in a line is one feature holding the sum, as ``CSR`` makes it). With
``with_labels`` (training) the first token of every line is the label. Without it (serving) a first token with
no ``:`` is a label and is ignored, so a training file can be sent for prediction as it is. ``# comments`` are
stripped, ``qid:`` tokens ignored and blank lines skipped. A numba scanner reads the common lines (plain
digits and decimals); from the first line it declines, the rest of the body is split in Python and its numbers
parsed in one numpy call. Errors name the 1-based line; finding a bad pair costs about one more parse
(halving, ``_text.first_failing``).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

import numpy as np

from algorithm.csr import CSR
from container.errors import DataError
from container.formats._text import first_failing, parse_floats, to_float32
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
    part, stop = _scanned(text, with_labels)
    part.lines[:] += first_line - 1
    if stop < len(text):
        rest = _split(text[stop:], source, with_labels, first_line=first_line + text.count(b"\n", 0, stop))
        part = part.joined(rest) if part.lines.size else rest
    return part.dataset(source, feature_dim)


@dataclass(frozen=True)
class _Part:
    """Rows read from (part of) a body, before the feature_dim check: values, columns, pairs per row, labels
    (or None) and the 1-based line number of each row."""

    values: np.ndarray
    columns: np.ndarray
    counts: np.ndarray
    labels: np.ndarray | None
    lines: np.ndarray

    def joined(self, rest: _Part) -> _Part:
        """These rows followed by ``rest``'s."""
        return _Part(np.concatenate([self.values, rest.values]), np.concatenate([self.columns, rest.columns]),
                     np.concatenate([self.counts, rest.counts]),
                     None if self.labels is None or rest.labels is None else np.concatenate([self.labels, rest.labels]),
                     np.concatenate([self.lines, rest.lines]))

    def dataset(self, source: str, feature_dim: int | None) -> CSR:
        """The CSR, indices checked against ``feature_dim`` (the first one outside named with its line)."""
        indptr = np.zeros(self.counts.size + 1, np.int64)
        np.cumsum(self.counts, out=indptr[1:])
        columns = self.columns
        if feature_dim is not None and (bad := np.flatnonzero(columns >= feature_dim)).size:
            row = int(np.searchsorted(indptr, bad[0], "right")) - 1
            raise DataError(
                f"{source}: line {self.lines[row]} key[{bad[0] - indptr[row]}]={int(columns[bad[0]])} is outside "
                f"[0, {feature_dim}) (feature_dim {feature_dim}): {_index_advice(columns, feature_dim)}"
            )
        return CSR(
            data=self.values,
            indices=columns,
            indptr=indptr,
            n_cols=feature_dim if feature_dim is not None else int(columns.max(initial=-1)) + 1,
            labels=self.labels,
        )


def _scanned(text: bytes, with_labels: bool) -> tuple[_Part, int]:
    """The rows the numba scanner reads (plain digits and decimals, the common case) and the byte offset of the
    line where it stopped: ``len(text)`` when it read the whole body, else the start of the first line it
    declined, which the splitter then reads (or names the fault of)."""
    max_rows = text.count(b"\n") + 1
    indices, values = np.empty(text.count(b":"), np.int64), np.empty(text.count(b":"), np.float64)
    labels, counts = np.empty(max_rows if with_labels else 0, np.float64), np.empty(max_rows, np.int64)
    lines = np.empty(max_rows, np.int64)
    ok, rows, pairs, stop = scan_libsvm(np.frombuffer(text, np.uint8), with_labels, indices, values, labels,
                                        counts, lines)
    part = _Part(values=to_float32(values[:pairs]), columns=indices[:pairs], counts=counts[:rows],
                 labels=to_float32(labels[:rows]) if with_labels else None, lines=lines[:rows])
    return part, len(text) if ok else int(stop)


def _split(text: bytes, source: str, with_labels: bool, first_line: int = 1) -> _Part:
    """The checking path: the body (whose first line is ``first_line``) split in Python, all numbers parsed
    in one numpy call, the first fault named."""
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
    parsed = _pairs(pairs, 0, len(pairs))
    if parsed is None:
        raise _first_bad_pair(source, pairs, indptr, numbers)
    columns, values = parsed[0::2], to_float32(parsed[1::2])

    def line_of(position: int) -> int:
        return numbers[int(np.searchsorted(indptr, position, "right")) - 1]

    bad = np.flatnonzero((columns < 0) | (columns >= _MAX_INDEX) | (columns != np.floor(columns)))
    if bad.size:
        raise DataError(f"{source}: line {line_of(bad[0])}: {_shown(pairs[bad[0]])} is not index:value")
    if (bad := np.flatnonzero(~np.isfinite(values))).size:
        raise DataError(f"{source}: line {line_of(bad[0])} holds NaN or infinity")
    return _Part(values=values, columns=columns.astype(np.int64), counts=np.diff(indptr),
                 labels=_labels(source, labels, numbers) if with_labels else None,
                 lines=np.array(numbers, np.int64))


def _pairs(pairs: list[bytes], lo: int, hi: int) -> np.ndarray | None:
    """The index and value of each of ``pairs[lo:hi]`` (interleaved, float64), or None unless every one is
    ``number:number``."""
    joined = b" ".join(pairs[lo:hi])
    n = hi - lo
    if joined.translate(None, _NOT_SEPARATORS) != b": " * (n - 1) + b":" * bool(n):
        return None
    return parse_floats(joined.replace(b":", b" "), 2 * n, " ")


def _index_advice(columns: np.ndarray, feature_dim: int) -> str:
    """What to do about indices >= feature_dim: a 1-based file (no index 0, largest index feature_dim) is
    named as such, with how to shift it."""
    if int(columns.min()) >= 1 and int(columns.max()) == feature_dim:
        return ("indices are 0-based, and this file has no index 0 and reaches feature_dim, so it looks 1-based "
                "(as libFM and xLearn write): subtract 1 from every index, e.g. with scikit-learn "
                "X, y = load_svmlight_file(path, zero_based=False); dump_svmlight_file(X, y, new_path)")
    return (f"indices are 0-based, so feature_dim must be at least the largest index + 1 "
            f"({int(columns.max()) + 1})")


def _labels(source: str, tokens: list[bytes], numbers: list[int]) -> np.ndarray:
    parsed = parse_floats(b" ".join(tokens), len(tokens), " ")
    if parsed is None:
        row = first_failing(len(tokens), lambda lo, hi: parse_floats(b" ".join(tokens[lo:hi]), hi - lo, " ")
                            is not None)
        raise DataError(f"{source}: line {numbers[row]}: label {_shown(tokens[row])} is not a number")
    labels = to_float32(parsed)
    if (bad := np.flatnonzero(~np.isfinite(labels))).size:
        raise DataError(f"{source}: line {numbers[bad[0]]} holds NaN or infinity in the label")
    return labels


def _first_bad_pair(source: str, pairs: list[bytes], indptr: np.ndarray, numbers: list[int]) -> DataError:
    """The error for the first token that is not ``index:value`` (found by halving: about one parse of the
    pairs in all)."""
    position = first_failing(len(pairs), lambda lo, hi: _pairs(pairs, lo, hi) is not None)
    row = int(np.searchsorted(indptr, position, "right")) - 1
    return DataError(f"{source}: line {numbers[row]}: {_shown(pairs[position])} is not index:value")


def _shown(token: bytes) -> str:
    return repr(token[:40].decode("utf-8", "replace"))
