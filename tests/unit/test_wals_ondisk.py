"""WALS with data_loading=stream: triplets read in chunks (any read size) into memory-mapped CSR/CSC files give
the factors, id maps and training entries of the in-memory path; errors name the file and line; a volume
without room fails clearly; auto chooses by size against the memory limit."""

from __future__ import annotations

import gzip
import io
import logging
import os
import re
import subprocess
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from algorithm import artifact
from algorithm.checkpoint import Checkpoints
from algorithm.schemas import parse_for_algorithm
from container import data_loading, wals_ondisk, wals_training
from container.config import ChannelConfig
from container.errors import ClientError, DataError
from container.formats import triplets
from container.formats.recordio import write_spmatrix_to_sparse_tensor
from container.formats.recordio_framing import MAGIC_BYTES, frame_records
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


HP = {"num_rows": None, "num_cols": None, "alpha": None}


def _chunked(data: bytes, read_size: int, chunk_bytes: int, config: ChannelConfig | None = None,
             **hp: object) -> triplets.Triplets:
    """The triplets of one source read ``read_size`` bytes at a time, decoded ``chunk_bytes`` at a time."""
    config = config or ChannelConfig("train", CSV)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(wals_ondisk, "CHUNK_BYTES", chunk_bytes)
        parts = list(wals_ondisk.source_triplets(Trickle(data, read_size), "f.csv", config, {**HP, **hp}))
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


def _recordio(seed: int = 2, n: int = 400, bad: int | None = None) -> bytes:
    """``n`` entries as RecordIO one-hot records over 60 rows and 25 columns (``bad``: that record has a third
    key)."""
    rows, cols, values = _ratings(seed, n)
    entries, keys = np.repeat(np.arange(n), 2), np.column_stack([rows, 60 + cols]).ravel()
    if bad is not None:
        entries, keys = np.append(entries, bad), np.append(keys, 84 if keys[2 * bad + 1] != 84 else 83)
    one_hot = sp.csr_matrix((np.ones(entries.size), (entries, keys)), shape=(n, 85))
    buffer = io.BytesIO()
    write_spmatrix_to_sparse_tensor(buffer, one_hot, values.astype(np.float32))
    return buffer.getvalue()


def _assert_same_triplets(parts: triplets.Triplets, whole: triplets.Triplets) -> None:
    for name in ("rows", "cols", "values", "weights", "row_names", "col_names"):
        np.testing.assert_array_equal(getattr(parts, name), getattr(whole, name), err_msg=name)


OBJECTS = [_recordio(2, 150), gzip.compress(_recordio(3, 250)), b"", _recordio(4, 1)]  # S3 objects in a pipe


@pytest.mark.parametrize("read_size", [1, 5, 77, 1 << 20])
@pytest.mark.parametrize("chunk_bytes", [1, 97, 1 << 20])
@pytest.mark.parametrize("wrapped", [False, True])
def test_recordio_read_in_chunks_decodes_as_the_whole_body(read_size: int, chunk_bytes: int, wrapped: bool) -> None:
    config = ChannelConfig("train", RECORDIO, record_wrapper="RecordIO" if wrapped else "None")
    data = frame_records(OBJECTS) if wrapped else OBJECTS[0] + OBJECTS[3]
    bodies = [gzip.decompress(o) if o.startswith(b"\x1f\x8b") else o for o in OBJECTS] if wrapped else [data]
    whole = triplets.concatenate([triplets.decode_triplets_recordio(body, source="f.csv", num_rows=60)
                                  for body in bodies if body])
    _assert_same_triplets(_chunked(data, read_size, chunk_bytes, config, num_rows=60), whole)


@pytest.mark.parametrize("read_size", [1, 7, 1 << 20])
def test_wrapped_csv_objects_each_have_their_header(read_size: int) -> None:
    objects = [_csv(*_ratings(5, 30)).encode(), gzip.compress(_csv(*_ratings(6, 20)).encode()), b"\n"]
    config = ChannelConfig("train", CSV, record_wrapper="RecordIO")
    whole = triplets.concatenate([triplets.decode_triplets_csv(body, source="f.csv")
                                  for body in (objects[0], gzip.decompress(objects[1]))])
    _assert_same_triplets(_chunked(frame_records(objects), read_size, 50, config), whole)


def _pipe(base: Path, payload: bytes, config: ChannelConfig) -> tuple[SageMakerPaths, dict[str, ChannelConfig]]:
    """A Pipe-mode job whose FIFO ``train_0`` a thread feeds: one byte, a pause, then 999 bytes per write."""
    paths = SageMakerPaths(base)
    fifo = paths.pipe_path("train", 0)
    fifo.parent.mkdir(parents=True)
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb", buffering=0) as pipe:
            pipe.write(payload[:1])
            time.sleep(0.05)
            for start in range(1, len(payload), 999):
                pipe.write(payload[start:start + 999])

    threading.Thread(target=feed, daemon=True).start()
    return paths, {"train": config}


PIPES = {
    "recordio": (RECORDIO, "None", _recordio(), {"num_rows": "60"}),
    "gzip csv": (None, "None", gzip.compress(_csv(*_ratings(3, 500)).encode()), {}),  # gzip and CSV from the bytes
    "wrapped recordio": (RECORDIO, "RecordIO", frame_records(OBJECTS), {"num_rows": "60", "alpha": "1"}),
    "wrapped csv, sniffed": (None, "RecordIO", frame_records([_csv(*_ratings(7, 300)).encode(), b"",
                                                              gzip.compress(_csv(*_ratings(8, 200)).encode())]), {}),
}


@pytest.mark.parametrize("kind", PIPES)
def test_pipe_mode_streams_a_fifo_delivered_a_few_bytes_at_a_time(tmp_path: Path, small_blocks: None,
                                                                   kind: str) -> None:
    content_type, wrapper, payload, hp = PIPES[kind]
    config = ChannelConfig("train", content_type, input_mode="Pipe", record_wrapper=wrapper)
    memory, streamed = (_train(*_pipe(tmp_path / loading, payload, config), loading, **hp)
                        for loading in ("memory", "stream"))
    assert set(memory) == set(streamed)
    for name, array in memory.items():
        np.testing.assert_array_equal(streamed[name], array, err_msg=name)


@pytest.mark.parametrize("hp", [{"num_rows": "60"}, {"num_rows": "60", "num_cols": "25", "alpha": "2"}])
def test_recordio_files_stream_to_the_in_memory_model(tmp_path: Path, small_blocks: None,
                                                      hp: dict[str, str]) -> None:
    channels = {"train": {"a.rec": _recordio(2, 400), "part/b.rec.gz": gzip.compress(_recordio(4, 300)),
                          "c.rec": _recordio(5, 1)},
                "test": {"t.rec": _recordio(6, 90)}}
    types = {"train": RECORDIO, "test": RECORDIO}
    models = {loading: _train(*_job(tmp_path / loading, channels, types), loading, **hp)
              for loading in ("memory", "stream")}
    assert set(models["memory"]) == set(models["stream"])
    for name, array in models["memory"].items():
        np.testing.assert_array_equal(models["stream"][name], array, err_msg=name)


def _errors(run: Callable[[str], object], base: Path) -> dict[str, str]:
    """The DataError messages of a job on both paths (the job's directory ``base / <path>`` written BASE)."""
    messages = {}
    for loading in ("memory", "stream"):
        with pytest.raises(DataError) as caught:
            run(loading)
        messages[loading] = str(caught.value).replace(str(base / loading), "BASE")
    return messages


def test_a_record_that_is_not_a_triplet_is_named_by_its_index_in_the_file(tmp_path: Path,
                                                                          small_blocks: None) -> None:
    paths, configs = _job(tmp_path, {"train": {"a.rec": _recordio(2, 50), "b.rec": _recordio(3, 300, bad=237)}},
                          {"train": RECORDIO})
    messages = _errors(lambda loading: _train(paths, configs, loading, num_rows="60"), tmp_path)
    assert messages["stream"] == messages["memory"]
    assert re.fullmatch(r".*/b\.rec: record 237 has 3 feature keys; WALS reads the one-hot layout .*",
                        messages["stream"])


@pytest.mark.parametrize("wrapper", ["None", "RecordIO"])
def test_a_truncated_record_at_the_end_of_a_fifo_is_named_by_its_index_and_offset(
        tmp_path: Path, small_blocks: None, wrapper: str) -> None:
    data = frame_records(OBJECTS) if wrapper == "RecordIO" else _recordio(2, 300)
    cut = data[:-7]
    last = len(OBJECTS) - 1 if wrapper == "RecordIO" else 299
    offset = len(data) - len(OBJECTS[-1]) - 8 - (-len(OBJECTS[-1]) % 4) if wrapper == "RecordIO" else \
        cut.rindex(MAGIC_BYTES)
    config = ChannelConfig("train", RECORDIO, input_mode="Pipe", record_wrapper=wrapper)
    messages = _errors(lambda loading: _train(*_pipe(tmp_path / loading, cut, config), loading, num_rows="60"),
                       tmp_path)
    assert messages["stream"] == messages["memory"]
    assert re.fullmatch(rf"BASE/input/data/train_0: record {last} \(byte offset {offset}\): truncated record: "
                        r"header says \d+ bytes but only \d+ remain", messages["stream"])


def test_a_recordio_file_much_larger_than_a_chunk_is_read_in_memory_bounded_by_the_chunk(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    n, chunk = 400_000, 256 << 10
    payload = _recordio(9, n)
    assert len(payload) > 64 * chunk
    paths, configs = _job(tmp_path, {"train": {"big.rec": payload}}, {"train": RECORDIO})
    monkeypatch.setattr(wals_ondisk, "CHUNK_BYTES", chunk)
    hp = {**HP, "num_rows": 60}
    del payload
    list(wals_ondisk.source_triplets(io.BytesIO(_recordio(1, 10)), "warm-up", configs["train"], hp))  # compiled
    tracemalloc.start()
    try:
        read = sum(len(part) for part in wals_ondisk.iter_triplets(paths, configs["train"], hp))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert read == n
    assert peak < 16 * chunk, f"peak {peak} bytes traced reading {n} records in chunks of {chunk} bytes"


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
    monkeypatch.setattr(data_loading, "memory_limit_bytes", lambda: 6000)
    assert not data_loading.streams(paths, configs["train"], "auto", 2.0, share=0.25)  # a host's quarter fits
    assert "decoding into memory the 'train' channel (0.000 GiB of data, this host's share 0.25 of it" in caplog.text
    assert data_loading.streams(paths, ChannelConfig("train", input_mode="Pipe"), "auto", 2.0)
    wrapped = ChannelConfig("train", input_mode="Pipe", record_wrapper="RecordIO")
    assert data_loading.streams(paths, wrapped, "auto", 2.0)
    assert not data_loading.streams(paths, configs["train"], "memory", 2.0)
    assert data_loading.streams(paths, configs["train"], "stream", 2.0)


@pytest.mark.parametrize("hp", [{}, {"alpha": "1"}, {"num_rows": "70", "num_cols": "30"}])
def test_a_hosts_share_of_a_replicated_channel_read_a_chunk_at_a_time_is_the_whole_reads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, small_blocks: None, hp: dict[str, str]) -> None:
    """Several hosts, FullyReplicated: each host's share (``wals_shards.read_share``) read chunk by chunk is
    the whole channel's entries ``rank``, ``rank + n``, ... with the same ids and values; the shares cover the
    channel once."""
    from container import wals_data, wals_shards

    ids = ("{}", "{}") if "num_rows" in hp else ("u{}", "item {}")
    files = {name: _csv(*_ratings(seed, 350, 70, 30), ids=ids).encode() for name, seed in (("a.csv", 3), ("b.csv", 4))}
    paths, configs = _job(tmp_path, {"train": files})
    monkeypatch.setenv("SAGEMAKER_BASE_DIR", str(tmp_path))
    _, parsed = parse_for_algorithm({"algorithm": "wals", "embedding_dimension": "3", **hp})
    whole = wals_data.read_triplets(paths, configs["train"], parsed)
    values = wals_data.entry_values(whole, parsed["alpha"])
    entries = list(zip(whole.row_ids().tolist(), whole.col_ids().tolist(), values.tolist(), strict=True))
    for n in (2, 3):
        covered = []
        for rank in range(n):
            share = wals_shards.read_share(rank, n, configs["train"], parsed)
            rows = share.rows if share.row_names is None else share.row_names[share.rows]
            cols = share.cols if share.col_names is None else share.col_names[share.cols]
            got = list(zip(rows.tolist(), cols.tolist(), share.values.tolist(), strict=True))
            assert got == entries[rank::n]
            covered += got
        assert sorted(covered) == sorted(entries)
