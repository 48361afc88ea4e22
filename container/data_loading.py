"""The job's choice between decoding a channel into memory and streaming it (``data_loading``): ``memory`` and
``stream`` decide; ``auto`` compares what the in-memory path would take (the channel's file sizes times what
the algorithm holds per byte) with the memory limit (the cgroup's, else the machine's memory), and streams a
Pipe-mode channel (its size is unknown)."""

from __future__ import annotations

import logging
import os

from container.channel_files import channel_files
from container.config import ChannelConfig
from container.paths import SageMakerPaths
from container.resources import memory_limit_bytes

log = logging.getLogger(__name__)

# Share of the memory limit the in-memory path may expect to use.
MEMORY_SHARE = 0.5
# A gzip file counts this many times its size (text compresses about so much).
GZIP_RATIO = 4
GIB = 2.0**30


def channel_bytes(paths: SageMakerPaths, config: ChannelConfig) -> int | None:
    """The bytes a channel holds (gzip files at GZIP_RATIO times their size), None in Pipe mode."""
    if config.input_mode.lower() == "pipe":
        return None
    directory = paths.channel_dir(config.name)
    total = 0
    for path in channel_files(directory) if directory.is_dir() else []:
        with open(path, "rb") as handle:
            gzipped = handle.read(2) == b"\x1f\x8b"
        total += path.stat().st_size * (GZIP_RATIO if gzipped else 1)
    return total


def streams(paths: SageMakerPaths, config: ChannelConfig, setting: str, bytes_per_byte: float,
            share: float = 1.0) -> bool:
    """Whether the job streams ``config``'s channel: ``setting`` is the data_loading hyperparameter,
    ``bytes_per_byte`` the in-memory path's peak memory per byte of data, ``share`` the part of the channel's rows
    this host holds (a host of several keeping every N-th row: 1/N). The choice is logged."""
    if setting != "auto":
        log.info("data_loading=%s: %s the %r channel", setting,
                 "streaming" if setting == "stream" else "decoding into memory", config.name)
        return setting == "stream"
    size = channel_bytes(paths, config)
    limit = memory_limit_bytes()
    if size is None:
        log.info("data_loading=auto: streaming the %r channel (Pipe mode: its size is unknown)", config.name)
        return True
    what = "memory limit"
    if limit is None:  # a SageMaker instance gives the container the machine's memory
        limit, what = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"), "no memory limit; the machine's memory"
    need = size * share * bytes_per_byte
    stream = need > MEMORY_SHARE * limit
    log.info("data_loading=auto: %s the %r channel (%.3f GiB of data%s, about %.3f GiB in memory; %s %.2f GiB)",
             "streaming" if stream else "decoding into memory", config.name, size / GIB,
             "" if share == 1.0 else f", this host's share {share:.3g} of it", need / GIB, what, limit / GIB)
    return stream
