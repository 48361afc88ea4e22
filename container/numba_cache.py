"""numba's kernel cache on a read-only root filesystem.

numba only uses a cache directory it can write to (it checks by creating a file there), so a container run
with ``--read-only`` and the image's ``NUMBA_CACHE_DIR`` would stop with "cannot cache function". When that
directory cannot be written, ``writable_cache`` makes a new directory under the temporary directory
(``$TMPDIR``, else ``/tmp``) holding a link to each of its files (nothing is copied) and points
``NUMBA_CACHE_DIR`` there: numba loads every kernel the image compiled through the links and writes nothing to
the image; a kernel it must compile (another CPU model) is written there (numba replaces a file by renaming a
new one over it, so a link is replaced, never written through) and kept for the life of the container. It
must run before numba is imported (numba reads the variable once); processes started later (gunicorn's
workers) inherit the variable.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from container.errors import ClientError

VARIABLE = "NUMBA_CACHE_DIR"

log = logging.getLogger(__name__)


class CacheDirError(ClientError):
    """Neither the numba cache directory nor the temporary directory can be written."""


def writable_cache() -> Path | None:
    """The numba cache directory to use, set in ``$NUMBA_CACHE_DIR``: the image's when it can be written (None
    when unset: numba chooses), else a directory of links to its files under the temporary directory."""
    configured = os.environ.get(VARIABLE)
    if not configured:
        return None
    source = Path(configured)
    if _writable(source):
        return source
    try:
        overlay = Path(tempfile.mkdtemp(prefix="numba-cache-"))
        for directory, _, names in os.walk(source):
            target = overlay / Path(directory).relative_to(source)
            target.mkdir(exist_ok=True)
            for name in names:
                (target / name).symlink_to(Path(directory) / name)
    except OSError as err:
        raise CacheDirError(f"numba's cache directory {source} is read-only and the temporary directory "
                            f"{tempfile.gettempdir()} cannot be written ({err.strerror}): mount a writable "
                            "directory there (docker run --tmpfs /tmp)") from None
    os.environ[VARIABLE] = str(overlay)
    log.info("numba's cache %s is read-only: its kernels are read through links in %s", source, overlay)
    return overlay


def _writable(directory: Path) -> bool:
    try:
        directory.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=directory).close()
    except OSError:
        return False
    return True
