"""The model artifact: ``model.npz`` (arrays, no pickle) + ``model.json`` (metadata, checksum), versioned.

Layout of ``model.json`` (format_version 1)::

    format_version  1
    algorithm       "fm" or "wals": which class rebuilds the model
    package_version version of this package that wrote the artifact
    arrays          {name: {"shape": [...], "dtype": "float32"}} for every array in model.npz
    checksum        {"sha256": hex, "over": [names]}: SHA-256 of the arrays' raw C-order bytes
                    (little-endian) concatenated in the order of "over"
    ...             the model's own metadata (``artifact_meta()``): for FM predictor_type, feature_dim,
                    num_factors, typed hyperparameters, best_epoch, the scoring formula

Any model class with ``artifact_arrays() -> dict``, ``artifact_meta() -> dict`` (holding "algorithm") and a
classmethod ``from_artifact(meta, arrays)`` can be saved; ``load`` dispatches on ``meta["algorithm"]`` to
``MODEL_CLASSES`` (every WALS artifact loads as an ``algorithm.wals_model.WALSModel``).
``model.npz`` alone opens with ``numpy.load(path, allow_pickle=False)``. Files are written 0644, as SageMaker's
model files are.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import io
import json
import os
import tarfile
import tempfile
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

FORMAT_VERSION = 1
ARRAYS_FILE = "model.npz"
META_FILE = "model.json"
TARBALL = "model.tar.gz"
FILE_MODE = 0o644
# meta["algorithm"] -> (module, class); imported lazily so loading an FM never imports WALS and vice versa.
MODEL_CLASSES = {"fm": ("algorithm.fm", "FactorizationMachines"), "wals": ("algorithm.wals_model", "WALSModel")}
_RESERVED = ("format_version", "package_version", "arrays", "checksum")
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"  # beside the packages in a source tree


class ArtifactError(ValueError):
    """The model directory holds no readable, intact artifact."""


def package_version() -> str:
    """The project's version, as its pyproject.toml states it: read from that file beside the packages when
    they run from a source tree (as the image runs them), else from the installed distribution's metadata;
    "0+unknown" when neither is there."""
    if PYPROJECT.is_file():
        with PYPROJECT.open("rb") as handle:
            return str(tomllib.load(handle)["project"]["version"])
    for distribution in importlib.metadata.packages_distributions().get(__name__.partition(".")[0], []):
        return importlib.metadata.version(distribution)
    return "0+unknown"


def checksum(arrays: Mapping[str, np.ndarray], order: list[str]) -> str:
    """SHA-256 (hex) of the arrays' C-order bytes concatenated in ``order``."""
    digest = hashlib.sha256()
    for name in order:
        digest.update(np.ascontiguousarray(arrays[name]).tobytes())
    return digest.hexdigest()


def save(model_dir: str | os.PathLike[str], model: Any, extra_meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``model.npz`` and ``model.json`` for a fitted model into ``model_dir`` (created if needed).

    Each file is written to a temporary file in the same directory and renamed into place (npz first, then
    json), so a reader never sees a half-written file and a json/npz pair from two saves fails the checksum.
    ``extra_meta`` adds keys to model.json (they may not replace the artifact's own keys). Returns the
    directory.
    """
    directory = Path(model_dir)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {name: np.ascontiguousarray(array) for name, array in model.artifact_arrays().items()}
    meta = dict(model.artifact_meta())
    if meta.get("algorithm") not in MODEL_CLASSES:
        raise ValueError(f"artifact_meta() must name an algorithm in {sorted(MODEL_CLASSES)}, "
                         f"got {meta.get('algorithm')!r}")
    clash = sorted(set(extra_meta or {}) & (set(meta) | set(_RESERVED)))
    if clash:
        raise ValueError(f"extra_meta may not set {clash}: the artifact writes them itself")
    order = list(arrays)
    meta.update(extra_meta or {})
    meta.update(
        format_version=FORMAT_VERSION,
        package_version=package_version(),
        arrays={name: {"shape": list(a.shape), "dtype": a.dtype.name} for name, a in arrays.items()},
        checksum={"sha256": checksum(arrays, order), "over": order},
    )
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)
    _write_atomically(directory / ARRAYS_FILE, buffer.getvalue())
    text = json.dumps(meta, indent=2, allow_nan=False) + "\n"
    _write_atomically(directory / META_FILE, text.encode())
    return directory


def _write_atomically(path: Path, payload: bytes) -> None:
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp creates 0600
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def read(model_dir: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The verified (meta, arrays) of the artifact in ``model_dir``: a directory with model.json + model.npz,
    a directory with a model.tar.gz holding them (SageMaker SDK local mode), or the path of such a tarball."""
    path = Path(model_dir)
    if path.is_dir() and (path / META_FILE).is_file():
        meta_bytes = _read_file(path / META_FILE)
        npz_bytes = _read_file(path / ARRAYS_FILE)
    elif path.is_file() or (path / TARBALL).is_file():
        meta_bytes, npz_bytes = _read_tarball(path if path.is_file() else path / TARBALL)
    else:
        raise ArtifactError(f"No model in {path}: expected {META_FILE} + {ARRAYS_FILE} or {TARBALL}")
    try:
        meta = json.loads(meta_bytes)
    except ValueError as err:
        raise ArtifactError(f"{META_FILE} in {path} is not valid JSON: {err}") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{META_FILE} in {path} must hold a JSON object")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{META_FILE} in {path} has format_version {meta.get('format_version')!r}; "
                            f"this build reads format_version {FORMAT_VERSION}")
    try:
        with np.load(io.BytesIO(npz_bytes), allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (ValueError, OSError) as err:
        raise ArtifactError(f"{ARRAYS_FILE} in {path} cannot be read: {err}") from None
    _verify(meta, arrays, path)
    return meta, arrays


def _verify(meta: dict[str, Any], arrays: dict[str, np.ndarray], path: Path) -> None:
    described = meta.get("arrays")
    if not isinstance(described, dict) or set(described) != set(arrays):
        listed = sorted(described) if isinstance(described, dict) else described
        raise ArtifactError(f"{ARRAYS_FILE} in {path} holds arrays {sorted(arrays)} but {META_FILE} "
                            f"describes {listed!r}")
    for name, array in arrays.items():
        spec = described[name]
        if list(array.shape) != spec.get("shape") or array.dtype.name != spec.get("dtype"):
            raise ArtifactError(f"array {name!r} in {path} is {array.dtype} {array.shape}, {META_FILE} says "
                                f"{spec.get('dtype')} {spec.get('shape')}")
    check = meta.get("checksum") or {}
    order = check.get("over")
    if not isinstance(order, list) or set(order) != set(arrays):
        raise ArtifactError(f"{META_FILE} in {path} has no valid checksum")
    if checksum(arrays, order) != check.get("sha256"):
        raise ArtifactError(f"Checksum mismatch in {path}: {ARRAYS_FILE} does not match {META_FILE} "
                            "(corrupted, or the two files come from different saves)")


def load(model_dir: str | os.PathLike[str]) -> Any:
    """The fitted model stored in ``model_dir`` (see ``read``), rebuilt by the class its algorithm names."""
    meta, arrays = read(model_dir)
    algorithm = meta.get("algorithm")
    if algorithm not in MODEL_CLASSES:
        raise ArtifactError(f"{META_FILE} in {model_dir} names algorithm {algorithm!r}; "
                            f"known: {sorted(MODEL_CLASSES)}")
    module, name = MODEL_CLASSES[algorithm]
    cls = getattr(importlib.import_module(module), name)
    try:
        return cls.from_artifact(meta, arrays)
    except (KeyError, TypeError, ValueError) as err:
        raise ArtifactError(f"The {algorithm} model in {model_dir} cannot be rebuilt: {err}") from None


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise ArtifactError(f"Cannot read {path}: {err}") from None


def _read_tarball(path: Path) -> tuple[bytes, bytes]:
    """model.json and model.npz from the top level of a tarball (members are read, never extracted)."""
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                name = os.path.normpath(member.name)
                if member.isfile() and name in (META_FILE, ARRAYS_FILE):
                    handle = tar.extractfile(member)
                    if handle is not None:
                        found[name] = handle.read()
    except (OSError, tarfile.TarError) as err:
        raise ArtifactError(f"Cannot read {path}: {err}") from None
    missing = [name for name in (META_FILE, ARRAYS_FILE) if name not in found]
    if missing:
        raise ArtifactError(f"{path} does not contain {' and '.join(missing)} at its top level")
    return found[META_FILE], found[ARRAYS_FILE]
