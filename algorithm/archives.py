"""Members of tar and zip archives read into memory, never extracted: every member name is checked first (no
absolute paths, no ``..``, no links pointing out), and each member read is bounded in size."""

from __future__ import annotations

import io
import lzma
import os
import posixpath
import tarfile
import zipfile
import zlib
from collections.abc import Callable, Mapping
from pathlib import Path

MAX_MEMBERS = 10_000
# What zipfile raises on a damaged archive: besides BadZipFile, a bad member name (UnicodeDecodeError, a
# ValueError), an offset out of the file (ValueError), compressed data that does not inflate (zlib.error,
# LZMAError, OSError), a truncated member (EOFError), an encrypted or unsupported one (RuntimeError,
# NotImplementedError).
ZIP_ERRORS = (OSError, EOFError, ValueError, RuntimeError, zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error,
              lzma.LZMAError)


class ArchiveError(ValueError):
    """An archive that cannot be read safely (the message names the archive and the member)."""


def unsafe_name(name: str) -> str | None:
    """Why a member name could write outside the directory it is extracted to, or None when it is safe."""
    if not name or "\x00" in name:
        return "an empty name or a NUL byte"
    normalized = name.replace("\\", "/")
    if normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":"):
        return "an absolute path"
    if ".." in normalized.split("/"):
        return "a '..' component"
    return None


def top_level(name: str) -> str:
    """A member name without a leading ``./`` (``./model.json`` -> ``model.json``)."""
    return posixpath.normpath(name.replace("\\", "/"))


def read_tar(path: Path, wanted: Callable[[str], bool], limits: Mapping[str, int],
             budget: int | None = None) -> dict[str, bytes]:
    """The regular-file members at the top level of the tarball ``path`` whose names ``wanted`` accepts, by name.
    Every member is checked (ArchiveError names the first unsafe one, and nothing is returned); a wanted member
    larger than ``limits`` (by name, else ``limits["*"]``), or than what is left of ``budget`` (bytes of all
    wanted members together), is refused by the size its header states, before it is read."""
    found: dict[str, bytes] = {}
    left = budget
    try:
        with tarfile.open(path, "r:*") as tar:
            for count, member in enumerate(tar, start=1):
                if count > MAX_MEMBERS:
                    raise ArchiveError(f"{path} has more than {MAX_MEMBERS} members; a model archive has a few")
                _check_tar_member(path, member)
                name = top_level(member.name)
                if not (member.isfile() and "/" not in name and wanted(name)):
                    continue
                _check_size(path, name, member.size, limits)
                left = _spend(path, name, member.size, left, budget)
                handle = tar.extractfile(member)
                if handle is not None:
                    found[name] = handle.read()
    except (OSError, EOFError, tarfile.TarError) as err:
        raise ArchiveError(f"Cannot read {path}: {err}") from None
    return found


def _check_tar_member(path: Path, member: tarfile.TarInfo) -> None:
    reason = unsafe_name(member.name)
    if reason is None and (member.issym() or member.islnk()):
        target = member.linkname if member.islnk() else posixpath.join(posixpath.dirname(member.name),
                                                                       member.linkname)
        reason = unsafe_name(target) and f"a link to {member.linkname!r}"
    if reason is not None:
        raise ArchiveError(f"{path} has a member {member.name!r} with {reason}: refused, nothing was extracted")


def read_zip(payload: bytes, source: str, limits: Mapping[str, int], budget: int | None = None
             ) -> dict[str, bytes]:
    """Every file of the zip archive ``payload`` (named ``source`` in errors) by name, once all member names are
    checked; a member larger than ``limits`` (by name, else ``limits["*"]``), or than what is left of
    ``budget`` (bytes of all members together), is refused before it is read (zipfile reads no more than the
    size the archive states)."""
    left = budget
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            members = archive.infolist()
            if len(members) > MAX_MEMBERS:
                raise ArchiveError(f"{source} has {len(members)} members; a model archive has a few")
            for info in members:
                reason = unsafe_name(info.filename)
                if reason is not None:
                    raise ArchiveError(f"{source} has a member {info.filename!r} with {reason}: refused, "
                                       "nothing was extracted")
            found: dict[str, bytes] = {}
            for info in members:
                if info.is_dir():
                    continue
                name = top_level(info.filename)
                _check_size(Path(source), name, info.file_size, limits)
                left = _spend(Path(source), name, info.file_size, left, budget)
                found[name] = archive.read(info)
            return found
    except ArchiveError:
        raise
    except ZIP_ERRORS as err:
        raise ArchiveError(f"Cannot read {source} as a zip archive: {err}") from None


def _check_size(path: os.PathLike[str], name: str, size: int, limits: Mapping[str, int]) -> None:
    limit = limits.get(name, limits["*"])
    if size > limit:
        raise ArchiveError(f"{path}: member {name!r} is {size} bytes, more than the {limit} a model file may be")


def _spend(path: os.PathLike[str], name: str, size: int, left: int | None, budget: int | None) -> int | None:
    """What is left of the ``budget`` once member ``name`` of ``size`` bytes is read; ArchiveError when it does
    not fit."""
    if left is None:
        return None
    if size > left:
        raise ArchiveError(f"{path}: member {name!r} is {size:,} bytes; with the members before it, more than the "
                           f"{budget:,} bytes of memory the model may take")
    return left - size
