"""Reading training channels: File mode (every regular, non-hidden file, recursively, sorted) and Pipe mode
(the FIFOs ``<channel>_<epoch>``), gzip transparently, each body decoded by the channel's content type."""

from __future__ import annotations

import gzip
import logging
import os
import stat
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

from container.config import ChannelConfig
from container.errors import ChannelError, DataError
from container.formats.registry import decode
from container.formats.dataset import Dataset, concatenate
from container.paths import SageMakerPaths

log = logging.getLogger(__name__)

GZIP_MAGIC = b"\x1f\x8b"
MANIFEST_SUFFIX = ".amazon.manifest"
PIPE_WAIT_SECONDS = 600.0


def channel_files(directory: Path) -> list[Path]:
    """Regular, non-hidden files under ``directory``, recursively, in sorted path order."""
    files = []
    for root, dirs, names in os.walk(directory, followlinks=True):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            path = Path(root) / name
            if name.startswith(".") or not path.is_file():
                continue
            if name.endswith(MANIFEST_SUFFIX):
                log.warning("Skipping manifest file %s (a ManifestFile channel must be downloaded first)", path)
                continue
            files.append(path)
    return sorted(files)


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
    from container.formats.recordio import iter_payloads

    for payload in iter_payloads(body, source=source):
        yield bytes(payload)


def _decode(body: bytes, config: ChannelConfig, source: str, feature_dim: int | None) -> list[Dataset]:
    parts = []
    for chunk in _unwrap(_maybe_gunzip(body, source), config, source):
        chunk = _maybe_gunzip(chunk, source)
        if chunk.strip():
            parts.append(
                decode(config.content_type, chunk, source=source, feature_dim=feature_dim,
                                with_labels=True)
            )
    return parts


def _read_pipe(path: Path, wait_seconds: float) -> bytes:
    deadline = time.monotonic() + wait_seconds
    while not path.exists():
        if time.monotonic() > deadline:
            raise ChannelError(f"Pipe-mode channel FIFO {path} did not appear within {wait_seconds:.0f} s")
        time.sleep(0.05)
    if not stat.S_ISFIFO(path.stat().st_mode):
        log.warning("%s is not a FIFO; reading it as a regular file", path)
    with open(path, "rb") as fifo:
        return fifo.read()


def _missing(channel: str, where: Path, mode: str) -> ChannelError:
    return ChannelError(
        f"Channel {channel!r} has no data ({mode} mode, looked in {where}). Usual causes: the S3 prefix is "
        f"empty or misspelt, the channel is named differently in the job (expected {channel!r}), or the "
        "files are hidden (names starting with '.')."
    )


def read_channel(
    paths: SageMakerPaths,
    config: ChannelConfig,
    *,
    feature_dim: int | None,
    epoch: int = 0,
    pipe_wait_seconds: float = PIPE_WAIT_SECONDS,
) -> Dataset:
    """All rows of one channel as a single Dataset (Pipe mode reads the FIFO of ``epoch``)."""
    if config.input_mode.lower() == "pipe":
        fifo = paths.pipe_path(config.name, epoch)
        log.info("Reading channel %r from FIFO %s", config.name, fifo)
        parts = _decode(_read_pipe(fifo, pipe_wait_seconds), config, str(fifo), feature_dim)
        where, mode = fifo, "Pipe"
    else:
        directory = paths.channel_dir(config.name)
        files = channel_files(directory) if directory.is_dir() else []
        log.info("Reading channel %r: %d file(s) under %s as %s", config.name, len(files), directory,
                 config.content_type)
        parts = [part for f in files for part in _decode(f.read_bytes(), config, str(f), feature_dim)]
        where, mode = directory, "File"
    parts = [p for p in parts if p.n_rows]
    if not parts:
        raise _missing(config.name, where, mode)
    return concatenate(parts, n_cols=feature_dim)


def channel_present(paths: SageMakerPaths, configs: dict[str, ChannelConfig], name: str) -> bool:
    """Whether a channel was configured or has a directory (local runs may omit inputdataconfig.json)."""
    return name in configs or paths.channel_dir(name).is_dir()
