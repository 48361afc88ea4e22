"""Reading training channels: File mode (the files ``channel_files`` lists) and Pipe mode
(the FIFOs ``<channel>_<epoch>``), gzip transparently, each body decoded by the channel's content type: the
declared ``ContentType``, or, when the channel declares none, the one the body's first bytes show."""

from __future__ import annotations

import gzip
import logging
import stat
import time
import zlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping
from pathlib import Path
from typing import TypeVar

from algorithm.csr import CSR, concatenate
from container.channel_files import channel_files
from container.config import ChannelConfig
from container.errors import ChannelError, ClientError, DataError, UnsupportedFormatError
from container.formats.registry import DECODERS, RECORDIO, media_type
from container.formats.sniff import sniff
from container.paths import SageMakerPaths

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
PIPE_WAIT_SECONDS = 600.0

T = TypeVar("T")
BodyDecoder = Callable[[bytes, str], T]  # (body, source) -> what the body holds


def _maybe_gunzip(body: bytes, source: str) -> bytes:
    if not body.startswith(GZIP_MAGIC):
        return body
    try:
        return gzip.decompress(body)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{source}: corrupt gzip data: {err}") from None


def _unwrap(body: bytes, config: ChannelConfig, source: str) -> Iterator[bytes]:
    """Pipe mode with RecordWrapperType=RecordIO wraps each S3 object in one RecordIO record."""
    if config.record_wrapper.lower() != "recordio":
        yield body
        return
    from container.formats.recordio_framing import iter_payloads

    for payload in iter_payloads(body, source=source):
        yield bytes(payload)


def wait_for_fifo(path: Path, wait_seconds: float) -> None:
    """Return once the Pipe-mode FIFO ``path`` exists; ChannelError after ``wait_seconds``."""
    deadline = time.monotonic() + wait_seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise ChannelError(f"Pipe-mode channel FIFO {path} did not appear within {wait_seconds:.0f} s")
        time.sleep(0.05)
    if not stat.S_ISFIFO(path.stat().st_mode):
        log.warning("%s is not a FIFO; reading it as a regular file", path)


def _read_pipe(path: Path, wait_seconds: float) -> bytes:
    wait_for_fifo(path, wait_seconds)
    with open(path, "rb") as fifo:
        return fifo.read()


def channel_bodies(
    paths: SageMakerPaths, config: ChannelConfig, *, epoch: int = 0, pipe_wait_seconds: float = PIPE_WAIT_SECONDS
) -> Iterator[tuple[str, bytes]]:
    """(source, body) of every non-empty object of a channel, gunzipped and unwrapped: the files of File mode
    in order, or the FIFO of ``epoch`` in Pipe mode."""
    if config.input_mode.lower() == "pipe":
        fifo = paths.pipe_path(config.name, epoch)
        log.info("Reading channel %r from FIFO %s", config.name, fifo)
        sources: Iterable[tuple[str, bytes]] = [(str(fifo), _read_pipe(fifo, pipe_wait_seconds))]
    else:
        directory = paths.channel_dir(config.name)
        files = channel_files(directory) if directory.is_dir() else []
        log.info("Reading channel %r: %d file(s) under %s as %s", config.name, len(files), directory,
                 config.content_type or "their first bytes show (no ContentType declared)")
        sources = ((str(f), f.read_bytes()) for f in files)
    for source, body in sources:
        for chunk in _unwrap(_maybe_gunzip(body, source), config, source):
            chunk = _maybe_gunzip(chunk, source)
            if chunk.strip():
                yield source, chunk


def missing_channel_error(paths: SageMakerPaths, config: ChannelConfig, epoch: int = 0) -> ChannelError:
    """The failure reason for a channel with no data (in Pipe mode, in the FIFO of ``epoch``): where we looked
    and the usual causes."""
    pipe = config.input_mode.lower() == "pipe"
    where = paths.pipe_path(config.name, epoch) if pipe else paths.channel_dir(config.name)
    return ChannelError(
        f"Channel {config.name!r} has no data ({'Pipe' if pipe else 'File'} mode, looked in {where}). Usual "
        f"causes: the S3 prefix is empty or misspelt, the channel is named differently in the job (expected "
        f"{config.name!r}), or the files are hidden (names starting with '.')."
    )


def decode_channel(
    paths: SageMakerPaths,
    config: ChannelConfig,
    decoders: Mapping[str, BodyDecoder[T]],
    *,
    epoch: int = 0,
    pipe_wait_seconds: float = PIPE_WAIT_SECONDS,
) -> list[T]:
    """Every body of a channel decoded by the decoder of its content type (``decoders``: the types the channel
    takes). Without a declared ``ContentType`` each body's type is the one its first bytes show (logged once
    per type). When a declared type fails on bytes that look like another type the channel takes, the error
    names the ``ContentType`` to set."""
    declared = declared_type(config, decoders)
    assumed: set[str] = set()
    parts = []
    for source, body in channel_bodies(paths, config, epoch=epoch, pipe_wait_seconds=pipe_wait_seconds):
        content_type = declared or assumed_type(config, source, body, decoders, assumed)
        try:
            parts.append(decoders[content_type](body, source))
        except ClientError as err:
            raise explained(err, config, source, body, content_type, declared is not None, decoders) from None
    return parts


def declared_type(config: ChannelConfig, decoders: Mapping[str, object]) -> str | None:
    if config.content_type is None:
        return None
    content_type = media_type(config.content_type)
    if content_type not in decoders:
        raise UnsupportedFormatError(f"{config.content_type} (channel {config.name!r})", list(decoders))
    return content_type


def assumed_type(config: ChannelConfig, source: str, body: bytes, decoders: Mapping[str, object],
                  assumed: set[str]) -> str:
    """The type a body of a channel without ``ContentType`` is read as: the one its first bytes show, else
    RecordIO-protobuf (a bare Record has no magic)."""
    shown = sniff(body)
    content_type = shown or RECORDIO
    if content_type not in decoders:
        raise UnsupportedFormatError(
            f"{content_type}, which {source} looks like (channel {config.name!r} declares no ContentType)",
            list(decoders))
    if content_type not in assumed:
        assumed.add(content_type)
        log.info("Channel %r declares no ContentType: reading %s as %s, %s (set the channel's ContentType to "
                 "say so)", config.name, source, content_type,
                 "as its first bytes show" if shown else "as its bytes are not text")
    return content_type


def explained(err: ClientError, config: ChannelConfig, source: str, body: bytes, content_type: str,
               declared: bool, takes: Collection[str]) -> ClientError:
    """``err`` with the content type at fault named: the declared one against what the bytes look like (when
    the channel takes that), or the one assumed without a declaration."""
    shown = sniff(body)
    if not declared:
        if shown == RECORDIO:  # the magic number leaves no doubt
            return err
        return DataError(f"{err} (read as {content_type}, from its first bytes: channel {config.name!r} "
                         "declares no ContentType; set it if the data is in another format)")
    if shown is None or shown == content_type or shown not in takes:
        return err
    return DataError(f"Channel {config.name!r} declares ContentType {config.content_type} but {source} looks "
                     f"like {shown}: set the channel's ContentType to {shown}. Reading it as {content_type} "
                     f"failed: {err}")


def read_channel(
    paths: SageMakerPaths,
    config: ChannelConfig,
    *,
    feature_dim: int | None,
    epoch: int = 0,
    pipe_wait_seconds: float = PIPE_WAIT_SECONDS,
) -> CSR:
    """All rows of one channel as a single CSR, decoded by the channel's content type (``decode_channel``)."""

    def decoder(content_type: str) -> BodyDecoder[CSR]:
        decode = DECODERS[content_type]
        return lambda body, source: decode(body, source=source, feature_dim=feature_dim, with_labels=True)

    decoders = {content_type: decoder(content_type) for content_type in DECODERS}
    parts = decode_channel(paths, config, decoders, epoch=epoch, pipe_wait_seconds=pipe_wait_seconds)
    parts = [p for p in parts if p.n_rows]
    if not parts:
        raise missing_channel_error(paths, config)
    return concatenate(parts, n_cols=feature_dim)


def channel_present(paths: SageMakerPaths, configs: dict[str, ChannelConfig], name: str) -> bool:
    """Whether a channel was configured or has a directory (local runs may omit inputdataconfig.json)."""
    return name in configs or paths.channel_dir(name).is_dir()
