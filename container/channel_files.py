"""Which files make up a channel: the one rule File mode reads by and the client's local Pipe mode feeds by.

Standard library only, so the client imports it without numba.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

MANIFEST_SUFFIX = ".amazon.manifest"


def channel_files(source: Path) -> list[Path]:
    """``source`` itself if it is a file; else the regular, non-hidden files under it, recursively (links
    followed), in sorted path order, manifest files skipped."""
    if source.is_file():
        return [source]
    files = []
    for root, dirs, names in os.walk(source, followlinks=True):
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
