"""Error paths against happy paths: how long each decoder takes to reject a body that is bad only at its end,
against the time it takes to decode the same body made valid.

For every serving and training format a ~6 MB body (SageMaker's request limit) of ordinary rows is decoded
twice: as written (the anchor: the happy path), and with its last cell, pair, value or record made bad. Runs
are interleaved, after one untimed run of each (numba compiles or loads its cache then); medians and the
bad/good ratio are printed. The goal is a ratio of at most 2 everywhere.

    .venv/bin/python -m bench.bench_error_paths --megabytes 6 --repeat 5

Then the check every ``CSR`` makes for a column given twice in a row (``algorithm._csr_kernels.check_rows``)
against the decode of the same libsvm body: rows sorted (the common case), shuffled, and with repeats (then
summed as scipy's ``sum_duplicates`` does, against scipy's).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable

import numpy as np
import orjson
import scipy.sparse as sp

from algorithm._csr_kernels import check_rows, sum_duplicates
from container.errors import DataError
from container.formats.csv import decode_csv
from container.formats.json_requests import decode_json, decode_jsonlines
from container.formats.libsvm import decode_libsvm
from container.formats.recordio import decode_recordio, write_spmatrix_to_sparse_tensor
from container.formats.triplets import decode_triplets_csv
from container.formats.wals_queries import read_queries

FEATURE_DIM = 1000
DENSE_WIDTH = 64


def _rows(n_rows: int, nnz: int, seed: int) -> sp.csr_matrix:
    rng = np.random.default_rng(seed)
    columns = np.sort(rng.choice(FEATURE_DIM, size=(n_rows, nnz)), axis=1)
    values = np.round(rng.random((n_rows, nnz)), 3).astype(np.float32) + 0.5
    indptr = np.arange(n_rows + 1) * nnz
    matrix = sp.csr_matrix((values.ravel(), columns.ravel(), indptr), shape=(n_rows, FEATURE_DIM))
    matrix.sum_duplicates()
    return matrix


def _libsvm(matrix: sp.csr_matrix, labels: bool) -> bytes:
    lines = []
    for r in range(matrix.shape[0]):
        start, stop = matrix.indptr[r], matrix.indptr[r + 1]
        row = zip(matrix.indices[start:stop], matrix.data[start:stop], strict=True)
        pairs = " ".join(f"{c}:{v:.3f}" for c, v in row)
        lines.append(f"{r % 2} {pairs}" if labels else pairs)
    return ("\n".join(lines) + "\n").encode()


def _sparse_instance(matrix: sp.csr_matrix, r: int) -> dict:
    start, stop = matrix.indptr[r], matrix.indptr[r + 1]
    return {"data": {"features": {"keys": matrix.indices[start:stop].tolist(), "shape": [FEATURE_DIM],
                                  "values": [round(float(v), 3) for v in matrix.data[start:stop]]}}}


def _last_replaced(body: bytes, old: bytes, new: bytes) -> bytes:
    at = body.rindex(old)
    return body[:at] + new + body[at + len(old):]


def cases(megabytes: float, seed: int) -> dict[str, tuple[Callable[[bytes], object], bytes, bytes]]:
    """name -> (decode, good body, bad body)."""
    size = int(megabytes * 1024 * 1024)
    rng = np.random.default_rng(seed)
    out: dict[str, tuple[Callable[[bytes], object], bytes, bytes]] = {}

    dense = np.round(rng.random((size // (DENSE_WIDTH * 6), DENSE_WIDTH)), 3)
    csv_body = "\n".join(",".join(f"{v:g}" for v in row) for row in dense).encode() + b"\n"
    out["csv serving"] = (lambda b: decode_csv(b, source="bench", feature_dim=DENSE_WIDTH), csv_body,
                          csv_body[:-2] + b"x\n")
    out["csv training"] = (lambda b: decode_csv(b, source="bench", with_labels=True), csv_body,
                           csv_body[:-2] + b"x\n")

    slow = b"1.00000000000000000000001" + csv_body[csv_body.index(b","):]  # a first cell the scanner declines
    out["csv numpy path"] = (lambda b: decode_csv(b, source="bench", feature_dim=DENSE_WIDTH), slow,
                             slow[:-2] + b"x\n")

    matrix = _rows(size // 200, 20, seed)
    libsvm = _libsvm(matrix, labels=True)
    bad_libsvm = libsvm[:libsvm.rindex(b":") + 1] + b"x\n"
    out["libsvm serving"] = (lambda b: decode_libsvm(b, source="bench", feature_dim=FEATURE_DIM), libsvm,
                             bad_libsvm)
    out["libsvm training"] = (lambda b: decode_libsvm(b, source="bench", with_labels=True), libsvm, bad_libsvm)
    slow = b"1 qid:1" + libsvm[1:]  # a first line the scanner declines
    out["libsvm split path"] = (lambda b: decode_libsvm(b, source="bench", feature_dim=FEATURE_DIM), slow,
                                slow[:slow.rindex(b":") + 1] + b"x\n")
    high = libsvm[:libsvm.rindex(b" ") + 1] + b"%d:1\n" % FEATURE_DIM
    out["libsvm key >= dim"] = (lambda b: decode_libsvm(b, source="bench", feature_dim=FEATURE_DIM), libsvm, high)

    instances = [_sparse_instance(matrix, r) for r in range(size // 250)]
    last = instances[-1]["data"]["features"]
    bad_value = [*instances[:-1], {"data": {"features": {**last, "values": [*last["values"][:-1], "x"]}}}]
    bad_key = [*instances[:-1], {"data": {"features": {**last, "keys": [*last["keys"][:-1], FEATURE_DIM]}}}]
    json_sparse = lambda b: decode_json(b, source="bench", feature_dim=FEATURE_DIM)  # noqa: E731
    body = orjson.dumps({"instances": instances})
    out["json sparse"] = (json_sparse, body, orjson.dumps({"instances": bad_value}))
    out["json sparse key >= dim"] = (json_sparse, body, orjson.dumps({"instances": bad_key}))
    rows = [{"features": row.tolist()} for row in dense[: size // 500]]
    bad_row = [*rows[:-1], {"features": [*rows[-1]["features"][:-1], "x"]}]
    out["json dense"] = (lambda b: decode_json(b, source="bench", feature_dim=DENSE_WIDTH),
                         orjson.dumps({"instances": rows}), orjson.dumps({"instances": bad_row}))
    lines = b"\n".join(orjson.dumps(i) for i in instances) + b"\n"
    out["jsonlines sparse"] = (lambda b: decode_jsonlines(b, source="bench", feature_dim=FEATURE_DIM), lines,
                               b"\n".join(orjson.dumps(i) for i in bad_value) + b"\n")

    n = size // 200
    good, bad = io.BytesIO(), io.BytesIO()
    write_spmatrix_to_sparse_tensor(good, matrix[:n], np.ones(n, np.float32))
    wider = sp.csr_matrix((matrix.data, matrix.indices, matrix.indptr), shape=(matrix.shape[0], FEATURE_DIM + 1))
    wider = sp.vstack([wider[: n - 1], sp.csr_matrix(([1.0], ([0], [FEATURE_DIM])), shape=(1, FEATURE_DIM + 1))])
    write_spmatrix_to_sparse_tensor(bad, wider.tocsr().astype(np.float32), np.ones(n, np.float32))
    recordio = good.getvalue()
    out["recordio training"] = (lambda b: decode_recordio(b, source="bench", with_labels=True), recordio,
                                recordio[:-8])
    out["recordio serving"] = (lambda b: decode_recordio(b, source="bench", feature_dim=FEATURE_DIM), recordio,
                               bad.getvalue())

    n = size // 20
    triplets = "\n".join(f"u{r},i{c},{v}" for r, c, v in zip(
        rng.integers(0, 10**5, n), rng.integers(0, 10**4, n), rng.integers(1, 6, n), strict=True)).encode() + b"\n"
    out["triplets csv"] = (lambda b: decode_triplets_csv(b, source="bench"), triplets, triplets[:-2] + b"x\n")

    queries = [{"row": f"u{r}", "k": 10, "exclude": [f"i{c}" for c in range(5)]} for r in range(size // 80)]
    query_body = orjson.dumps({"instances": queries})
    bad_queries = _last_replaced(query_body, b'"k":10', b'"k":"10"')
    out["wals queries"] = (lambda b: read_queries(b, "application/json", False), query_body, bad_queries)
    return out


def csr_check(megabytes: float, repeat: int, seed: int) -> None:
    """The repeated-column check's share of a libsvm decode, and the summing against scipy's."""
    matrix = _rows(int(megabytes * 1024 * 1024) // 200, 20, seed)
    body = _libsvm(matrix, labels=True)
    decoded = decode_libsvm(body, source="bench", with_labels=True)
    rng = np.random.default_rng(seed)
    shuffled = np.concatenate([rng.permutation(decoded.indices[a:b]) for a, b in
                               zip(decoded.indptr[:-1], decoded.indptr[1:], strict=True)])
    repeated = decoded.indices.copy()
    repeated[1::20] = repeated[::20]  # the second column of each row repeats the first
    check_rows(decoded.indices, decoded.indptr)
    sum_duplicates(decoded.data, repeated, decoded.indptr)
    runs: dict[str, list[float]] = {"decode": [], "sorted": [], "shuffled": [], "repeated": [], "sum": [],
                                    "scipy sum": []}
    scipy_repeated = sp.csr_matrix((decoded.data, repeated, decoded.indptr), shape=(decoded.n_rows, FEATURE_DIM))
    for _ in range(repeat):
        for name, run in (("decode", lambda: decode_libsvm(body, source="bench", with_labels=True)),
                          ("sorted", lambda: check_rows(decoded.indices, decoded.indptr)),
                          ("shuffled", lambda: check_rows(shuffled, decoded.indptr)),
                          ("repeated", lambda: check_rows(repeated, decoded.indptr)),
                          ("sum", lambda: sum_duplicates(decoded.data, repeated, decoded.indptr)),
                          ("scipy sum", lambda: scipy_repeated.copy().sum_duplicates())):
            start = time.perf_counter()
            run()
            runs[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(times) for name, times in runs.items()}
    print(f"\nCSR repeated-column check, {decoded.nnz} values in {decoded.n_rows} rows "
          f"(libsvm decode {medians['decode']:.3f} s, check included)")
    for name in ("sorted", "shuffled", "repeated"):
        print(f"  check, rows {name:<9} {medians[name]:.4f} s  {medians[name] / medians['decode']:6.1%} of the decode")
    print(f"  sum_duplicates          {medians['sum']:.4f} s  scipy's (copy + sum_duplicates) "
          f"{medians['scipy sum']:.4f} s: {medians['scipy sum'] / medians['sum']:.2f}x")


def timed(decode: Callable[[bytes], object], body: bytes) -> tuple[float, str]:
    start = time.perf_counter()
    try:
        decode(body)
        outcome = "decoded"
    except DataError as err:
        outcome = str(err)
    return time.perf_counter() - start, outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=6.0)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="case names (substrings) to run")
    args = parser.parse_args()
    print(f"{'case':<24} {'MB':>5} {'good s':>8} {'bad s':>8} {'bad/good':>8}  error")
    for name, (decode, good, bad) in cases(args.megabytes, args.seed).items():
        if args.only and not any(part in name for part in args.only):
            continue
        _, ok = timed(decode, good)
        _, message = timed(decode, bad)
        if ok != "decoded" or message == "decoded":
            raise SystemExit(f"{name}: the good body gave {ok!r:.200}, the bad one {message!r:.200}")
        good_times, bad_times = [], []
        for _ in range(args.repeat):
            good_times.append(timed(decode, good)[0])
            bad_times.append(timed(decode, bad)[0])
        g, b = statistics.median(good_times), statistics.median(bad_times)
        print(f"{name:<24} {len(good) / 2**20:>5.1f} {g:>8.3f} {b:>8.3f} {b / g:>8.2f}  {message[:90]}", flush=True)
    if not args.only:
        csr_check(args.megabytes, args.repeat, args.seed)


if __name__ == "__main__":
    main()
