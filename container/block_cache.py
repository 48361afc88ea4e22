"""The on-disk cache of a streamed File-mode channel: its rows decoded once into flat binary files, read back
block by block through memory maps for every later pass.

Layout of the cache directory: ``data.f32``, ``indices.i64`` (the nonzeros), ``indptr.i64`` (n_rows + 1 row
offsets), ``labels.f32``, ``weights.f32`` (1 where a block had none), ``blocks.i64`` (the first row of each
block, then n_rows), all little-endian, and ``cache.json`` (counts), written last: a directory without it is
an unfinished cache and is never read. A block maps only its own part of the files and is unmapped when
dropped, so the memory a pass takes is the block in hand (the pages stay in the page cache, which the kernel
reclaims under pressure).
"""

from __future__ import annotations

import errno
import json
import shutil
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, suppress
from pathlib import Path
from typing import BinaryIO

import numpy as np

from algorithm.csr import CSR
from algorithm.row_blocks import block_order
from container.errors import ClientError

META = "cache.json"
ARRAYS = {"data": np.float32, "indices": np.int64, "indptr": np.int64, "labels": np.float32,
          "weights": np.float32, "blocks": np.int64}
_SUFFIX = {np.float32: "f32", np.int64: "i64"}


def _file(directory: Path, name: str) -> Path:
    return directory / f"{name}.{_SUFFIX[ARRAYS[name]]}"


class CacheSpaceError(ClientError):
    """The cache directory's filesystem is full."""


class BlockCacheWriter:
    """Appends blocks to a new cache in ``directory`` (emptied first); ``finish()`` makes it readable."""

    def __init__(self, directory: Path, n_cols: int) -> None:
        self.directory, self.n_cols = directory, n_cols
        self.n_rows = self.nnz = 0
        self.weighted = False
        self._files = ExitStack()
        try:
            shutil.rmtree(directory, ignore_errors=True)
            directory.mkdir(parents=True)
            self.files: dict[str, BinaryIO] = {  # open for the writer's life, closed by close()
                name: self._files.enter_context(open(_file(directory, name), "wb"))  # noqa: SIM115
                for name in ARRAYS}
        except OSError as err:
            self.abandon()
            raise self._error(err) from None
        self._write("indptr", np.zeros(1, np.int64))

    def append(self, block: CSR) -> None:
        """Add the rows of ``block`` (with labels) as the next block."""
        assert block.labels is not None
        self._write("blocks", np.array([self.n_rows], np.int64))
        self._write("data", block.data)
        self._write("indices", block.indices)
        self._write("indptr", block.indptr[1:] + self.nnz)
        self._write("labels", block.labels)
        self.weighted |= block.weights is not None
        self._write("weights", np.ones(block.n_rows, np.float32) if block.weights is None else block.weights)
        self.n_rows += block.n_rows
        self.nnz += block.nnz

    def finish(self) -> BlockCache:
        """Close the files and write ``cache.json``: the cache as written."""
        self._write("blocks", np.array([self.n_rows], np.int64))
        self.close()
        meta = {"n_rows": self.n_rows, "nnz": self.nnz, "n_cols": self.n_cols, "weighted": self.weighted}
        try:
            (self.directory / META).write_text(json.dumps(meta))
        except OSError as err:
            raise self._error(err) from None
        return BlockCache(self.directory)

    def close(self) -> None:
        """Close the files; a failing flush (a full volume) is the cache's error."""
        try:
            self._files.close()
        except OSError as err:
            self.abandon()
            raise self._error(err) from None

    def abandon(self) -> None:
        """Close the files after an error, whatever fails on the way (the cache stays unfinished)."""
        for file in getattr(self, "files", {}).values():
            with suppress(OSError):
                file.close()
        with suppress(OSError):
            self._files.close()

    def _write(self, name: str, array: np.ndarray) -> None:
        try:
            little_endian = np.dtype(ARRAYS[name]).newbyteorder("<")
            self.files[name].write(np.ascontiguousarray(array, dtype=little_endian).data)
        except OSError as err:
            self.abandon()
            raise self._error(err) from None

    def _error(self, err: OSError) -> ClientError:
        if err.errno == errno.ENOSPC:
            return CacheSpaceError(
                f"No space left on the training volume for the on-disk cache of the streamed data in "
                f"{self.directory} after {self.n_rows} rows ({self.nnz} nonzeros): give the job a larger volume "
                "(VolumeSizeInGB), or use Pipe mode, which streams without a cache")
        return ClientError(f"Cannot write the on-disk cache of the streamed data in {self.directory}: {err}")


class BlockCache:
    """A finished cache (``algorithm.row_blocks.RowBlocks``): its blocks as memory-mapped ``CSR`` views."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        meta = json.loads((directory / META).read_text())
        self.n_rows, self.nnz, self.n_cols = int(meta["n_rows"]), int(meta["nnz"]), int(meta["n_cols"])
        self.weighted = bool(meta["weighted"])
        self.starts = np.fromfile(_file(directory, "blocks"), dtype="<i8").astype(np.int64)

    @property
    def n_blocks(self) -> int:
        return self.starts.size - 1

    def blocks(self, order_rng: np.random.Generator | None) -> Iterator[CSR]:
        for b in block_order(self.n_blocks, order_rng):
            yield self.block(int(b))

    def block(self, b: int) -> CSR:
        """Block ``b``: its arrays mapped from the files (its indptr rebased, in memory)."""
        r0, r1 = int(self.starts[b]), int(self.starts[b + 1])
        indptr = self._map("indptr", r0, r1 + 1)
        start, end = int(indptr[0]), int(indptr[-1])
        return CSR(self._map("data", start, end), self._map("indices", start, end), indptr - start, self.n_cols,
                   self._map("labels", r0, r1), self._map("weights", r0, r1) if self.weighted else None)

    def _map(self, name: str, start: int, end: int) -> np.ndarray:
        dtype = np.dtype(ARRAYS[name]).newbyteorder("<")
        if end == start:
            return np.empty(0, ARRAYS[name])
        mapped = np.memmap(_file(self.directory, name), dtype=dtype, mode="r", offset=start * dtype.itemsize,
                           shape=(end - start,))
        return np.asarray(mapped).view(ARRAYS[name])


def write_cache(directory: Path, n_cols: int, blocks: Iterable[CSR]) -> Iterator[CSR]:
    """Yield ``blocks`` as they come while appending each to a new cache in ``directory``; the cache is
    finished when the blocks are exhausted (``BlockCache(directory)`` then reads it)."""
    writer = BlockCacheWriter(directory, n_cols)
    try:
        for block in blocks:
            writer.append(block)
            yield block
    except BaseException:  # an error, or the pass abandoned: the cache stays unfinished
        writer.abandon()
        raise
    writer.finish()
