"""The model artifact: ``model.npz`` (arrays, no pickle) + ``model.json`` (metadata, checksum), versioned.

Layout of ``model.json`` (format_version 1)::

    format_version  1
    algorithm       "fm" or "wals": which class rebuilds the model
    package_version version of this package that wrote the artifact
    arrays          {name: {"shape": [...], "dtype": "float32"}} for every array in model.npz
    checksum        {"sha256": hex, "over": [names]}: SHA-256 of the arrays' raw C-order bytes
                    (little-endian) concatenated in the order of "over"
    optimizer_state (only when the model has one) the optimizer state a warm start continues from, stored
                    beside the model in ``optimizer_state.npz``: {"file": "optimizer_state.npz", "arrays":
                    ..., "checksum": ... (as above, over that file's arrays), and the model's own keys (FM:
                    "optimizer", "steps" taken, "epochs" trained)}
    ...             the model's own metadata (``artifact_meta()``): for FM predictor_type, feature_dim,
                    num_factors, typed hyperparameters, best_epoch, the scoring formula

``read`` and ``load`` also take the built-in SageMaker FM's model (``model_algo-1``, a zip of an MXNet
checkpoint: ``algorithm.builtin_fm``) wherever they take this layout: a directory holding it, a model.tar.gz
holding it, or its own path; it loads as an FM without optimizer state. ``export_builtin`` writes an FM
artifact in the built-in's layout (a model.tar.gz holding model_algo-1). Archives are read in memory, never
extracted, and refused whole when a member name could point outside the directory (``algorithm.archives``).
Weights that are not all finite (NaN, infinity) are neither saved nor loaded: ``NonFiniteError`` names each
array with its counts. ``read`` and ``load`` take ``max_bytes``, the memory the caller gives the model files:
each file, tarball member and zip member is checked against it by its stated size before it is read, and
every error names the file at fault in one line.

Any model class with ``artifact_arrays() -> dict``, ``artifact_meta() -> dict`` (holding "algorithm") and a
classmethod ``from_artifact(meta, arrays)`` can be saved; ``load`` dispatches on ``meta["algorithm"]`` to
``MODEL_CLASSES`` (every WALS artifact loads as an ``algorithm.wals_model.WALSModel``). A class with an
optimizer state also has ``artifact_optimizer_state() -> (meta, arrays) | None`` and
``restore_optimizer_state(meta, arrays)``: the state lives in its own file, which serving neither reads nor
verifies (``load`` reads it only when asked, for a warm start).
``model.npz`` and ``optimizer_state.npz`` open with ``numpy.load(path, allow_pickle=False)``. Files are
written 0644, as SageMaker's model files are.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.metadata
import io
import json
import logging
import os
import tarfile
import tempfile
import time
import tokenize
import tomllib
import zipfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np

from algorithm import archives, builtin_fm

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
ARRAYS_FILE = "model.npz"
META_FILE = "model.json"
STATE_FILE = "optimizer_state.npz"
STATE_KEY = "optimizer_state"
TARBALL = "model.tar.gz"
BUILTIN = builtin_fm.MEMBER
MODEL_LIMIT = 1 << 36  # bytes of the model files read, unless the caller gives its own memory budget
FILE_MODE = 0o644
# meta["algorithm"] -> (module, class); imported lazily so loading an FM never imports WALS and vice versa.
MODEL_CLASSES = {"fm": ("algorithm.fm", "FactorizationMachines"), "wals": ("algorithm.wals_model", "WALSModel")}
_RESERVED = ("format_version", "package_version", "arrays", "checksum", STATE_KEY)
PYPROJECT = Path(__file__).resolve().parent.parent / "pyproject.toml"  # beside the packages in a source tree


class ArtifactError(ValueError):
    """The model directory holds no readable, intact artifact."""


class NonFiniteError(ArtifactError):
    """A model whose weights hold NaN or infinite values: neither saved nor loaded."""


def non_finite(arrays: Mapping[str, np.ndarray]) -> str | None:
    """What is not finite in the floating-point ``arrays`` (each array named, with its count of NaN and
    infinite values), or None when every value is finite."""
    found = []
    for name, array in arrays.items():
        if np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.complexfloating):
            finite = np.isfinite(array)
            if not finite.all():
                nan = int(np.isnan(array).sum())
                found.append(f"{name!r} holds {nan:,} NaN and {finite.size - int(finite.sum()) - nan:,} "
                             f"infinite of its {array.size:,} values")
    return "; ".join(found) or None


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
        digest.update(np.ascontiguousarray(arrays[name]).reshape(-1).view(np.uint8).data)  # no copy
    return digest.hexdigest()


def save(model_dir: str | os.PathLike[str], model: Any, extra_meta: Mapping[str, Any] | None = None) -> Path:
    """Write ``model.npz`` and ``model.json`` for a fitted model into ``model_dir`` (created if needed).

    Each file is written to a temporary file in the same directory and renamed into place (npz first, then
    json), so a reader never sees a half-written file and a json/npz pair from two saves fails the checksum.
    ``NonFiniteError`` (nothing written) when an array of the model or its optimizer state holds NaN or
    infinite values.
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
    state = model.artifact_optimizer_state() if hasattr(model, "artifact_optimizer_state") else None
    for name, checked in ((ARRAYS_FILE, arrays), (STATE_FILE, state[1] if state is not None else {})):
        reason = non_finite(checked)
        if reason is not None:
            raise NonFiniteError(f"Refusing to save a model with non-finite values in {name}: {reason}")
    meta.update(extra_meta or {})
    meta.update(format_version=FORMAT_VERSION, package_version=package_version(), **_described(arrays))
    if state is not None:
        state_arrays = {name: np.ascontiguousarray(array) for name, array in state[1].items()}
        meta[STATE_KEY] = {**state[0], "file": STATE_FILE, **_described(state_arrays)}
        _write_atomically(directory / STATE_FILE, _npz(state_arrays))
    _write_atomically(directory / ARRAYS_FILE, _npz(arrays))
    text = json.dumps(meta, indent=2, allow_nan=False) + "\n"
    _write_atomically(directory / META_FILE, text.encode())
    if state is None:
        (directory / STATE_FILE).unlink(missing_ok=True)  # an earlier save's state belongs to other weights
    return directory


def _described(arrays: Mapping[str, np.ndarray]) -> dict[str, Any]:
    """The "arrays" and "checksum" entries of model.json for ``arrays`` (checksummed in their order)."""
    order = list(arrays)
    return {"arrays": {name: {"shape": list(a.shape), "dtype": a.dtype.name} for name, a in arrays.items()},
            "checksum": {"sha256": checksum(arrays, order), "over": order}}


def _npz(arrays: Mapping[str, np.ndarray]) -> Callable[[IO[bytes]], None]:
    """Writes the arrays as an npz straight to a file, a bounded buffer at a time (arrays may be memory-mapped
    files larger than memory)."""
    return lambda handle: np.savez(handle, allow_pickle=False, **arrays)


def _write_atomically(path: Path, payload: bytes | Callable[[IO[bytes]], None]) -> None:
    fd, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, FILE_MODE)  # mkstemp creates 0600
        with os.fdopen(fd, "wb") as handle:
            if isinstance(payload, bytes):
                handle.write(payload)
            else:
                payload(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def read(model_dir: str | os.PathLike[str], *, max_bytes: int = MODEL_LIMIT
         ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The verified (meta, arrays) of the artifact in ``model_dir``: a directory with model.json + model.npz,
    a directory with a model.tar.gz holding them (SageMaker SDK local mode), or the path of such a tarball;
    or the built-in FM's model_algo-1 in any of these places (its meta in this layout's FM form).
    The optimizer state is not read. ``max_bytes`` bounds the bytes of files (tarball members, the built-in's
    zip members) read into memory together, each checked by its stated size before it is read."""
    path = Path(model_dir)
    return _checked(_artifact_files(path, max_bytes, (META_FILE, ARRAYS_FILE)), path, max_bytes)


def load(model_dir: str | os.PathLike[str], *, optimizer_state: bool = False, max_bytes: int = MODEL_LIMIT) -> Any:
    """The fitted model stored in ``model_dir`` (see ``read``), rebuilt by the class its algorithm names.

    ``optimizer_state=True`` (a warm start) also restores the optimizer state the artifact describes; when its
    file is missing (only model.json and model.npz were copied) the model loads without it and a warning
    says so. The built-in's model has none. ``max_bytes`` as for ``read``."""
    path = Path(model_dir)
    files = _artifact_files(path, max_bytes, (META_FILE, ARRAYS_FILE), (STATE_FILE,) if optimizer_state else ())
    meta, arrays = _checked(files, path, max_bytes)
    algorithm = meta.get("algorithm")
    if not isinstance(algorithm, str) or algorithm not in MODEL_CLASSES:
        raise ArtifactError(f"{META_FILE} in {model_dir} names algorithm {algorithm!r}; "
                            f"known: {sorted(MODEL_CLASSES)}")
    module, name = MODEL_CLASSES[algorithm]
    cls = getattr(importlib.import_module(module), name)
    try:
        model = cls.from_artifact(meta, arrays)
    except KeyError as err:
        raise ArtifactError(f"{META_FILE} in {path} has no {err.args[0]!r}: not the metadata of a {algorithm} "
                            "model") from None
    except (TypeError, ValueError) as err:
        raise ArtifactError(f"{META_FILE} and {ARRAYS_FILE} in {path} do not make a valid {algorithm} model: "
                            f"{_one_line(err)}") from None
    if optimizer_state and STATE_KEY in meta:
        _restore_optimizer_state(model, meta[STATE_KEY], files.get(STATE_FILE), path, max_bytes)
    return model


def export_builtin(model_dir: str | os.PathLike[str], tarball: str | os.PathLike[str]) -> Path:
    """Write the FM model in ``model_dir`` (anything ``read`` takes) as the built-in's ``model.tar.gz``:
    one member, ``model_algo-1`` (``algorithm.builtin_fm.write``), written atomically, 0644. Returns its path."""
    meta, arrays = read(model_dir)
    try:
        member = builtin_fm.write(meta, arrays, f"fm-wals-image {package_version()}")
    except builtin_fm.BuiltinModelError as err:
        raise ArtifactError(f"Cannot export the model in {model_dir}: {err}") from None
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo(BUILTIN)
        info.size, info.mode, info.mtime = len(member), FILE_MODE, int(time.time())
        tar.addfile(info, io.BytesIO(member))
    target = Path(tarball)
    target.parent.mkdir(parents=True, exist_ok=True)
    _write_atomically(target, buffer.getvalue())
    return target


def _restore_optimizer_state(model: Any, section: Any, payload: bytes | None, path: Path, max_bytes: int
                             ) -> None:
    if payload is None:
        log.warning("%s in %s describes an optimizer state in %s, which is not there: the model is read without "
                    "it", META_FILE, path, STATE_FILE)
        return
    if not isinstance(section, dict):
        raise ArtifactError(f"{META_FILE} in {path} has an invalid {STATE_KEY!r} entry")
    arrays = _load_npz(payload, STATE_FILE, path, max_bytes)
    _verify(section, arrays, STATE_FILE, path)
    try:
        model.restore_optimizer_state({key: value for key, value in section.items()
                                       if key not in ("file", "arrays", "checksum")}, arrays)
    except (AttributeError, KeyError, TypeError, ValueError) as err:
        raise ArtifactError(f"{STATE_FILE} in {path} is not a valid optimizer state for this model: "
                            f"{_one_line(err)}") from None


def _artifact_files(path: Path, max_bytes: int, required: tuple[str, ...], optional: tuple[str, ...] = ()
                    ) -> dict[str, bytes]:
    """The files ``required`` (ArtifactError when one is missing) and those of ``optional`` that are there,
    from the artifact at ``path``: a directory holding model.json beside them, a directory with a
    model.tar.gz, or the path of such a tarball. Where the built-in's model_algo-1 is found instead, the
    answer is {"model_algo-1": its bytes}. Together they are at most ``max_bytes``."""
    if path.is_dir() and (path / META_FILE).is_file():
        present = tuple(name for name in optional if (path / name).is_file())
        return _read_files([path / name for name in (*required, *present)], max_bytes)
    builtin = _builtin_member(path)
    if builtin is not None:
        return {BUILTIN: _read_files([builtin], max_bytes)[builtin.name]}
    if path.is_file() and _is_zip(path):
        return {BUILTIN: _read_files([path], max_bytes)[path.name]}
    if path.is_file() or (path / TARBALL).is_file():
        tarball = path if path.is_file() else path / TARBALL
        try:
            found = archives.read_tar(tarball, lambda name: name in (*required, *optional)
                                      or name.startswith(builtin_fm.MEMBER_PREFIX), {"*": MODEL_LIMIT}, max_bytes)
        except archives.ArchiveError as err:
            raise ArtifactError(_one_line(err)) from None
        missing = [name for name in required if name not in found]
        if missing and META_FILE not in found:
            member = _builtin_choice(sorted(found), tarball)
            if member is not None:
                return {BUILTIN: found[member]}
        if missing:
            raise ArtifactError(f"{tarball} does not contain {' and '.join(missing)} at its top level, nor the "
                                f"built-in FM's {BUILTIN}")
        return {name: content for name, content in found.items() if name in (*required, *optional)}
    raise ArtifactError(f"No model in {path}: expected {META_FILE} + {ARRAYS_FILE}, {TARBALL}, or the built-in "
                        f"FM's {BUILTIN}")


def _builtin_member(path: Path) -> Path | None:
    """The built-in's model_algo-* file in directory ``path``, if there is one."""
    if not path.is_dir():
        return None
    names = sorted(p.name for p in path.iterdir() if p.is_file() and p.name.startswith(builtin_fm.MEMBER_PREFIX))
    member = _builtin_choice(names, path)
    return None if member is None else path / member


def _builtin_choice(names: list[str], where: Path) -> str | None:
    """Of the model_algo-* names found in ``where``: model_algo-1, else the only one (another host's); None when
    there is none; ArtifactError when several leave it ambiguous."""
    candidates = [name for name in names if name.startswith(builtin_fm.MEMBER_PREFIX)]
    if BUILTIN in candidates or not candidates:
        return BUILTIN if candidates else None
    if len(candidates) > 1:
        raise ArtifactError(f"{where} holds several built-in models {candidates} and no {BUILTIN}: keep one")
    return candidates[0]


def _is_zip(path: Path) -> bool:
    with path.open("rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def _checked(files: Mapping[str, bytes], path: Path, max_bytes: int
             ) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The parsed model.json and the arrays of model.npz, verified against it; or the built-in's model read
    from model_algo-1."""
    if BUILTIN in files:
        source = str(path) if path.is_file() else f"{path}/{BUILTIN}"
        try:
            meta, arrays = builtin_fm.read(files[BUILTIN], source, max_bytes - len(files[BUILTIN]))
        except builtin_fm.BuiltinModelError as err:
            raise ArtifactError(_one_line(err)) from None
        log.info("Read the built-in FM's model from %s: predictor_type=%s, feature_dim=%d, num_factors=%d",
                 source, meta["predictor_type"], meta["feature_dim"], meta["num_factors"])
        return meta, arrays
    try:
        meta = json.loads(files[META_FILE])
    except ValueError as err:
        raise ArtifactError(f"{META_FILE} in {path} is not valid JSON: {err}") from None
    except RecursionError:
        raise ArtifactError(f"{META_FILE} in {path} is not valid JSON: nested too deeply") from None
    if not isinstance(meta, dict):
        raise ArtifactError(f"{META_FILE} in {path} must hold a JSON object")
    if meta.get("format_version") != FORMAT_VERSION:
        raise ArtifactError(f"{META_FILE} in {path} has format_version {meta.get('format_version')!r}; "
                            f"this build reads format_version {FORMAT_VERSION}")
    arrays = _load_npz(files[ARRAYS_FILE], ARRAYS_FILE, path, max_bytes)
    _verify(meta, arrays, ARRAYS_FILE, path)
    return meta, arrays


def _load_npz(payload: bytes, name: str, path: Path, max_bytes: int) -> dict[str, np.ndarray]:
    """The arrays of an npz file (a zip of .npy members), its members together at most ``max_bytes``."""
    if not payload.startswith((b"PK\x03\x04", b"PK\x05\x06")):  # a member first, or none (an empty npz)
        raise ArtifactError(f"{name} in {path} is not an npz file (a zip archive): it starts with {payload[:8]!r}")
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as archive:
            size = sum(info.file_size for info in archive.infolist())
    except archives.ZIP_ERRORS as err:
        raise ArtifactError(f"{name} in {path} cannot be read (truncated or corrupt): {err}") from None
    if size > max_bytes:
        raise ArtifactError(f"{name} in {path} holds {size:,} bytes of arrays, more than the {max_bytes:,} bytes "
                            "of memory the model may take")
    try:
        with np.load(io.BytesIO(payload), allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files}
    except (*archives.ZIP_ERRORS, tokenize.TokenError) as err:  # a zip of .npy files (their headers tokenized)
        raise ArtifactError(f"{name} in {path} cannot be read (truncated or corrupt): "
                            f"{type(err).__name__}: {err}") from None
    other = sorted(key for key, value in arrays.items() if not isinstance(value, np.ndarray))
    if other:  # numpy returns the bytes of a member not named .npy
        raise ArtifactError(f"{name} in {path} holds {other[0]!r}, which is not a .npy array")
    return arrays


def _verify(section: dict[str, Any], arrays: dict[str, np.ndarray], name: str, path: Path) -> None:
    """Check the arrays read from file ``name`` against their description and checksum in ``section`` of
    model.json."""
    described = section.get("arrays")
    if not isinstance(described, dict) or set(described) != set(arrays):
        listed = sorted(described) if isinstance(described, dict) else described
        raise ArtifactError(f"{name} in {path} holds arrays {sorted(arrays)} but {META_FILE} describes {listed!r}")
    for key, array in arrays.items():
        spec = described[key]
        if not isinstance(spec, dict):
            raise ArtifactError(f"{META_FILE} in {path} describes array {key!r} as {spec!r:.60}, not as "
                                '{"shape": [...], "dtype": ...}')
        if list(array.shape) != spec.get("shape") or array.dtype.name != spec.get("dtype"):
            raise ArtifactError(f"array {key!r} in {path} is {array.dtype} {array.shape}, {META_FILE} says "
                                f"{spec.get('dtype')} {spec.get('shape')}")
    check = section.get("checksum")
    check = check if isinstance(check, dict) else {}
    order = check.get("over")
    if not isinstance(order, list) or not all(isinstance(n, str) for n in order) or set(order) != set(arrays):
        raise ArtifactError(f"{META_FILE} in {path} has no valid checksum for {name}")
    if checksum(arrays, order) != check.get("sha256"):
        raise ArtifactError(f"Checksum mismatch in {path}: {name} does not match {META_FILE} "
                            "(corrupted, or the two files come from different saves)")
    reason = non_finite(arrays)
    if reason is not None:
        raise NonFiniteError(f"{name} in {path} holds non-finite values, which score as null: {reason}")


def _read_files(paths: list[Path], max_bytes: int) -> dict[str, bytes]:
    """The bytes of each file by name, once their sizes together are known to fit in ``max_bytes``."""
    try:
        sizes = {path: path.stat().st_size for path in paths}
        if sum(sizes.values()) > max_bytes:
            listed = ", ".join(f"{path.name} {size:,}" for path, size in sizes.items())
            raise ArtifactError(f"The model files in {paths[0].parent} ({listed} bytes) are more than the "
                                f"{max_bytes:,} bytes of memory the model may take")
        return {path.name: path.read_bytes() for path in paths}
    except OSError as err:
        raise ArtifactError(f"Cannot read {err.filename}: {err.strerror}") from None


def _one_line(err: Exception) -> str:
    """An exception's message on one line."""
    return " ".join(str(err).split())
