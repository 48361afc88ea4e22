"""WALS CSV triplets: our numba reader vs the csv-module reader (our fallback), numpy.loadtxt and pandas.read_csv.

Every reader turns the same body into the same arrays: a row and a column index per line (string ids:
the index among the sorted distinct ids; declared integer ids: the ids), float32 values. Runs are
interleaved and medians reported; the ratios are anchor time / our time (> 1: we are faster).

    .venv/bin/python -m bench.bench_triplets --lines 1000000 --repeat 3

Data: ``--lines`` lines of ``row,col,value`` over ``--rows`` x ``--cols`` ids drawn uniformly; ``str``
ids are ``user123``/``item-45`` with values like ``3.5``; ``int`` ids are integers read with num_rows and
num_cols declared (numpy.loadtxt only reads this one). pandas is an anchor when it is installed (it is
not an image dependency).
"""

from __future__ import annotations

import argparse
import io
import statistics
import time
from collections.abc import Callable

import numpy as np

from container.formats.triplets import Triplets, decode_triplets_csv, decode_triplets_csv_simple

Result = tuple[np.ndarray, np.ndarray, np.ndarray]  # row index, col index, float32 values


def make_body(kind: str, lines: int, rows: int, cols: int, seed: int) -> bytes:
    """``lines`` CSV triplets with uniformly drawn ids (``str`` or ``int``) and ratings 1-5 (halves for str)."""
    rng = np.random.default_rng(seed)
    r, c, v = rng.integers(0, rows, lines), rng.integers(0, cols, lines), rng.integers(1, 6, lines)
    if kind == "str":
        text = "".join(f"user{a},item-{b},{x}.5\n" for a, b, x in zip(r.tolist(), c.tolist(), v.tolist(), strict=True))
    else:
        text = "".join(f"{a},{b},{x}\n" for a, b, x in zip(r.tolist(), c.tolist(), v.tolist(), strict=True))
    return text.encode()


def _indices(data: Triplets) -> Result:
    return data.rows, data.cols, data.values


def pandas_reader(kind: str) -> Callable[[bytes], Result] | None:
    """pandas.read_csv (C engine) + pandas.factorize(sort=True), or None without pandas."""
    try:
        import pandas as pd
    except ImportError:
        return None

    def read(body: bytes) -> Result:
        dtype = {"r": str, "c": str, "v": np.float32} if kind == "str" else {"r": np.int64, "c": np.int64,
                                                                              "v": np.float32}
        frame = pd.read_csv(io.BytesIO(body), header=None, names=["r", "c", "v"], dtype=dtype)
        if kind == "str":
            rows, cols = pd.factorize(frame["r"], sort=True)[0], pd.factorize(frame["c"], sort=True)[0]
        else:
            rows, cols = frame["r"].to_numpy(), frame["c"].to_numpy()
        return rows.astype(np.int64), cols.astype(np.int64), frame["v"].to_numpy()

    return read


def loadtxt_reader(body: bytes) -> Result:
    """numpy.loadtxt of integer ids (its C parser); not for string ids."""
    table = np.loadtxt(io.BytesIO(body), delimiter=",", dtype=np.float64, ndmin=2)
    return table[:, 0].astype(np.int64), table[:, 1].astype(np.int64), table[:, 2].astype(np.float32)


def readers(kind: str, rows: int, cols: int) -> dict[str, Callable[[bytes], Result]]:
    sizes = {} if kind == "str" else {"num_rows": rows, "num_cols": cols}
    table: dict[str, Callable[[bytes], Result]] = {
        "ours": lambda body: _indices(decode_triplets_csv(body, source="bench", **sizes)),
        "csv module": lambda body: _indices(decode_triplets_csv_simple(body, source="bench", **sizes)),
    }
    if kind == "int":
        table["numpy.loadtxt"] = loadtxt_reader
    pandas = pandas_reader(kind)
    if pandas is not None:
        table["pandas.read_csv"] = pandas
    return table


def run(kind: str, args: argparse.Namespace) -> None:
    body = make_body(kind, args.lines, args.rows, args.cols, args.seed)
    table = readers(kind, args.rows, args.cols)
    for read in table.values():  # compile / import once, outside the timings
        read(body[:1000].rsplit(b"\n", 1)[0] + b"\n")
    times: dict[str, list[float]] = {name: [] for name in table}
    results: dict[str, Result] = {}
    for _ in range(args.repeat):
        for name, read in table.items():
            start = time.perf_counter()
            results[name] = read(body)
            times[name].append(time.perf_counter() - start)
    ours = results["ours"]
    for name, result in results.items():
        for a, b in zip(ours, result, strict=True):
            assert np.array_equal(a, b), f"{name} disagrees with ours"
    medians = {name: statistics.median(t) for name, t in times.items()}
    print(f"\n{kind} ids: {args.lines:,} lines, {len(body) / 2**20:.1f} MiB, {args.repeat} runs")
    print("| reader | median s | lines/s | anchor s / ours s |\n| --- | --- | --- | --- |")
    for name, median in medians.items():
        ratio = "1.0" if name == "ours" else f"{median / medians['ours']:.1f}"
        print(f"| {name} | {median:.3f} | {args.lines / median:,.0f} | {ratio} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--rows", type=int, default=100_000, help="distinct row ids drawn from")
    parser.add_argument("--cols", type=int, default=20_000, help="distinct column ids drawn from")
    parser.add_argument("--kinds", nargs="+", choices=("str", "int"), default=["str", "int"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    for kind in args.kinds:
        run(kind, args)


if __name__ == "__main__":
    main()
