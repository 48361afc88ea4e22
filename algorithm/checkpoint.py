"""Training checkpoints: a fit's whole state in one directory, written atomically and checked before it is used;
and the stop request a fit honours between its kernel calls.

Layout of the directory (one checkpoint at a time)::

    checkpoint.json          format_version, algorithm ("fm", "wals"), identity (the hyperparameters and data
                             shape the state belongs to), progress (the fit's own counters: epoch, position,
                             steps, early-stopping state ...), file (the arrays' npz), arrays ({name: shape,
                             dtype}) and checksum ({"sha256", "over"}: SHA-256 of the arrays' C-order bytes
                             concatenated in the order of "over")
    checkpoint-<ns>.npz      the arrays (numpy.savez, opened with allow_pickle=False)

A save writes the npz under a new name (temporary file, fsync, rename), then checkpoint.json the same way (its
rename is the commit), fsyncs the directory and only then deletes the older npz files. A reader therefore sees
the previous checkpoint or the new one, and a torn or mixed pair fails the checksum and is never loaded.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
import time
import zipfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
META_FILE = "checkpoint.json"
ARRAYS_PREFIX = "checkpoint-"
FILE_MODE = 0o644
START_OVER = ("to start over instead, empty the checkpoint directory (or give the job another "
              "checkpoint_s3_uri)")


class CheckpointError(ValueError):
    """A checkpoint that exists but cannot be resumed: unreadable, torn or corrupt, or written by another
    algorithm or for other hyperparameters or data. The message names the file, the problem and what to do."""


class TrainingStopped(Exception):  # noqa: N818 - a stop request, not an error
    """A fit ended early because a stop was requested (SIGTERM); ``where`` says how far it got and
    ``checkpoint`` is the file written for a restarted job to resume from (None when checkpoints are off);
    ``resumes`` says what a restarted job resumes when another host wrote the checkpoint."""

    def __init__(self, where: str, checkpoint: Path | None, resumes: str | None = None) -> None:
        super().__init__(where)
        self.where = where
        self.checkpoint = checkpoint
        self.resumes = resumes


class StopFlag:
    """A stop request (set from a signal handler). While ``deferred`` (inside a fit, which checks ``requested``
    between kernel calls and stops at a safe point) or once the job is ``complete``, ``request`` only sets the
    flag; otherwise it raises ``TrainingStopped`` at once: there is no state yet worth saving."""

    def __init__(self) -> None:
        self.requested = False
        self._deferred = 0
        self._complete = False

    def request(self) -> None:
        self.requested = True
        if not self._deferred and not self._complete:
            raise TrainingStopped("before training started", None)

    def complete(self) -> None:
        """The job's work is done (the model written): a later request changes nothing."""
        self._complete = True

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Within this block a request is only recorded (``TrainingStopped`` is raised at the block's start
        when one was recorded before it)."""
        if self.requested:
            raise TrainingStopped("before training started", None)
        self._deferred += 1
        try:
            yield
        finally:
            self._deferred -= 1


@dataclass
class Checkpoints:
    """Where and how often a fit saves its state, and the stop request it honours.

    ``directory`` None: checkpoints are off (``load`` finds none, ``save`` writes nothing), the stop request
    still applies. ``interval_seconds``: within an epoch, a checkpoint is ``due`` once this long has passed
    since the last save (None: at epoch ends only)."""

    directory: Path | None
    interval_seconds: float | None = None
    stop: StopFlag = field(default_factory=StopFlag)
    _last_save: float = field(default_factory=time.monotonic)

    @property
    def enabled(self) -> bool:
        return self.directory is not None

    @property
    def meta_path(self) -> Path | None:
        return None if self.directory is None else self.directory / META_FILE

    @property
    def stop_requested(self) -> bool:
        return self.stop.requested

    def due(self) -> bool:
        """Whether a checkpoint within the epoch is due (checkpoints on and the interval passed)."""
        return (self.enabled and self.interval_seconds is not None
                and time.monotonic() - self._last_save >= self.interval_seconds)

    def load(self, algorithm: str, identity: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]] | None:
        """The (progress, arrays) of the checkpoint in the directory, None when there is none; CheckpointError
        when it cannot be resumed by a fit of ``algorithm`` with ``identity`` (hyperparameters, data shape)."""
        path = self.meta_path
        if path is None or not path.exists():
            return None
        meta = _read_meta(path)
        if meta.get("algorithm") != algorithm:
            raise CheckpointError(f"Checkpoint {path} was written by algorithm={meta.get('algorithm')}, and this "
                                  f"job trains algorithm={algorithm}: {START_OVER}")
        differences = _differences(meta.get("identity", {}), _plain(identity))
        if differences:
            raise CheckpointError(f"Checkpoint {path} belongs to another job ({'; '.join(differences)}): run "
                                  f"with the checkpoint's settings and data to resume it, or {START_OVER}")
        arrays = _read_arrays(path, meta)
        self._last_save = time.monotonic()
        return dict(meta["progress"]), arrays

    def save(self, algorithm: str, identity: Mapping[str, Any], progress: Mapping[str, Any],
             arrays: Mapping[str, np.ndarray]) -> Path | None:
        """Write the checkpoint (atomically, replacing the previous one); its checkpoint.json path, None when
        checkpoints are off."""
        if self.directory is None:
            return None
        started = time.monotonic()
        try:
            path = self._save(self.directory, algorithm, identity, progress, arrays)
        except OSError as err:
            raise CheckpointError(f"Cannot write a checkpoint in {self.directory} ({err}): free space there or "
                                  "run the job without CheckpointConfig") from None
        log.info("Checkpoint written: %s (%.1f MiB of arrays, %.2f s)", path,
                 sum(array.nbytes for array in arrays.values()) / 2**20, time.monotonic() - started)
        return path

    def _save(self, directory: Path, algorithm: str, identity: Mapping[str, Any], progress: Mapping[str, Any],
              arrays: Mapping[str, np.ndarray]) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob(".checkpoint*.tmp"):  # left by a save that was killed
            stale.unlink(missing_ok=True)
        contiguous = {name: np.ascontiguousarray(array) for name, array in arrays.items()}
        npz = directory / f"{ARRAYS_PREFIX}{time.time_ns()}.npz"
        _write_atomically(npz, lambda handle: np.savez(handle, allow_pickle=False, **contiguous))
        meta = {
            "format_version": FORMAT_VERSION, "algorithm": algorithm, "identity": _plain(identity),
            "progress": _plain(progress), "file": npz.name,
            "arrays": {name: {"shape": list(a.shape), "dtype": a.dtype.str} for name, a in contiguous.items()},
            "checksum": {"sha256": checksum(contiguous, list(contiguous)), "over": list(contiguous)},
        }
        text = json.dumps(meta, indent=1, sort_keys=True).encode()
        path = directory / META_FILE
        _write_atomically(path, lambda handle: handle.write(text))
        _fsync_directory(directory)
        for old in directory.glob(f"{ARRAYS_PREFIX}*.npz"):
            if old != npz:
                old.unlink(missing_ok=True)
        self._last_save = time.monotonic()
        return path


def checksum(arrays: Mapping[str, np.ndarray], order: list[str]) -> str:
    """SHA-256 (hex) of the arrays' C-order bytes concatenated in ``order`` (no copies of contiguous arrays)."""
    digest = hashlib.sha256()
    for name in order:
        digest.update(np.ascontiguousarray(arrays[name]).reshape(-1).view(np.uint8).data)
    return digest.hexdigest()


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` as JSON gives them back (numpy scalars as numbers, tuples as lists)."""
    return dict(json.loads(json.dumps(values, default=lambda v: v.item() if isinstance(v, np.generic) else str(v))))


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def _differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """One "name: checkpoint X, this job Y" per value that differs."""
    return [f"{name}: checkpoint {stored.get(name)!r}, this job {current.get(name)!r}"
            for name in sorted(set(stored) | set(current)) if not _same(stored.get(name), current.get(name))]


def _read_meta(path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CheckpointError(f"Checkpoint {path} cannot be read ({err}): it is torn or corrupt; "
                              f"{START_OVER}") from None
    required = ("format_version", "algorithm", "identity", "progress", "file", "arrays", "checksum")
    if not isinstance(meta, dict) or any(key not in meta for key in required):
        raise CheckpointError(f"Checkpoint {path} is not a checkpoint of this image (it lacks "
                              f"{[key for key in required if not isinstance(meta, dict) or key not in meta]}); "
                              f"{START_OVER}")
    if meta["format_version"] != FORMAT_VERSION:
        raise CheckpointError(f"Checkpoint {path} has format_version {meta['format_version']}, this image reads "
                              f"{FORMAT_VERSION}; {START_OVER}")
    return meta


def _read_arrays(path: Path, meta: Mapping[str, Any]) -> dict[str, np.ndarray]:
    npz = path.parent / str(meta["file"])
    if Path(str(meta["file"])).name != meta["file"]:
        raise CheckpointError(f"Checkpoint {path} names arrays file {meta['file']!r} outside its directory; "
                              f"{START_OVER}")
    try:
        with np.load(npz, allow_pickle=False) as stored:
            arrays = {name: stored[name].copy() for name in stored.files}  # arrays that own their memory
    except FileNotFoundError:
        raise CheckpointError(f"Checkpoint {path} names {npz.name}, which is missing (the checkpoint is "
                              f"incomplete); {START_OVER}") from None
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as err:
        raise CheckpointError(f"Checkpoint arrays {npz} cannot be read ({err}): they are torn or corrupt; "
                              f"{START_OVER}") from None
    described = {name: {"shape": list(a.shape), "dtype": a.dtype.str} for name, a in arrays.items()}
    expected = meta["checksum"]
    if (described != meta["arrays"] or sorted(expected.get("over", [])) != sorted(arrays)
            or checksum(arrays, list(expected["over"])) != expected.get("sha256")):
        raise CheckpointError(f"Checkpoint arrays {npz} do not match the checksum in {path.name}: they are torn "
                              f"or corrupt and were not loaded; {START_OVER}")
    return arrays


def _write_atomically(path: Path, write: Any) -> None:
    """``write(handle)`` into a temporary file beside ``path``, fsync it, rename it to ``path``."""
    fd, temp = tempfile.mkstemp(prefix=f".checkpoint.{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
