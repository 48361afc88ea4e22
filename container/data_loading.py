"""The ``data_loading`` hyperparameter: whether a job decodes its channels into memory or streams them."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from container.channel_files import channel_files
from container.channels import GZIP_MAGIC
from container.config import ChannelConfig
from container.paths import SageMakerPaths
from container.resources import memory_limit_bytes

log = logging.getLogger("train.data_loading")

MEMORY, STREAM, AUTO = "memory", "stream", "auto"
MEMORY_SHARE = 0.9  # of the memory limit the model and the data may take in memory (as the memory check)
GZIP_EXPANSION = 5  # decoded bytes per gzip file byte assumed when choosing


def channel_bytes(paths: SageMakerPaths, config: ChannelConfig) -> int | None:
    """The bytes a File-mode channel's files hold (gzip files counted ``GZIP_EXPANSION`` times); None in Pipe
    mode, whose size is unknown until read."""
    if config.input_mode.lower() == "pipe":
        return None
    directory = paths.channel_dir(config.name)
    total = 0
    for path in channel_files(directory) if directory.is_dir() else []:
        with open(path, "rb") as file:
            gzipped = file.read(2) == GZIP_MAGIC
        total += path.stat().st_size * (GZIP_EXPANSION if gzipped else 1)
    return total


def choose(paths: SageMakerPaths, channels: Iterable[ChannelConfig], setting: str, model_bytes: int) -> str:
    """``memory`` or ``stream`` for ``data_loading=setting``: ``auto`` streams when a channel is in Pipe mode
    or when the model (``model_bytes``) and the channels' files exceed ``MEMORY_SHARE`` of the memory limit.
    The choice and its reason are logged."""
    if setting != AUTO:
        log.info("data_loading=%s: the data is %s", setting,
                 "streamed block by block every epoch" if setting == STREAM else "decoded into memory")
        return setting
    sizes = {config.name: channel_bytes(paths, config) for config in channels}
    piped = sorted(name for name, size in sizes.items() if size is None)
    if piped:
        log.info("data_loading=auto: streaming, as channel(s) %s are in Pipe mode (size unknown until read); "
                 "set data_loading=memory to decode them into memory", piped)
        return STREAM
    data = sum(size or 0 for size in sizes.values())
    limit = memory_limit_bytes()
    gib = 2.0**30
    if limit is not None and model_bytes + data > MEMORY_SHARE * limit:
        log.info("data_loading=auto: streaming, as the data files (%.3f GiB) and the model (%.3f GiB) exceed "
                 "%.0f %% of the memory limit (%.2f GiB)", data / gib, model_bytes / gib, 100 * MEMORY_SHARE,
                 limit / gib)
        return STREAM
    log.info("data_loading=auto: decoding into memory, as the data files (%.3f GiB) and the model (%.3f GiB) "
             "fit in the memory limit (%s)", data / gib, model_bytes / gib,
             "none" if limit is None else f"{limit / gib:.2f} GiB")
    return MEMORY
