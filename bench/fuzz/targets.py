"""The fuzz targets: each feeds one input to a public decode entry point (the one serving or training calls).

An input's first byte chooses the call's options (with or without labels, a feature_dim or none, which file or
layout); the rest is the body. A target returns normally or raises one of its ``expected`` exceptions (the
project's user errors); any other exception is a finding. ``split`` cuts the artifact inputs into
files at ``SEPARATOR``, so seeds and mutations stay plain bytes.
"""

from __future__ import annotations

import functools
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from algorithm.artifact import ArtifactError
from algorithm.hyperparameters import HyperparameterError
from container.errors import ClientError
from container.paths import SageMakerPaths

SEPARATOR = b"\n\x00--8<--\x00\n"
# feature_dim choices of the decoders: None (training without one, a body's own width), small, a model's.
FEATURE_DIMS = (None, 1, 4, 1000)
SOURCE = "fuzz"


@dataclass(frozen=True)
class Target:
    """One decoder under fuzzing: ``run(data)`` decodes, ``expected`` are the exceptions it may raise."""

    name: str
    run: Callable[[bytes], object]
    expected: tuple[type[BaseException], ...]
    doc: str


def split(body: bytes, parts: int) -> list[bytes]:
    """``body`` cut at SEPARATOR into exactly ``parts`` pieces (missing ones empty, extra ones joined into
    the last)."""
    pieces = body.split(SEPARATOR, parts - 1)
    return pieces + [b""] * (parts - len(pieces))


def join(*pieces: bytes) -> bytes:
    return SEPARATOR.join(pieces)


def _options(data: bytes) -> tuple[int, bytes]:
    return (data[0], data[1:]) if data else (0, b"")


def _decode(content_type: str) -> Callable[[bytes], object]:
    from container.formats import registry

    def run(data: bytes) -> object:
        flags, body = _options(data)
        return registry.decode(content_type, body, source=SOURCE, feature_dim=FEATURE_DIMS[(flags >> 1) % 4],
                               with_labels=bool(flags & 1))

    return run


def _triplets(data: bytes) -> object:
    from container.formats import triplets

    flags, body = _options(data)
    declared = (None, 3, 1000)[((flags >> 2) & 3) % 3]
    nonnegative = bool(flags & 2)
    if flags & 1:  # RecordIO one-hot layout: num_rows is required there
        return triplets.decode_triplets_recordio(body, source=SOURCE, num_rows=declared or 2,
                                                 num_cols=(None, 2)[(flags >> 4) & 1], nonnegative_values=nonnegative)
    if flags & 16:
        return triplets.decode_id_weights_csv(body, source=SOURCE, what="row", declared=declared)
    return triplets.decode_triplets_csv(body, source=SOURCE, num_rows=declared, num_cols=declared,
                                        nonnegative_values=nonnegative)


def _queries(data: bytes) -> object:
    from container.formats import fm_queries, registry, wals_queries

    flags, body = _options(data)
    content_type = (registry.JSON, registry.JSONLINES)[flags & 1]
    if flags & 2:
        return wals_queries.read_queries(body, content_type, implicit=bool(flags & 4))
    instances = fm_queries.query_instances(body, content_type)
    return None if instances is None else fm_queries.read_queries(instances, FEATURE_DIMS[(flags >> 2) % 4] or 8)


@functools.cache
def _scratch() -> Path:
    """This process's scratch directory, under /dev/shm when there is one."""
    shm = Path("/dev/shm")
    return Path(tempfile.mkdtemp(prefix="fmwals-fuzz-", dir=shm if shm.is_dir() else None))


def _emptied(directory: Path) -> Path:
    """``directory`` without the files an earlier input left there (the targets write files only)."""
    for entry in os.scandir(directory):
        if entry.is_file():
            os.unlink(entry.path)
    return directory


@functools.cache
def _config_files() -> tuple[Path, SageMakerPaths]:
    """The config directory of a SageMaker layout in the scratch directory, and its paths."""
    paths = SageMakerPaths(_scratch() / "ml")
    paths.input_config.mkdir(parents=True)
    return paths.input_config, paths


def _artifact(data: bytes) -> object:
    """Bits 0-1 choose the layout: 0 (and 3) the pieces are model.json, model.npz, optimizer_state.npz (written
    when not empty); 1 the one piece is model.tar.gz; 2 it is model_algo-1. Bit 2: load with the optimizer
    state (a warm start)."""
    from algorithm import artifact

    flags, body = _options(data)
    directory = _emptied(_scratch())
    layout = (flags & 3) % 3
    if layout == 0:
        for name, piece in zip((artifact.META_FILE, artifact.ARRAYS_FILE, artifact.STATE_FILE), split(body, 3),
                               strict=True):
            if piece or name != artifact.STATE_FILE:
                (directory / name).write_bytes(piece)
    else:
        (directory / (artifact.TARBALL if layout == 1 else artifact.BUILTIN)).write_bytes(body)
    return artifact.load(directory, optimizer_state=bool(flags & 4))


def _config(data: bytes) -> object:
    """Bits 0-1 choose the file: hyperparameters.json (then parsed as train parses it), inputdataconfig.json,
    resourceconfig.json."""
    from algorithm.schemas import parse_for_algorithm
    from container import config

    flags, body = _options(data)
    directory, paths = _config_files()
    _emptied(directory)
    which = (flags & 3) % 3
    (paths.hyperparameters_file, paths.input_data_config_file, paths.resource_config_file)[which].write_bytes(body)
    if which == 0:
        return parse_for_algorithm(config.read_hyperparameters(paths))
    if which == 1:
        return config.read_input_data_config(paths)
    return config.read_resource_config(paths)


_USER_ERRORS = (ClientError,)
TARGETS = {
    t.name: t
    for t in (
        Target("recordio", _decode("application/x-recordio-protobuf"), _USER_ERRORS,
               "RecordIO-protobuf request and training bodies (registry.decode)"),
        Target("csv", _decode("text/csv"), _USER_ERRORS, "CSV bodies (registry.decode)"),
        Target("libsvm", _decode("text/libsvm"), _USER_ERRORS, "libsvm bodies (registry.decode)"),
        Target("json", _decode("application/json"), _USER_ERRORS, "JSON request bodies (registry.decode)"),
        Target("jsonlines", _decode("application/jsonlines"), _USER_ERRORS,
               "JSON Lines request bodies (registry.decode)"),
        Target("triplets", _triplets, _USER_ERRORS,
               "WALS triplets: CSV, RecordIO one-hot, id,weight CSV (container.formats.triplets)"),
        Target("queries", _queries, _USER_ERRORS, "FM top-k and WALS query bodies (fm_queries, wals_queries)"),
        Target("artifact", _artifact, (ArtifactError,),
               "the model loader (algorithm.artifact.load): own layout, model.tar.gz, built-in model_algo-1"),
        Target("config", _config, (ClientError, HyperparameterError),
               "hyperparameters.json (+ parse_for_algorithm), inputdataconfig.json, resourceconfig.json"),
    )
}
