"""RecordIO-protobuf training decode: our numba wire-format scanner vs protobuf-per-record + numpy copies.

The anchor is what a reader written with the protobuf library does: frame the bytes, ``ParseFromString``
each Record, copy its values/keys/label into numpy and concatenate. Both produce the same CSR arrays from
the same file (sparse float32 rows with labels, written by our SDK-identical writer); runs are interleaved
and medians reported.

    .venv/bin/python -m bench.bench_recordio_decode --rows 1000000 --nnz 40 --repeat 3
"""

from __future__ import annotations

import argparse
import io
import statistics
import struct
import time

import numpy as np
import scipy.sparse as sp

from algorithm.csr import CSR
from container.formats.record_pb2 import Record
from container.formats.recordio import decode_recordio, warm_up, write_spmatrix_to_sparse_tensor


def make_body(rows: int, nnz: int, n_cols: int, seed: int) -> bytes:
    """Framed sparse float32 Records with ~nnz sorted random columns per row and 0/1 labels."""
    rng = np.random.default_rng(seed)
    per_row = rng.integers(nnz // 2, nnz + nnz // 2 + 1, size=rows)
    indptr = np.concatenate([[0], np.cumsum(per_row)])
    columns = rng.integers(0, n_cols, size=int(indptr[-1]))
    row_of = np.repeat(np.arange(rows), per_row)
    columns = columns[np.lexsort((columns, row_of))]
    values = rng.standard_normal(len(columns)).astype(np.float32)
    matrix = sp.csr_matrix((values, columns, indptr), shape=(rows, n_cols))
    labels = rng.integers(0, 2, size=rows).astype(np.float32)
    out = io.BytesIO()
    write_spmatrix_to_sparse_tensor(out, matrix, labels)
    return out.getvalue()


def decode_with_protobuf(body: bytes) -> CSR:
    """The anchor: protobuf library per record, numpy copies, one concatenate."""
    data, indices, labels = [], [], []
    record = Record()
    view = memoryview(body)
    p = 0
    while p < len(body):
        _, length = struct.unpack_from("<II", body, p)
        record.ParseFromString(view[p + 8 : p + 8 + length])
        tensor = record.features["values"].float32_tensor
        data.append(np.array(tensor.values, dtype=np.float32))
        indices.append(np.array(tensor.keys, dtype=np.int64))
        labels.append(record.label["values"].float32_tensor.values[0])
        p += 8 + ((length + 3) & ~3)
    indptr = np.zeros(len(data) + 1, np.int64)
    np.cumsum([len(d) for d in data], out=indptr[1:])
    return CSR(
        data=np.concatenate(data),
        indices=np.concatenate(indices),
        indptr=indptr,
        n_cols=int(record.features["values"].float32_tensor.shape[0]),
        labels=np.array(labels, np.float32),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--nnz", type=int, default=40, help="mean nonzeros per row")
    parser.add_argument("--cols", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    warm_up()
    body = make_body(args.rows, args.nnz, args.cols, args.seed)
    print(f"{args.rows} rows, {args.nnz} mean nnz, {len(body) / 2**20:.0f} MiB")
    times: dict[str, list[float]] = {"protobuf": [], "ours": []}
    results: dict[str, CSR] = {}
    for _ in range(args.repeat):
        for name, decode in (
            ("protobuf", lambda: decode_with_protobuf(body)),
            ("ours", lambda: decode_recordio(body, source="bench", with_labels=True)),
        ):
            start = time.perf_counter()
            results[name] = decode()
            times[name].append(time.perf_counter() - start)
    a, b = results["protobuf"], results["ours"]
    assert np.array_equal(a.data, b.data) and np.array_equal(a.indices, b.indices)
    assert np.array_equal(a.indptr, b.indptr) and np.array_equal(a.labels, b.labels) and a.n_cols == b.n_cols
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, median in medians.items():
        print(f"{name:>9}: median {median:.3f} s  {args.rows / median:,.0f} rows/s  ({args.repeat} runs)")
    print(f"ratio ours/protobuf: {medians['protobuf'] / medians['ours']:.1f}x rows/s")


if __name__ == "__main__":
    main()
