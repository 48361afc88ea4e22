"""WALS training data beyond memory (``data_loading=stream``): the triplets of the ``train`` channel read in
bounded chunks into a CSR (entries by row) and a CSC (by column) in memory-mapped files under the job's
scratch directory (``SageMakerPaths.scratch_dir``), which the sweeps read in order.

The passes: (1) each chunk of a source (``CHUNK_BYTES`` of whole CSV lines or whole RecordIO records, read
through FM's stream layers: gzip undone and ``RecordWrapperType=RecordIO`` unwrapped as read) is decoded as
in memory, lines and records numbered in the whole file or object, and its entries appended to spill files,
string ids numbered in first-seen order; (2) the id maps are made from the distinct ids as in memory
(``IdMap.from_ids``: exact, sorted) and the entries counted per row; (3) each entry is placed in its row, rows
in read order (a counting sort); (4) each block of rows is made canonical by scipy as the in-memory path does (columns
sorted, duplicates summed, in the same order); (5) ``OnDiskMatrix.entries`` computes the targets and extra
weights and places the entries by column (a second counting sort). Entries and values are never all in
memory: what is, is the id maps, per-row and per-column arrays (counts, indptr) and ``BLOCK_ENTRIES``
entries at a time. The files are allocated in full before they are written, so a volume without room fails
at once with the size it lacks, never with a crash on a mapped page.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import scipy.sparse as sp

from algorithm.csr import CSR
from algorithm.wals import Entries, entry_terms
from algorithm.wals_model import IdMap
from container import wals_data
from container.byte_streams import Peekable
from container.channel_stream import channel_sources, decoded_bodies
from container.config import ChannelConfig
from container.errors import ChannelError, ClientError, DataError
from container.formats import _triplets_kernels as kernels
from container.formats import triplets
from container.formats.chunking import LineChunker, Reader, RecordChunker
from container.formats.registry import CSV, RECORDIO
from container.paths import SageMakerPaths

log = logging.getLogger("train.wals")

CHUNK_BYTES = 4 << 20  # text or RecordIO decoded at a time (the decoders' own arrays take several times as much)
BLOCK_ENTRIES = 1 << 20  # entries per step of the passes over the files
GIB = 2.0**30


class Scratch:
    """The job's own directory under the scratch root, removed by ``close``; its files are allocated in full
    when made (``posix_fallocate``), so a full volume is a clear error here."""

    def __init__(self, root: Path) -> None:
        try:
            root.mkdir(parents=True, exist_ok=True)
            self.directory = Path(tempfile.mkdtemp(prefix="wals-", dir=root))
        except OSError as err:
            raise ClientError(f"Cannot make a scratch directory under {root} for the on-disk training data "
                              f"({err.strerror}); make it writable, or set data_loading=memory") from None

    def __enter__(self) -> Scratch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)

    def no_space(self, what: str, nbytes: int, err: OSError) -> ClientError:
        return ClientError(f"{self.directory}: no room for {what} ({nbytes / GIB:.3f} GiB): {err.strerror}. "
                           "Give the training volume more space (VolumeSizeInGB), or set data_loading=memory "
                           "if the data fits in memory")

    def array(self, name: str, dtype: Any, n: int) -> np.ndarray:
        """A new file of ``n`` values mapped as an array (zeros)."""
        path = self.directory / name
        nbytes = n * np.dtype(dtype).itemsize
        try:
            with open(path, "w+b") as handle:
                if nbytes:
                    os.posix_fallocate(handle.fileno(), 0, nbytes)
        except OSError as err:
            path.unlink(missing_ok=True)
            raise self.no_space(f"the on-disk array {name!r}", nbytes, err) from None
        if not nbytes:
            return np.zeros(0, dtype)
        return np.asarray(np.memmap(path, dtype=dtype, mode="r+", shape=(n,)))


class _Spill:
    """Entries (row, column, value) appended to three files as they are decoded, read back in blocks."""

    FIELDS = (("rows", np.int64), ("cols", np.int64), ("values", np.float32))

    def __init__(self, scratch: Scratch) -> None:
        self.scratch = scratch
        self.paths = [scratch.directory / f"spill_{name}" for name, _ in self.FIELDS]
        self.files: list[IO[bytes]] = [open(path, "wb") for path in self.paths]  # noqa: SIM115 (closed in done)
        self.size = 0

    def append(self, rows: np.ndarray, cols: np.ndarray, values: np.ndarray) -> None:
        arrays = (rows, cols, values)
        try:
            for handle, array, (_, dtype) in zip(self.files, arrays, self.FIELDS, strict=True):
                handle.write(np.ascontiguousarray(array, dtype=dtype).data)
        except OSError as err:
            raise self.scratch.no_space("the decoded entries", 20 * len(values), err) from None
        self.size += len(values)

    def done(self) -> None:
        try:
            for handle in self.files:
                handle.close()
        except OSError as err:
            raise self.scratch.no_space("the decoded entries", 0, err) from None

    def blocks(self) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        for start in range(0, self.size, BLOCK_ENTRIES):
            count = min(BLOCK_ENTRIES, self.size - start)
            rows, cols, values = (np.fromfile(path, dtype, count, offset=start * np.dtype(dtype).itemsize)
                                  for path, (_, dtype) in zip(self.paths, self.FIELDS, strict=True))
            yield rows, cols, values


TAKES = dict.fromkeys((CSV, RECORDIO))  # the content types of triplets


def iter_triplets(paths: SageMakerPaths, config: ChannelConfig, hp: dict[str, Any]) -> Iterator[triplets.Triplets]:
    """The entries of a train or test channel, a chunk of whole lines or records at a time: its files in File
    mode, the FIFO of epoch 0 in Pipe mode (``source_triplets``)."""
    assumed: set[str] = set()
    for source, file in channel_sources(paths, config):
        yield from source_triplets(file, source, config, hp, assumed)


def source_triplets(stream: Reader, source: str, config: ChannelConfig, hp: dict[str, Any],
                    assumed: set[str] | None = None) -> Iterator[triplets.Triplets]:
    """The entries of one source of the channel ``config``, its bytes read from ``stream`` as they come: gzip
    undone and ``RecordWrapperType=RecordIO`` unwrapped as FM's streams are (``channel_stream.decoded_bodies``),
    each body cut into CHUNK_BYTES of whole CSV lines or RecordIO records, each decoded as in memory with
    errors naming the line, or the record and its byte offset, in the body. ``assumed``: the content types
    already logged as assumed for the channel."""
    def decode(content_type: str, body: Peekable) -> Iterator[triplets.Triplets]:
        if content_type == RECORDIO:
            return _recordio_triplets(body, source, config, hp)
        return _csv_triplets(body, source, config, hp)

    return decoded_bodies(stream, source, config, TAKES, decode, assumed)


def _nonnegative(config: ChannelConfig, hp: dict[str, Any]) -> bool:
    return config.name == "train" and hp["alpha"] is not None


def _recordio_triplets(body: Reader, source: str, config: ChannelConfig, hp: dict[str, Any]
                       ) -> Iterator[triplets.Triplets]:
    num_rows = hp["num_rows"]
    if num_rows is None:
        raise ClientError(f"{source}: RecordIO-protobuf triplets are in the one-hot layout "
                          "[row, num_rows + col]: set the num_rows hyperparameter to read them")
    chunker = RecordChunker(body, source)
    while (chunk := chunker.next(CHUNK_BYTES)) is not None:
        yield triplets.decode_triplets_recordio(chunk.data, source=source, num_rows=num_rows,
                                                num_cols=hp["num_cols"], nonnegative_values=_nonnegative(config, hp),
                                                first_record=chunk.first, first_byte=chunk.offset)


def _csv_triplets(body: Reader, source: str, config: ChannelConfig, hp: dict[str, Any]
                  ) -> Iterator[triplets.Triplets]:
    chunker = LineChunker(body, source)
    text_seen = False
    while (chunk := chunker.next(CHUNK_BYTES)) is not None:
        yield triplets.decode_triplets_csv(chunk.data, source=source, num_rows=hp["num_rows"],
                                           num_cols=hp["num_cols"], nonnegative_values=_nonnegative(config, hp),
                                           first_line=chunk.first, first_byte=chunk.offset, header=not text_seen)
        text_seen = text_seen or not chunk.data.tobytes().isspace()


class _Side:
    """The ids of one side as they are read: names numbered in first-seen order, or indices."""

    def __init__(self, what: str, declared: int | None) -> None:
        self.what = what
        self.declared = declared
        self.named: bool | None = None
        self.numbers: dict[str, int] = {}
        self.largest = -1

    def codes(self, ids: np.ndarray, names: np.ndarray | None, channel: str) -> np.ndarray:
        """Provisional numbers of a chunk's ids (names: first-seen order; indices: themselves)."""
        if self.named is None:
            self.named = names is not None
        elif self.named != (names is not None):
            raise ClientError(f"Channel {channel!r} has {self.what} ids both as text and as indices (CSV and "
                              f"RecordIO files): set num_{self.what}s so CSV ids are indices too")
        if names is None:
            if ids.size:
                self.largest = max(self.largest, int(ids.max()))
            return ids
        numbers = self.numbers
        first = np.fromiter((numbers.setdefault(name, len(numbers)) for name in names.tolist()), np.int64,
                            len(names))
        return first[ids]

    def id_map(self) -> tuple[IdMap, np.ndarray | None]:
        """The side's IdMap (as in memory) and the matrix index of each provisional number (None: the same)."""
        if not self.named:
            return IdMap.range(self.declared if self.declared is not None else self.largest + 1), None
        names = np.array(list(self.numbers), dtype=str)
        self.numbers = {}
        return IdMap.from_ids(names)


@dataclass
class OnDiskMatrix:
    """The training matrix in memory-mapped files: canonical CSR (``indptr`` in memory, ``indices`` int64
    and ``data`` float32 on disk) and int32 column indices for the artifact's training entries."""

    scratch: Scratch
    shape: tuple[int, int]
    indptr: np.ndarray
    indices: np.ndarray
    data: np.ndarray
    seen_indices: np.ndarray

    @property
    def nnz(self) -> int:
        return int(self.indptr[-1])

    def seen(self) -> sp.csr_matrix:
        """The entries as a scipy matrix over the files (values: the data), for the artifact and the checks."""
        matrix = sp.csr_matrix(self.shape, dtype=np.float32)
        matrix.indptr, matrix.indices, matrix.data = self.indptr, self.seen_indices, self.data
        return matrix

    def _row_blocks(self) -> Iterator[tuple[int, int]]:
        yield from _row_blocks(self.indptr)

    def entries(self, row_weights: np.ndarray, col_weights: np.ndarray, alpha: float | None) -> Entries:
        """The matrix prepared for the sweeps (``algorithm.wals.Entries``), with these weights, on disk."""
        n, m = self.shape
        nnz = self.nnz
        row_extra = self.scratch.array("row_extra", np.float32, nnz)
        target = self.data if alpha is None else self.scratch.array("row_target", np.float32, nnz)
        col_counts = np.zeros(m, np.int64)
        for first, last in self._row_blocks():
            a, b = self.indptr[first], self.indptr[last]
            rows = np.repeat(np.arange(first, last), np.diff(self.indptr[first:last + 1]))
            cols = self.indices[a:b]
            t, e = entry_terms(self.data[a:b], row_weights[rows] * col_weights[cols], alpha)
            row_extra[a:b] = e
            if alpha is not None:
                target[a:b] = t
            col_counts += np.bincount(cols, minlength=m)
        col_indptr = np.concatenate([[0], np.cumsum(col_counts)])
        col_rows = self.scratch.array("col_rows", np.int64, nnz)
        col_target = self.scratch.array("col_target", np.float32, nnz)
        col_extra = self.scratch.array("col_extra", np.float32, nnz)
        cursor = col_indptr[:-1].copy()
        for first, last in self._row_blocks():
            a, b = self.indptr[first], self.indptr[last]
            rows = np.repeat(np.arange(first, last, dtype=np.int64), np.diff(self.indptr[first:last + 1]))
            kernels.scatter(self.indices[a:b], cursor, rows, target[a:b], row_extra[a:b], col_rows, col_target,
                            col_extra)
        return Entries(CSR(target, self.indices, self.indptr, m), row_extra,
                       CSR(col_target, col_rows, col_indptr, n), col_extra)


def _row_blocks(indptr: np.ndarray) -> Iterator[tuple[int, int]]:
    """Ranges of consecutive rows of at most BLOCK_ENTRIES entries (a longer row alone)."""
    n = indptr.size - 1
    first = 0
    while first < n:
        last = int(np.searchsorted(indptr, indptr[first] + BLOCK_ENTRIES, side="right")) - 1
        last = min(n, max(last, first + 1))
        yield first, last
        first = last


@dataclass
class StreamedMatrices:
    """``wals_data.Matrices`` with the training matrix on disk."""

    train: OnDiskMatrix
    row_ids: IdMap
    col_ids: IdMap
    test: sp.csr_matrix | None


def _sides(hp: dict[str, Any]) -> tuple[_Side, _Side]:
    return _Side("row", hp["num_rows"]), _Side("col", hp["num_cols"])


def build(paths: SageMakerPaths, train: ChannelConfig, test: ChannelConfig | None, hp: dict[str, Any],
          scratch: Scratch) -> StreamedMatrices:
    """The training matrix on disk and its id maps from the ``train`` channel, read once; ``test`` mapped to
    the same ids (in memory), as ``wals_data.build_matrices`` makes them."""
    started = time.monotonic()
    spill = _Spill(scratch)
    sides = _sides(hp)
    read = 0
    for part in iter_triplets(paths, train, hp):
        if len(part):
            rows = sides[0].codes(part.rows, part.row_names, train.name)
            cols = sides[1].codes(part.cols, part.col_names, train.name)
            spill.append(rows, cols, wals_data.entry_values(part, hp["alpha"]))
            read += len(part)
    spill.done()
    if not read:
        raise ChannelError(f"Channel {train.name!r} has no entries ({train.input_mode} mode, looked in "
                           f"{paths.channel_dir(train.name)}); expected {triplets.FIELDS} lines or RecordIO")
    (row_ids, row_index), (col_ids, col_index) = sides[0].id_map(), sides[1].id_map()
    n, m = len(row_ids), len(col_ids)
    counts = np.zeros(n, np.int64)
    for rows, _, _ in spill.blocks():
        counts += np.bincount(rows if row_index is None else row_index[rows], minlength=n)
    raw_indptr = np.concatenate([[0], np.cumsum(counts)])
    indices = scratch.array("indices", np.int64, read)
    data = scratch.array("data", np.float32, read)
    cursor = raw_indptr[:-1].copy()
    for rows, cols, values in spill.blocks():
        kernels.scatter(rows if row_index is None else row_index[rows], cursor,
                        cols if col_index is None else col_index[cols], values, np.zeros(0, np.float32),
                        indices, data, np.zeros(0, np.float32))
    for path in spill.paths:
        path.unlink()
    indptr, nnz = _canonical(raw_indptr, indices, data, m)
    seen_indices = scratch.array("seen_indices", np.int32, nnz)
    for start in range(0, nnz, BLOCK_ENTRIES):
        stop = min(nnz, start + BLOCK_ENTRIES)
        seen_indices[start:stop] = indices[start:stop]
    matrix = OnDiskMatrix(scratch, (n, m), indptr, indices[:nnz], data[:nnz], seen_indices)
    log.info("train: %d entries (%d distinct), %d rows x %d columns (%s row ids, %s column ids), on disk in "
             "%s (%.1f s)", read, nnz, n, m, row_ids.kind, col_ids.kind, scratch.directory,
             time.monotonic() - started)
    held_out = None if test is None else _test_matrix(paths, test, hp, row_ids, col_ids)
    return StreamedMatrices(matrix, row_ids, col_ids, held_out)


def _canonical(raw_indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, m: int) -> tuple[np.ndarray, int]:
    """Each row's entries sorted by column with duplicates summed, moved to the front of the arrays, block by
    block with scipy's own steps and flags, so every row comes out as the in-memory ``csr_matrix`` makes it;
    returns the new indptr and entry count."""
    n = raw_indptr.size - 1
    unsorted = False
    for first, last in _row_blocks(raw_indptr):
        a, b = raw_indptr[first], raw_indptr[last]
        step = np.diff(indices[a:b]) < 0
        if step.any():
            row_end = raw_indptr[first + 1:last] - a - 1  # the last entry of each row but the block's last
            step[row_end[(row_end >= 0) & (row_end < step.size)]] = False
            unsorted = unsorted or bool(step.any())
    lengths = np.zeros(n, np.int64)
    out = 0
    for first, last in _row_blocks(raw_indptr):
        a, b = raw_indptr[first], raw_indptr[last]
        block = sp.csr_matrix((np.array(data[a:b]), np.array(indices[a:b]), raw_indptr[first:last + 1] - a),
                              shape=(last - first, m))
        block.has_sorted_indices = not unsorted
        block.sum_duplicates()
        size = block.nnz
        indices[out:out + size] = block.indices
        data[out:out + size] = block.data
        lengths[first:last] = np.diff(block.indptr)
        out += size
    return np.concatenate([[0], np.cumsum(lengths)]), out


def _test_matrix(paths: SageMakerPaths, config: ChannelConfig, hp: dict[str, Any], row_ids: IdMap,
                 col_ids: IdMap) -> sp.csr_matrix:
    """The held-out matrix over the training ids, read a chunk at a time (kept in memory: entries of known
    ids, 16 bytes each)."""
    kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    unknown: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    total = 0
    for part in iter_triplets(paths, config, hp):
        rows = wals_data.test_index(part.rows, part.row_names, row_ids)
        cols = wals_data.test_index(part.cols, part.col_names, col_ids)
        known = (rows >= 0) & (cols >= 0)
        kept.append((rows[known], cols[known], part.values[known]))
        unknown[0].append(np.unique(part.row_ids()[rows < 0]))
        unknown[1].append(np.unique(part.col_ids()[cols < 0]))
        total += len(part)
    if not total:
        raise ChannelError(f"Channel {config.name!r} has no entries ({config.input_mode} mode, looked in "
                           f"{paths.channel_dir(config.name)}); expected {triplets.FIELDS} lines or RecordIO")
    rows, cols, values = (np.concatenate([k[i] for k in kept]) for i in range(3))
    dropped = total - rows.size
    if dropped:
        log.warning("test: dropped %d of %d entries whose ids the training data does not have (%d unknown row "
                    "ids, %d unknown column ids)", dropped, total, np.unique(np.concatenate(unknown[0])).size,
                    np.unique(np.concatenate(unknown[1])).size)
    if not rows.size:
        raise DataError(f"Channel 'test': none of its {total} entries has a row id and a column id seen in "
                        "training")
    held_out = sp.csr_matrix((values, (rows, cols)), shape=(len(row_ids), len(col_ids)), dtype=np.float32)
    held_out.sum_duplicates()
    log.info("test: %d entries (%d distinct)", rows.size, held_out.nnz)
    return held_out
