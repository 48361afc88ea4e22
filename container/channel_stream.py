"""A training channel as a sequence of CSR blocks of bounded size, read from its files (File mode) or its FIFO
(Pipe mode) incrementally: memory holds one block and the bytes it is decoded from, whatever the channel's size.

Each source (file, FIFO, or S3 object of a RecordIO-wrapped FIFO) is gunzipped as it is read when it starts with
gzip's magic number, its content type is the declared ``ContentType`` or the one its first bytes show (as
``container.channels`` reads it), and it is cut into whole records (RecordIO-protobuf) or whole lines (CSV,
libsvm) that the whole-body decoder decodes: a block holds exactly the rows the whole-body decoder gives for
its part of the source, and errors name the source and the record, line or byte offset in it. JSON and JSON
Lines bodies are decoded whole, one block per body.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import BinaryIO, TypeVar

import numpy as np
import scipy.sparse as sp

from algorithm.csr import CSR, concatenate
from container.byte_streams import Peekable, StreamError, gunzipped, read_all, unwrapped
from container.channel_files import channel_files
from container.channels import (
    PIPE_WAIT_SECONDS,
    assumed_type,
    declared_type,
    explained,
    missing_channel_error,
    wait_for_fifo,
)
from container.config import ChannelConfig
from container.errors import ClientError
from container.formats.chunking import Chunk, LineChunker, Reader, RecordChunker
from container.formats.csv import decode_csv
from container.formats.libsvm import decode_libsvm
from container.formats.recordio import decode_recordio
from container.formats.registry import CSV, DECODERS, LIBSVM, RECORDIO
from container.formats.sniff import HEAD
from container.paths import SageMakerPaths

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_BLOCK_BYTES = 64 << 20
BLANK_PEEK_BYTES = 16 << 20  # the most read ahead to find whether a source is blank
FIRST_EXPANSION = 8  # decoded bytes per source byte assumed before the first block of a source is measured


def iter_channel_blocks(
    paths: SageMakerPaths,
    config: ChannelConfig,
    *,
    feature_dim: int,
    epoch: int = 0,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    pipe_wait_seconds: float = PIPE_WAIT_SECONDS,
) -> Iterator[tuple[str, CSR]]:
    """(source, block) for the rows of a channel in order: its files in File mode, the FIFO ``<channel>_<epoch>``
    in Pipe mode. Every block has ``feature_dim`` columns, labels, at least one row, and about ``block_bytes``
    of arrays (``CSR.nbytes``; more only for a single record that is larger); its ``weights`` are None when
    none of its rows carries a weight (all 1). ChannelError when the channel has no rows at all."""
    any_rows = False
    assumed: set[str] = set()
    for source, file in channel_sources(paths, config, epoch, pipe_wait_seconds):
        for block in stream_blocks(file, source, config, feature_dim=feature_dim, block_bytes=block_bytes,
                                   assumed=assumed):
            any_rows = True
            yield source, block
    if not any_rows:
        raise missing_channel_error(paths, config, epoch)


def read_every_nth(paths: SageMakerPaths, config: ChannelConfig, *, feature_dim: int, first: int, step: int,
                   block_bytes: int = DEFAULT_BLOCK_BYTES) -> CSR:
    """Rows ``first``, ``first + step``, ``first + 2 step``, ... of a channel, as ``read_channel`` would give them
    (weights on every row when any row of the channel carries one), read block by block: memory holds those rows
    and one block, not the whole channel."""
    parts, weighted, offset = [], False, 0
    for _, block in iter_channel_blocks(paths, config, feature_dim=feature_dim, block_bytes=block_bytes):
        weighted = weighted or block.weights is not None
        keep = np.arange((first - offset) % step, block.n_rows, step)
        if keep.size:
            parts.append(CSR.from_matrix(block.to_scipy()[keep], None if block.labels is None else block.labels[keep],
                                         None if block.weights is None else block.weights[keep]))
        offset += block.n_rows
    if not parts:
        return CSR.from_matrix(sp.csr_matrix((0, feature_dim), dtype=np.float32), np.zeros(0, np.float32))
    rows = concatenate(parts, n_cols=feature_dim)
    if weighted and rows.weights is None:
        rows = dataclasses.replace(rows, weights=np.ones(rows.n_rows, np.float32))
    return rows


def channel_sources(paths: SageMakerPaths, config: ChannelConfig, epoch: int = 0,
                    pipe_wait_seconds: float = PIPE_WAIT_SECONDS) -> Iterator[tuple[str, BinaryIO]]:
    """(source, open file) for each file of the channel in order, or its FIFO; each closed before the next
    opens (and when the caller stops early)."""
    if config.input_mode.lower() == "pipe":
        fifo = paths.pipe_path(config.name, epoch)
        log.info("Streaming channel %r from FIFO %s", config.name, fifo)
        wait_for_fifo(fifo, pipe_wait_seconds)
        with open(fifo, "rb") as file:
            yield str(fifo), file
        return
    directory = paths.channel_dir(config.name)
    files = channel_files(directory) if directory.is_dir() else []
    log.info("Streaming channel %r: %d file(s) under %s as %s", config.name, len(files), directory,
             config.content_type or "their first bytes show (no ContentType declared)")
    for path in files:
        with open(path, "rb") as file:
            yield str(path), file


def stream_blocks(
    stream: Reader,
    source: str,
    config: ChannelConfig,
    *,
    feature_dim: int,
    block_bytes: int = DEFAULT_BLOCK_BYTES,
    assumed: set[str] | None = None,
) -> Iterator[CSR]:
    """The blocks of one source of the channel ``config`` (its bytes read from ``stream`` as they come); see
    ``iter_channel_blocks``. ``assumed``: the content types already logged as assumed for the channel."""
    def decode(content_type: str, body: Peekable) -> Iterator[CSR]:
        return _blocks(content_type, body, source, feature_dim, block_bytes)

    return decoded_bodies(stream, source, config, DECODERS, decode, assumed)


def decoded_bodies(stream: Reader, source: str, config: ChannelConfig, takes: Mapping[str, object],
                   decode: Callable[[str, Peekable], Iterator[T]], assumed: set[str] | None = None) -> Iterator[T]:
    """What ``decode(content_type, body)`` yields for each body of one source (``_source_bodies``), in order: the
    content type the channel's declared one among ``takes``, else the one the body's first bytes show (logged
    once per channel through ``assumed``); a ``ClientError`` explained with the content type at fault."""
    declared = declared_type(config, takes)
    assumed = set() if assumed is None else assumed
    for body in _source_bodies(stream, source, config):
        head = body.peek(HEAD)
        content_type = declared or assumed_type(config, source, head, takes, assumed)
        try:
            yield from decode(content_type, body)
        except StreamError:
            raise
        except ClientError as err:
            raise explained(err, config, source, head, content_type, declared is not None, takes) from None


def _source_bodies(stream: Reader, source: str, config: ChannelConfig) -> Iterator[Peekable]:
    """The bodies of one source as streams, in order: the source gunzipped as it is read, or with
    ``RecordWrapperType=RecordIO`` each wrapped S3 object, gunzipped in turn; blank bodies skipped. Each body is
    to be read (as far as wanted) before the next is asked for."""
    top = gunzipped(Peekable(stream), source)
    wrapped = unwrapped(top, source) if config.record_wrapper.lower() == "recordio" else iter([top])
    for body in wrapped:
        body = gunzipped(body, source)
        if not _blank(body):
            yield body


def _blank(body: Peekable) -> bool:
    """Whether ``body`` holds only whitespace (such a body is skipped, as ``container.channels`` skips it); a body
    longer than BLANK_PEEK_BYTES is decoded whatever it starts with."""
    n = HEAD
    while n <= BLANK_PEEK_BYTES:
        head = body.peek(n)
        if head.strip():
            return False
        if len(head) < n:
            return True
        n *= 2
    return False


def _blocks(content_type: str, body: Peekable, source: str, feature_dim: int, block_bytes: int) -> Iterator[CSR]:
    """The rows of one body, a chunk of whole records or lines per block; a JSON body whole."""
    if content_type == RECORDIO:
        chunker: RecordChunker | LineChunker = RecordChunker(body, source)

        def decode(chunk: Chunk) -> CSR:
            return decode_recordio(chunk.data, source=source, feature_dim=feature_dim, with_labels=True,
                                   first_record=chunk.first, first_byte=chunk.offset)
    elif content_type in (CSV, LIBSVM):
        chunker = LineChunker(body, source)
        decode_text = decode_csv if content_type == CSV else decode_libsvm

        def decode(chunk: Chunk) -> CSR:
            return decode_text(chunk.data, source=source, feature_dim=feature_dim, with_labels=True,
                               first_line=chunk.first)
    else:
        block = DECODERS[content_type](read_all(body), source=source, feature_dim=feature_dim,
                                       with_labels=True)
        if block.n_rows:
            yield block
        return
    limit = max(block_bytes // FIRST_EXPANSION, 1)  # a chunk holds at least one whole record or line
    while (chunk := chunker.next(limit)) is not None:
        block = decode(chunk)
        if block.n_rows:
            yield block
        if block.nbytes:  # the next read aims at block_bytes decoded, at most block_bytes read
            limit = min(max(block_bytes * len(chunk.data) // block.nbytes, 1), block_bytes)
