"""Which files make up a channel: the one rule File mode reads by and the client's local Pipe mode feeds by.

Standard library only, so the client imports it without numba.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

MANIFEST_SUFFIX = ".amazon.manifest"
NAMED_SKIPS = 5  # skipped paths a log line names; the rest are counted


def channel_files(source: Path) -> list[Path]:
    """``source`` itself if it is a file; else the regular, non-hidden files under it, recursively (links
    followed), in sorted path order, manifest files skipped.

    Every directory and file is read once, by identity (device and inode), through its own path when it is
    inside the channel: a link to a directory or file of the channel, a link back to a directory the walk has
    seen (a loop such as ``loop -> .``) and a second hard link to a file are skipped, and a log line says
    which."""
    if source.is_file():
        return [source]
    own_dirs, own_files = _own_entries(source)
    files: list[Path] = []
    seen_dirs = {_identity(source)}
    seen_files: set[tuple[int, int]] = set()
    skipped_dirs: list[str] = []
    skipped_files: list[str] = []
    for root, dirs, names in os.walk(source, followlinks=True):
        kept = []
        for name in sorted(d for d in dirs if not d.startswith(".")):
            path = Path(root) / name
            identity = _identity(path)
            if identity in seen_dirs or (path.is_symlink() and identity in own_dirs):
                skipped_dirs.append(str(path))
                continue
            seen_dirs.add(identity)
            kept.append(name)
        dirs[:] = kept
        for name in sorted(names):
            path = Path(root) / name
            if name.startswith(".") or not path.is_file():
                continue
            if name.endswith(MANIFEST_SUFFIX):
                log.warning("Skipping manifest file %s (a ManifestFile channel must be downloaded first)", path)
                continue
            identity = _identity(path)
            if identity in seen_files or (path.is_symlink() and identity in own_files):
                skipped_files.append(str(path))
                continue
            seen_files.add(identity)
            files.append(path)
    _log_skipped(skipped_dirs, "link(s) to a directory read through another path (a loop, or a second path "
                               "to it)")
    _log_skipped(skipped_files, "second path(s) to a file read through another path (a symlink or hard link)")
    return sorted(files)


def _own_entries(source: Path) -> tuple[set[tuple[int, int]], set[tuple[int, int]]]:
    """The identities of the directories and files under ``source`` reached without following a link."""
    own_dirs: set[tuple[int, int]] = set()
    own_files: set[tuple[int, int]] = set()
    for root, dirs, names in os.walk(source):
        dirs[:] = [d for d in dirs if not d.startswith(".") and not (Path(root) / d).is_symlink()]
        own_dirs.update(_identity(Path(root) / d) for d in dirs)
        own_files.update(_identity(Path(root) / n) for n in names if not (Path(root) / n).is_symlink()
                         and (Path(root) / n).is_file())
    return own_dirs, own_files


def _identity(path: Path) -> tuple[int, int]:
    status = path.stat()
    return status.st_dev, status.st_ino


def _log_skipped(paths: list[str], what: str) -> None:
    if paths:
        named = ", ".join(sorted(paths)[:NAMED_SKIPS])
        more = f" and {len(paths) - NAMED_SKIPS} more" if len(paths) > NAMED_SKIPS else ""
        log.warning("Skipped %d %s, each read once: %s%s", len(paths), what, named, more)
