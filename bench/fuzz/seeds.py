"""The seed corpus of every fuzz target, from the inputs the tests use.

Text targets take every bytes literal, every string literal with a digit in it and every dict or list literal
(as JSON) of their test files (read with ``ast``, never imported); RecordIO and the artifact take what the
tests build with the project's own writers (``write_*_tensor``, ``artifact.save``, ``export_builtin``). Each
body is written once per option byte of ``OPTIONS`` (see ``bench.fuzz.targets``). Beside the corpus goes a
libFuzzer dictionary: the quoted names of the seeds (and JSON's tokens for the JSON targets).
"""

from __future__ import annotations

import ast
import hashlib
import io
import json
import re
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Literal

import numpy as np
import scipy.sparse as sp

from bench.fuzz.targets import join

TESTS = Path(__file__).resolve().parents[2] / "tests" / "unit"
MAX_SEED = 1 << 14  # bytes: bigger literals only slow the fuzzer down
TEST_FILES = {
    "csv": ("test_text_formats.py", "test_text_scanners.py", "test_channels.py"),
    "libsvm": ("test_text_formats.py", "test_text_scanners.py", "test_channels.py"),
    "json": ("test_json_requests.py", "test_json_fast_path.py", "test_text_scanners.py"),
    "jsonlines": ("test_json_requests.py", "test_json_fast_path.py", "test_text_scanners.py"),
    "queries": ("test_fm_topk.py", "test_serve_app.py", "test_json_requests.py"),
    "triplets": ("test_triplets.py",),
    "recordio": ("test_recordio.py",),
    "config": ("test_config.py", "test_hyperparameters.py", "test_fm_defaults.py"),
}
JSON_TARGETS = ("json", "jsonlines", "queries", "artifact", "config")
# option bytes each body is seeded with: labels or not and each feature_dim choice; the other targets' layouts
OPTIONS = {
    "recordio": range(8), "csv": range(8), "libsvm": range(8), "json": range(8), "jsonlines": range(8),
    "triplets": (0, 1, 2, 4, 5, 8, 16, 20), "queries": range(8), "artifact": (0, 4), "config": (0, 1, 2),
}


def literals(path: Path) -> Iterator[bytes]:
    """The test inputs written literally in ``path``."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Constant) and isinstance(node.value, bytes):
            yield node.value
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and any(c.isdigit() for c in node.value):
            yield node.value.encode("utf-8", "surrogatepass")
        elif isinstance(node, (ast.Dict, ast.List)):
            try:
                yield json.dumps(ast.literal_eval(node)).encode()
            except (ValueError, TypeError, SyntaxError, RecursionError):
                continue


def _recordio_bodies() -> Iterator[bytes]:
    from container.formats.recordio import write_numpy_to_dense_tensor, write_spmatrix_to_sparse_tensor

    matrix = np.array([[0, 1.5, 0, 2], [3, 0, 0, 0], [0, 0, 0, 0]])
    labels = np.array([1, 0, 1])
    for dtype in (np.float32, np.float64):
        for writer, rows in ((write_numpy_to_dense_tensor, matrix.astype(dtype)),
                             (write_spmatrix_to_sparse_tensor, sp.csr_matrix(matrix.astype(dtype)))):
            for label in (None, labels.astype(dtype)):
                buffer = io.BytesIO()
                writer(buffer, rows, label)
                yield buffer.getvalue()
    one_hot = io.BytesIO()  # WALS triplets: [row, num_rows + col] with num_rows=2
    write_spmatrix_to_sparse_tensor(one_hot, sp.csr_matrix(np.array([[1, 0, 1, 0], [0, 1, 0, 1]], np.float32)),
                                    np.array([4.0, 2.5], np.float32))
    yield one_hot.getvalue()


def _tar(members: dict[str, bytes], mode: Literal["w", "w:gz"]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        for name, payload in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def _artifact_inputs() -> Iterator[bytes]:
    """Whole inputs (option byte included) of the artifact target: each layout of a small FM (with its
    optimizer state) and WALS model, and the FM in the built-in's model_algo-1."""
    from algorithm import artifact
    from algorithm.fm import FactorizationMachines
    from algorithm.wals import WALS

    X = sp.random(30, 6, density=0.4, format="csr", random_state=0, dtype=np.float32)
    fm = FactorizationMachines(feature_dim=6, num_factors=2, predictor_type="binary_classifier", epochs=1,
                               mini_batch_size=10, num_threads=1, optimizer="adam")
    fm.fit(X, (np.arange(30) % 2).astype(np.float32))
    wals = WALS(embedding_dimension=2, max_sweeps=1).fit(sp.random(5, 4, density=0.5, format="csr", random_state=1))
    with tempfile.TemporaryDirectory() as scratch:
        for name, model in (("fm", fm), ("wals", wals)):
            directory = Path(scratch) / name
            artifact.save(directory, model)
            files = {p.name: p.read_bytes() for p in sorted(directory.iterdir())}
            pieces = [files.get(n, b"") for n in (artifact.META_FILE, artifact.ARRAYS_FILE, artifact.STATE_FILE)]
            for flags in (0, 4):
                yield bytes([flags]) + join(*pieces)
            yield bytes([1]) + _tar(files, "w")
            yield bytes([1]) + _tar(files, "w:gz")
        tarball = artifact.export_builtin(Path(scratch) / "fm", Path(scratch) / "builtin.tar.gz")
        with tarfile.open(tarball) as tar:
            member = tar.extractfile(artifact.BUILTIN)
            assert member is not None
            builtin = member.read()
        yield bytes([2]) + builtin
        yield bytes([1]) + _tar({artifact.BUILTIN: builtin}, "w")


def bodies(target: str) -> list[bytes]:
    """The distinct seed bodies of ``target`` (without the option byte)."""
    found: list[bytes] = []
    for name in TEST_FILES.get(target, ()):
        found.extend(literals(TESTS / name))
    if target in ("recordio", "triplets"):
        found.extend(_recordio_bodies())
    return sorted({b for b in found if 0 < len(b) <= MAX_SEED})


def inputs(target: str) -> Iterable[bytes]:
    """Every seed input of ``target``: each body under each of its option bytes."""
    if target == "artifact":
        return list(_artifact_inputs())
    return [bytes([flags]) + body for body in bodies(target) for flags in OPTIONS[target]]


JSON_TOKENS = (b"{}", b"[]", b"null", b"true", b"false", b"-1", b"0", b"1e400", b"1.5", b'""', b"[[]]", b"{\"\":0}")
NAME = re.compile(rb'"[A-Za-z_][A-Za-z0-9_.-]{1,40}"')


def dictionary(target: str, seeds: Iterable[bytes]) -> list[bytes]:
    """libFuzzer dictionary entries for ``target``: the quoted names its seeds hold (JSON keys, content types)
    and JSON's own tokens, so that mutations can put a key or a value of another type in place of one."""
    names = {m.group() for data in seeds for m in NAME.finditer(data)}
    return sorted(names | set(JSON_TOKENS)) if target in JSON_TARGETS else sorted(names)


def write(target: str, directory: Path) -> int:
    """Write ``target``'s seeds into ``directory`` (named by content, as libFuzzer names its corpus files);
    returns how many."""
    directory.mkdir(parents=True, exist_ok=True)
    seeds = list(inputs(target))
    for data in seeds:
        (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)
    write_dictionary(target, directory, seeds)
    return len(seeds)


def write_dictionary(target: str, corpus: Path, seeds: Iterable[bytes] | None = None) -> Path:
    """Write the libFuzzer dictionary of ``target`` (from ``seeds``, else its seed inputs) beside ``corpus``."""
    entries = dictionary(target, inputs(target) if seeds is None else seeds)
    path = dictionary_file(corpus)
    path.write_text("".join(f'"{_escaped(e)}"\n' for e in entries), encoding="ascii")
    return path


def dictionary_file(corpus: Path) -> Path:
    """Where the libFuzzer dictionary of the corpus in ``corpus`` lives (beside it)."""
    return corpus.with_suffix(".dict")


def _escaped(entry: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 and b not in b'"\\' else f"\\x{b:02x}" for b in entry)
