"""A table of malformed model artifacts, each written into a directory the way it would reach the container (the
``model`` directory of an endpoint, the ``model`` channel of a warm start), with what its one-line error must
say: the unit, serving and warm-start tests all run it."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from algorithm import artifact
from algorithm.fm import FactorizationMachines
from algorithm.wals import WALS
from algorithm.wals_model import IdMap, WALSModel

FEATURE_DIM, NUM_FACTORS = 8, 2


@dataclass(frozen=True)
class Corruption:
    """``write(directory)`` puts the malformed artifact there; the error names ``file`` and says ``says``.
    ``state_only``: only a warm start reads what is broken (serving never reads the optimizer state)."""

    name: str
    write: Callable[[Path], None]
    file: str
    says: str
    state_only: bool = False


def fm_model() -> FactorizationMachines:
    rng = np.random.default_rng(0)
    X = sp.random(60, FEATURE_DIM, density=0.5, format="csr", random_state=0, dtype=np.float32)
    y = (rng.random(60) < 0.5).astype(np.float32)
    model = FactorizationMachines(feature_dim=FEATURE_DIM, num_factors=NUM_FACTORS,
                                  predictor_type="binary_classifier", epochs=1, mini_batch_size=20, num_threads=1,
                                  optimizer="adam")
    return model.fit(X, y)


def wals_model() -> WALSModel:
    entries = sp.random(6, 5, density=0.6, format="csr", random_state=0, dtype=np.float32)
    wals = WALS(embedding_dimension=2, max_sweeps=1).fit(entries)
    return WALSModel(wals, IdMap.range(6), IdMap.range(5), entries)


def _saved(model: Callable[[], Any]) -> Callable[[Path], dict[str, Any]]:
    def write(directory: Path) -> dict[str, Any]:
        artifact.save(directory, model())
        return json.loads((directory / artifact.META_FILE).read_text())
    return write


_fm, _wals = _saved(fm_model), _saved(wals_model)


def _arrays(directory: Path, name: str = artifact.ARRAYS_FILE) -> dict[str, np.ndarray]:
    with np.load(directory / name) as npz:
        return {key: npz[key] for key in npz.files}


def _resave(directory: Path, meta: dict[str, Any], arrays: dict[str, np.ndarray] | None = None) -> None:
    """model.json (and model.npz when ``arrays`` is given) rewritten with a matching description and checksum,
    so that only the corruption meant is there."""
    if arrays is not None:
        np.savez(directory / artifact.ARRAYS_FILE, **arrays)
        meta["arrays"] = {k: {"shape": list(a.shape), "dtype": a.dtype.name} for k, a in arrays.items()}
        meta["checksum"] = {"sha256": artifact.checksum(arrays, list(arrays)), "over": list(arrays)}
    (directory / artifact.META_FILE).write_text(json.dumps(meta))


def _meta(base: Callable[[Path], dict[str, Any]], change: Callable[[dict[str, Any]], None]
          ) -> Callable[[Path], None]:
    def write(directory: Path) -> None:
        meta = base(directory)
        change(meta)
        _resave(directory, meta)
    return write


def _array(base: Callable[[Path], dict[str, Any]], change: Callable[[dict[str, np.ndarray]], None]
           ) -> Callable[[Path], None]:
    def write(directory: Path) -> None:
        meta = base(directory)
        arrays = _arrays(directory)
        change(arrays)
        _resave(directory, meta, arrays)
    return write


def _bytes(name: str, change: Callable[[bytes], bytes], base: Callable[[Path], Any] = _fm) -> Callable[[Path], None]:
    def write(directory: Path) -> None:
        base(directory)
        path = directory / name
        path.write_bytes(change(path.read_bytes()))
    return write


def _set(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(target: dict[str, Any]) -> None:
        target[key] = value
    return change


def _hp(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(meta: dict[str, Any]) -> None:
        meta["hyperparameters"][key] = value
    return change


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    def change(target: dict[str, Any]) -> None:
        del target[key]
    return change


def _poke(name: str, index: tuple[int, ...], value: float) -> Callable[[dict[str, np.ndarray]], None]:
    def change(arrays: dict[str, np.ndarray]) -> None:
        arrays[name][index] = value
    return change


def _cast(name: str, dtype: str) -> Callable[[dict[str, np.ndarray]], None]:
    def change(arrays: dict[str, np.ndarray]) -> None:
        arrays[name] = arrays[name].astype(dtype)
    return change


def _reshape(name: str, shape: tuple[int, ...]) -> Callable[[dict[str, np.ndarray]], None]:
    def change(arrays: dict[str, np.ndarray]) -> None:
        arrays[name] = np.zeros(shape, np.float32)
    return change


def _state(change: Callable[[dict[str, Any], dict[str, np.ndarray]], None]) -> Callable[[Path], None]:
    def write(directory: Path) -> None:
        meta = _fm(directory)
        arrays = _arrays(directory, artifact.STATE_FILE)
        change(meta[artifact.STATE_KEY], arrays)
        np.savez(directory / artifact.STATE_FILE, **arrays)
        section = meta[artifact.STATE_KEY]
        section["arrays"] = {k: {"shape": list(a.shape), "dtype": a.dtype.name} for k, a in arrays.items()}
        section["checksum"] = {"sha256": artifact.checksum(arrays, list(arrays)), "over": list(arrays)}
        (directory / artifact.META_FILE).write_text(json.dumps(meta))
    return write


def _state_nan(section: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    first = sorted(arrays)[0]
    arrays[first] = arrays[first].copy()
    arrays[first].flat[0] = np.nan


def _state_shape(section: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
    first = sorted(arrays)[0]
    arrays[first] = np.zeros(3, np.float32)


def _tarball(members: Callable[[Path], dict[str, bytes]], change: Callable[[bytes], bytes] = lambda b: b
             ) -> Callable[[Path], None]:
    def write(directory: Path) -> None:
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
            for name, payload in members(directory).items():
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
        for path in list(directory.iterdir()):
            path.unlink()
        (directory / artifact.TARBALL).write_bytes(change(buffer.getvalue()))
    return write


def _fm_files(directory: Path) -> dict[str, bytes]:
    _fm(directory)
    return {path.name: path.read_bytes() for path in sorted(directory.iterdir())}


def _builtin(change: Callable[[bytes], bytes]) -> Callable[[Path], None]:
    def write(directory: Path) -> None:
        source = directory / "source"
        _fm(source)
        artifact.export_builtin(source, directory / artifact.TARBALL)
        shutil.rmtree(source)
        with tarfile.open(directory / artifact.TARBALL) as tar:
            handle = tar.extractfile(artifact.BUILTIN)
            assert handle is not None
            payload = handle.read()
        (directory / artifact.TARBALL).unlink()
        (directory / artifact.BUILTIN).write_bytes(change(payload))
    return write


def _builtin_member(member: str, change: Callable[[bytes], bytes]) -> Callable[[bytes], bytes]:
    """A model_algo-1 zip with one member changed."""
    def rewrite(payload: bytes) -> bytes:
        out = io.BytesIO()
        with zipfile.ZipFile(io.BytesIO(payload)) as source, zipfile.ZipFile(out, "w") as target:
            for info in source.infolist():
                data = source.read(info)
                target.writestr(info.filename, change(data) if info.filename == member else data)
        return out.getvalue()
    return rewrite


def _half(payload: bytes) -> bytes:
    return payload[: len(payload) // 2]


M, A, S = artifact.META_FILE, artifact.ARRAYS_FILE, artifact.STATE_FILE
CORRUPTIONS = [
    Corruption("npz-truncated", _bytes(A, _half), A, "truncated or corrupt"),
    Corruption("npz-empty", _bytes(A, lambda b: b""), A, "is not an npz file"),
    Corruption("npz-garbage", _bytes(A, lambda b: b"\x93NUMPY garbage"), A, "is not an npz file"),
    Corruption("npz-tail-cut", _bytes(A, lambda b: b[:-30]), A, "truncated or corrupt"),
    Corruption("json-truncated", _bytes(M, _half), M, "is not valid JSON"),
    Corruption("json-not-utf8", _bytes(M, lambda b: b.replace(b'"fm"', b'"f\xffm"')), M, "is not valid JSON"),
    Corruption("json-deep", _bytes(M, lambda b: b"[" * 100_000), M, "is not valid JSON"),
    Corruption("json-list", _bytes(M, lambda b: b"[1, 2]"), M, "must hold a JSON object"),
    Corruption("json-format-version", _meta(_fm, _set("format_version", "1")), M, "format_version '1'"),
    Corruption("json-no-algorithm", _meta(_fm, _drop("algorithm")), M, "names algorithm None"),
    Corruption("json-hyperparameters-list", _meta(_fm, _set("hyperparameters", [8, 2])), M,
               "hyperparameters must be a JSON object, found list"),
    Corruption("json-no-hyperparameters", _meta(_fm, _drop("hyperparameters")), M, "has no 'hyperparameters'"),
    Corruption("json-feature-dim-mismatch", _meta(_fm, _hp("feature_dim", FEATURE_DIM + 1)), M,
               "array 'w' has shape (8,), expected (9,)"),
    Corruption("json-feature-dim-text", _meta(_fm, _hp("feature_dim", "eight")), M, "feature_dim"),
    Corruption("json-no-arrays", _meta(_fm, _drop("arrays")), M, "describes None"),
    Corruption("json-no-checksum", _meta(_fm, _drop("checksum")), M, "has no valid checksum"),
    Corruption("checksum-mismatch", _meta(_fm, _set("checksum", {"sha256": "0" * 64, "over": ["w0", "w", "V"]})),
               A, "Checksum mismatch"),
    Corruption("array-missing", _array(_fm, _drop("V")), A, "array 'V' has shape missing"),
    Corruption("array-shape", _array(_fm, _reshape("V", (FEATURE_DIM, NUM_FACTORS + 1))), A,
               "array 'V' has shape (8, 3), expected (8, 2)"),
    Corruption("array-dtype-int", _array(_fm, _cast("V", "int8")), A, "array 'V' is int8"),
    Corruption("array-dtype-float64", _array(_fm, _cast("w", "float64")), A, "array 'w' is float64"),
    Corruption("array-dtype-text", _array(_fm, _cast("w0", "U4")), A, "array 'w0' is <U4"),
    Corruption("array-nan", _array(_fm, _poke("w", (3,), np.nan)), A, "'w' holds 1 NaN and 0 infinite"),
    Corruption("array-inf", _array(_fm, _poke("V", (0, 1), -np.inf)), A, "'V' holds 0 NaN and 1 infinite"),
    Corruption("state-truncated", _bytes(S, _half), S, "truncated or corrupt", state_only=True),
    Corruption("state-section-list", _meta(_fm, _set(artifact.STATE_KEY, [1])), M, "invalid 'optimizer_state'",
               state_only=True),
    Corruption("state-nan", _state(_state_nan), S, "holds 1 NaN", state_only=True),
    Corruption("state-shape", _state(_state_shape), S, "optimizer state", state_only=True),
    Corruption("tar-truncated", _tarball(_fm_files, _half), artifact.TARBALL, "Cannot read"),
    Corruption("tar-garbage", _tarball(_fm_files, lambda b: b"\x1f\x8b" + b"\x00" * 64), artifact.TARBALL,
               "Cannot read"),
    Corruption("tar-without-model", _tarball(lambda d: {"notes.txt": b"hello"}), artifact.TARBALL,
               "does not contain model.json and model.npz"),
    Corruption("tar-traversal", _tarball(lambda d: {"../model.json": b"{}"}), artifact.TARBALL, "'..'"),
    Corruption("tar-npz-truncated", _tarball(lambda d: {**_fm_files(d), A: _half(_fm_files(d)[A])}), A,
               "truncated or corrupt"),
    Corruption("builtin-truncated", _builtin(_half), artifact.BUILTIN, "zip archive"),
    Corruption("builtin-garbage", _builtin(lambda b: b"PK\x03\x04" + b"\x00" * 40), artifact.BUILTIN,
               "zip archive"),
    Corruption("builtin-params-truncated", _builtin(_builtin_member("params", _half)), artifact.BUILTIN,
               "truncated"),
    Corruption("builtin-meta-list", _builtin(_builtin_member("meta.json", lambda b: b"[]")), artifact.BUILTIN,
               "must hold a JSON object"),
    Corruption("wals-factors-shape", _array(_wals, _reshape("row_factors", (6, 3))), A,
               "array 'row_factors' has shape (6, 3), expected (6, 2)"),
    Corruption("wals-nan", _array(_wals, _poke("col_factors", (1, 1), np.nan)), A, "'col_factors' holds 1 NaN"),
    Corruption("wals-ids", _array(_wals, _set("row_ids", np.arange(4))), A, "id maps (4, 5)"),
    Corruption("wals-seen", _array(_wals, _set("seen_indptr", np.array([0, 99, 1, 1, 1, 1, 1]))), A, "seen"),
    Corruption("wals-no-num-rows", _meta(_wals, _drop("num_rows")), M, "has no 'num_rows'"),
]
