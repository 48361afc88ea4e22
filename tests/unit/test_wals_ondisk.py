"""WALS with data_loading=stream: triplets read in chunks (any read size) into memory-mapped CSR/CSC files give
the factors, id maps and training entries of the in-memory path; errors name the file and line; a volume
without room fails clearly; auto chooses by size against the memory limit."""

from __future__ import annotations

import gzip
import io
import logging
import os
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from algorithm import artifact
from algorithm.checkpoint import Checkpoints
from algorithm.schemas import parse_for_algorithm
from container import data_loading, wals_ondisk, wals_training
from container.config import ChannelConfig
from container.errors import ClientError, DataError
from container.formats import triplets
from container.formats.recordio import write_spmatrix_to_sparse_tensor
from container.paths import SageMakerPaths

CSV, RECORDIO = "text/csv", "application/x-recordio-protobuf"


class Trickle(io.RawIOBase):
    """A stream that returns at most ``size`` bytes per read, as a FIFO may."""

    def __init__(self, data: bytes, size: int) -> None:
        self.data, self.size, self.position = data, size, 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        step = self.size if n < 0 else min(n, self.size)
        chunk = self.data[self.position:self.position + step]
        self.position += len(chunk)
        return chunk


TEXT = ('\ufeffuser,item,rating,weight\n\nu1,"item, 7",5\r\nu2 , i2,3,2\n  \n"u""3",i2,1e-3,0.5\n'
        + "".join(f"u{i % 13},i{i % 7},{i % 5},{1 + i % 3}\n" for i in range(200)) + "u9,i9,7").encode()


def _chunked(data: bytes, read_size: int, chunk_bytes: int, **kwargs) -> triplets.Triplets:
    parts, text_seen = [], False
    for line, byte, body in triplets.iter_line_chunks(Trickle(data, read_size), chunk_bytes):
        parts.append(triplets.decode_triplets_csv(body, source="f.csv", first_line=line, first_byte=byte,
                                                  header=not text_seen, **kwargs))
        text_seen = text_seen or bool(body.strip())
    return triplets.concatenate(parts)


@pytest.mark.parametrize("read_size", [1, 3, 7, 1 << 20])
@pytest.mark.parametrize("chunk_bytes", [1, 5, 13, 1 << 20])
def test_chunks_of_any_read_size_decode_as_the_whole_text(read_size: int, chunk_bytes: int) -> None:
    whole = triplets.decode_triplets_csv(TEXT, source="f.csv")
    parts = _chunked(TEXT, read_size, chunk_bytes)
    for name in ("row_ids", "col_ids"):
        assert getattr(parts, name)().tolist() == getattr(whole, name)().tolist()
    np.testing.assert_array_equal(parts.values, whole.values)
    np.testing.assert_array_equal(parts.weights, whole.weights)


@pytest.mark.parametrize("bad, message", [
    (b"u1,i1,x\n", "f.csv: line 103: value 'x' is not a number"),
    (b"u1,i1\n", "f.csv: line 103 has 2 fields; expected row,col,value[,weight]"),
    (b'u1,i"1,2\n', None),  # read by the csv module
    (b"u1,i1,\xff\n", "f.csv: not UTF-8 text at byte"),
])
@pytest.mark.parametrize("chunk_bytes", [7, 100, 1 << 20])
def test_a_bad_line_is_named_by_its_line_in_the_file(bad: bytes, message: str | None, chunk_bytes: int) -> None:
    data = b"user,item,rating\n" + b"".join(b"u%d,i%d,1\n" % (i, i) for i in range(101)) + bad + b"u0,i0,1\n"
    if message is None:
        assert len(_chunked(data, 5, chunk_bytes)) == len(triplets.decode_triplets_csv(data, source="f.csv"))
        return
    with pytest.raises(DataError) as whole:
        triplets.decode_triplets_csv(data, source="f.csv")
    with pytest.raises(DataError) as chunked:
        _chunked(data, 5, chunk_bytes)
    assert str(chunked.value) == str(whole.value)
    assert str(chunked.value).startswith(message)


def test_a_header_after_the_first_line_with_text_is_an_error() -> None:
    data = b"u1,i1,1\n" + b"u2,i2,1\n" * 5 + b"user,item,rating\n"
    with pytest.raises(DataError, match="line 7: value 'rating' is not a number"):
        _chunked(data, 4, 8)


# ------------------------------------------------------------------------------------------ the job


def _ratings(seed: int, n: int, n_rows: int = 60, n_cols: int = 25) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_rows, n), rng.integers(0, n_cols, n), rng.integers(1, 6, n)


def _csv(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, ids: tuple[str, str] = ("u{}", "item {}")
         ) -> str:
    return "user,item,rating\n" + "".join(f'{ids[0].format(r)},"{ids[1].format(c)}",{v}\n'
                                          for r, c, v in zip(rows, cols, values, strict=True))


def _job(base: Path, channels: dict[str, dict[str, bytes]], types: dict[str, str] | None = None,
         mode: str = "File") -> tuple[SageMakerPaths, dict[str, ChannelConfig]]:
    paths = SageMakerPaths(base)
    for name, files in channels.items():
        for file, payload in files.items():
            (paths.channel_dir(name) / file).parent.mkdir(parents=True, exist_ok=True)
            (paths.channel_dir(name) / file).write_bytes(payload)
    return paths, {name: ChannelConfig(name, (types or {}).get(name, CSV), input_mode=mode) for name in channels}


def _train(paths: SageMakerPaths, configs: dict[str, ChannelConfig], loading: str,
           **hp: str) -> dict[str, np.ndarray]:
    _, parsed = parse_for_algorithm({"algorithm": "wals", "embedding_dimension": "3", "max_sweeps": "3",
                                     "data_loading": loading, **hp})
    wals_training.train_wals(paths, parsed, configs, "algo-1", Checkpoints(None))
    return artifact.read(paths.model_dir)[1]


@pytest.fixture
def small_blocks(monkeypatch: pytest.MonkeyPatch) -> None:
    """Chunks and blocks of a few entries, so every pass runs over many."""
    monkeypatch.setattr(wals_ondisk, "CHUNK_BYTES", 301)
    monkeypatch.setattr(wals_ondisk, "BLOCK_ENTRIES", 37)


CASES = {
    "explicit, string ids, test": ({}, None),
    "implicit, string ids, test, solver cg": ({"alpha": "2.5", "solver": "cg"}, None),
    "declared ids, weights channels": ({"num_rows": "70", "num_cols": "30"}, ("{}", "{}")),
    "integer ids, sorted as numbers": ({"alpha": "1"}, ("{}", "{}")),
}


@pytest.mark.parametrize("case", CASES)
def test_stream_gives_the_in_memory_model(tmp_path: Path, small_blocks: None, case: str) -> None:
    hp, ids = CASES[case]
    ids = ids or ("u{}", "item {}")
    rows, cols, values = _ratings(0, 900)
    channels = {"train": {"a.csv": _csv(rows[:500], cols[:500], values[:500], ids).encode(),
                          "part/b.csv.gz": gzip.compress(_csv(rows[500:], cols[500:], values[500:], ids).encode())},
                "test": {"t.csv": _csv(*_ratings(1, 120, 65), ids).encode()}}
    if "weights" in case:
        channels["row_weights"] = {"w.csv": b"id,weight\n3,2.5\n7,0.5\n"}
        channels["col_weights"] = {"w.csv": b"1,3\n"}
    models = {loading: _train(*_job(tmp_path / loading, channels), loading, **hp) for loading in ("memory", "stream")}
    assert set(models["memory"]) == set(models["stream"])
    for name, array in models["memory"].items():
        np.testing.assert_array_equal(models["stream"][name], array, err_msg=name)
    assert not any((tmp_path / "stream" / "input" / "scratch").iterdir())  # the job's files are gone


def _recordio() -> bytes:
    import scipy.sparse as sp

    rows, cols, values = _ratings(2, 400)
    one_hot = sp.csr_matrix((np.ones(800), (np.repeat(np.arange(400), 2), np.column_stack([rows, 60 + cols]).ravel())),
                            shape=(400, 85))
    buffer = io.BytesIO()
    write_spmatrix_to_sparse_tensor(buffer, one_hot, values.astype(np.float32))
    return buffer.getvalue()


@pytest.mark.parametrize("kind", ["recordio", "gzip csv"])
def test_pipe_mode_streams_a_fifo_delivered_a_few_bytes_at_a_time(tmp_path: Path, small_blocks: None,
                                                                   kind: str) -> None:
    payload = _recordio() if kind == "recordio" else gzip.compress(_csv(*_ratings(3, 500)).encode())
    content_type = RECORDIO if kind == "recordio" else None  # gzip and CSV told from the bytes
    hp = {"num_rows": "60"} if kind == "recordio" else {}
    memory = _train(*_job(tmp_path / "memory", {"train": {"t": payload}}, {"train": content_type}), "memory", **hp)
    paths, configs = _job(tmp_path / "pipe", {}, mode="Pipe")
    configs = {"train": ChannelConfig("train", content_type, input_mode="Pipe")}
    fifo = paths.pipe_path("train", 0)
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb", buffering=0) as pipe:
            pipe.write(payload[:1])
            time.sleep(0.05)
            for start in range(1, len(payload), 999):
                pipe.write(payload[start:start + 999])

    writer = threading.Thread(target=feed)
    writer.start()
    streamed = _train(paths, configs, "stream", **hp)
    writer.join(10)
    for name, array in memory.items():
        np.testing.assert_array_equal(streamed[name], array, err_msg=name)


def test_a_bad_line_fails_the_streamed_job_naming_file_and_line(tmp_path: Path, small_blocks: None) -> None:
    text = _csv(*_ratings(0, 50)) + "u1,i1,NaN\n"
    paths, configs = _job(tmp_path, {"train": {"a.csv": _csv(*_ratings(1, 10)).encode(), "b.csv": text.encode()}})
    with pytest.raises(DataError, match=r"b\.csv: line 52: value 'NaN' must be finite"):
        _train(paths, configs, "stream")


def test_corrupt_gzip_is_named(tmp_path: Path) -> None:
    payload = gzip.compress(_csv(*_ratings(0, 300)).encode())
    paths, configs = _job(tmp_path, {"train": {"a.csv.gz": payload[:len(payload) // 2]}})
    with pytest.raises(DataError, match=r"a\.csv\.gz: corrupt gzip data"):
        _train(paths, configs, "stream")


@pytest.fixture
def tiny_volume(tmp_path: Path):
    """A 256 KiB tmpfs mounted where the job keeps its scratch files (needs root)."""
    scratch = SageMakerPaths(tmp_path).scratch_dir
    scratch.mkdir(parents=True)
    mounted = os.geteuid() == 0 and subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(scratch)],
                                                   capture_output=True).returncode == 0
    if not mounted:
        pytest.skip("mounting a tmpfs needs root")
    yield tmp_path
    subprocess.run(["umount", str(scratch)], check=True)


def test_a_volume_without_room_is_a_clear_error(tiny_volume: Path) -> None:
    paths, configs = _job(tiny_volume, {"train": {"a.csv": _csv(*_ratings(0, 20000, 900, 300)).encode()}})
    with pytest.raises(ClientError, match=r"no room for .* GiB\): No space left on device\. Give the training "
                                          r"volume more space \(VolumeSizeInGB\)"):
        _train(paths, configs, "stream")
    assert not any(paths.scratch_dir.iterdir())


def test_auto_streams_what_does_not_fit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        caplog: pytest.LogCaptureFixture) -> None:
    paths, configs = _job(tmp_path, {"train": {"a.csv": b"u,i,1\n" * 1000}})
    caplog.set_level(logging.INFO)
    for limit, expected in ((1 << 30, False), (6000, True), (None, False)):
        monkeypatch.setattr(data_loading, "memory_limit_bytes", lambda limit=limit: limit)
        assert data_loading.streams(paths, configs["train"], "auto", 2.0) is expected
    assert "data_loading=auto: streaming the 'train' channel (0.000 GiB of data" in caplog.text
    assert data_loading.streams(paths, ChannelConfig("train", input_mode="Pipe"), "auto", 2.0)
    wrapped = ChannelConfig("train", input_mode="Pipe", record_wrapper="RecordIO")
    assert not data_loading.streams(paths, wrapped, "auto", 2.0, unwraps=False)
    assert not data_loading.streams(paths, configs["train"], "memory", 2.0)
    assert data_loading.streams(paths, configs["train"], "stream", 2.0)
