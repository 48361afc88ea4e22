"""Channel reading: File mode (recursive, sorted, hidden skipped, gzip) and Pipe mode with real FIFOs."""

import gzip
import io
import os
import subprocess
import sys

import numpy as np
import pytest
from sagemaker.amazon.common import write_numpy_to_dense_tensor

from container.channel_files import channel_files
from container.channels import read_channel
from container.config import ChannelConfig
from container.errors import ChannelError, DataError
from container.paths import SageMakerPaths


def _recordio(features, labels):
    buf = io.BytesIO()
    write_numpy_to_dense_tensor(buf, np.asarray(features, dtype=np.float32), np.asarray(labels, np.float32))
    return buf.getvalue()


@pytest.fixture
def paths(tmp_path):
    return SageMakerPaths(tmp_path)


def test_file_mode_reads_recursively_in_sorted_order_skipping_hidden(paths):
    train = paths.channel_dir("train")
    (train / "b").mkdir(parents=True)
    (train / ".hidden").mkdir()
    (train / "b" / "part-2").write_bytes(_recordio([[3, 3]], [1]))
    (train / "a-part-1").write_bytes(_recordio([[1, 1], [2, 2]], [0, 1]))
    (train / ".ignored").write_bytes(b"garbage")
    (train / ".hidden" / "x").write_bytes(b"garbage")
    (train / "train.amazon.manifest").write_text('[{"prefix": "s3://b/"}]')
    assert [p.name for p in channel_files(train)] == ["a-part-1", "part-2"]
    data = read_channel(paths, ChannelConfig("train"), feature_dim=2)
    np.testing.assert_array_equal(data.to_scipy().toarray(), [[1, 1], [2, 2], [3, 3]])
    np.testing.assert_array_equal(data.labels, [0, 1, 1])


def test_gzip_files_are_read_transparently(paths):
    train = paths.channel_dir("train")
    train.mkdir(parents=True)
    (train / "data.csv.gz").write_bytes(gzip.compress(b"1,0.5,2\n0,1.5,0\n"))
    data = read_channel(paths, ChannelConfig("train", content_type="text/csv"), feature_dim=2)
    np.testing.assert_array_equal(data.labels, [1, 0])
    np.testing.assert_allclose(data.to_scipy().toarray(), [[0.5, 2], [1.5, 0]])


def test_corrupt_gzip_names_the_file(paths):
    train = paths.channel_dir("train")
    train.mkdir(parents=True)
    (train / "bad.gz").write_bytes(gzip.compress(b"1,2\n")[:12])
    with pytest.raises(DataError, match=r"bad\.gz"):
        read_channel(paths, ChannelConfig("train", content_type="text/csv"), feature_dim=1)


@pytest.mark.parametrize("make_dir", [False, True])
def test_missing_or_empty_channel_names_channel_and_causes(paths, make_dir):
    if make_dir:
        paths.channel_dir("train").mkdir(parents=True)
        (paths.channel_dir("train") / ".only-hidden").write_bytes(b"x")
    with pytest.raises(ChannelError, match=r"Channel 'train' has no data \(File mode.*S3 prefix is empty"):
        read_channel(paths, ChannelConfig("train"), feature_dim=2)


def _feed_fifo(path, payload):
    """A separate writer process, as SageMaker's pipe agent is."""
    code = "import sys; f = open(sys.argv[1], 'wb'); f.write(sys.stdin.buffer.read()); f.close()"
    return subprocess.Popen([sys.executable, "-c", code, str(path)], stdin=subprocess.PIPE)


def test_pipe_mode_reads_the_fifo_of_each_epoch(paths):
    paths.input_data.mkdir(parents=True)
    config = ChannelConfig("train", input_mode="Pipe")
    for epoch, rows in enumerate(([[1, 2]], [[3, 4], [5, 6]])):
        fifo = paths.pipe_path("train", epoch)
        os.mkfifo(fifo)
        writer = _feed_fifo(fifo, None)
        writer.stdin.write(_recordio(rows, [1] * len(rows)))
        writer.stdin.close()
        data = read_channel(paths, config, feature_dim=2, epoch=epoch)
        assert writer.wait(timeout=10) == 0
        np.testing.assert_array_equal(data.to_scipy().toarray(), rows)


def test_pipe_mode_waits_for_a_late_fifo_then_gives_up(paths):
    paths.input_data.mkdir(parents=True)
    with pytest.raises(ChannelError, match="did not appear"):
        read_channel(paths, ChannelConfig("train", input_mode="Pipe"), feature_dim=2, pipe_wait_seconds=0.2)


def test_pipe_mode_record_wrapper_unwraps_each_s3_object(paths):
    from container.formats.recordio_framing import frame_records

    paths.input_data.mkdir(parents=True)
    objects = [_recordio([[1, 2]], [0]), _recordio([[3, 4]], [1])]
    fifo = paths.pipe_path("train", 0)
    os.mkfifo(fifo)
    writer = _feed_fifo(fifo, None)
    writer.stdin.write(frame_records(objects))
    writer.stdin.close()
    config = ChannelConfig("train", input_mode="Pipe", record_wrapper="RecordIO")
    data = read_channel(paths, config, feature_dim=2)
    assert writer.wait(timeout=10) == 0
    np.testing.assert_array_equal(data.to_scipy().toarray(), [[1, 2], [3, 4]])
    np.testing.assert_array_equal(data.labels, [0, 1])


def test_a_file_source_is_its_own_channel(tmp_path):
    single = tmp_path / ".part-0.csv"
    single.write_text("1,2\n")
    assert channel_files(single) == [single]


# --- channels without a ContentType, and declared types the bytes contradict --------------------------------

CSV_BODY = b"1,0.5,2\n0,1.5,0\n"
LIBSVM_BODY = b"1 0:0.5 1:2\n0 0:1.5\n"


@pytest.mark.parametrize("body,content_type", [
    (_recordio([[1, 2]], [1]), "application/x-recordio-protobuf"),
    (CSV_BODY, "text/csv"),
    (b"\xef\xbb\xbfrow,col,value\nu1,i1,1\n", "text/csv"),
    (LIBSVM_BODY, "text/libsvm"),
    (b"1\n0 3:1 # a label-only first line\n", "text/libsvm"),
    (b"12:30,item,1\n", "text/csv"),  # a time as an id is not an index:value pair
    (b'{"instances": []}', "application/json"),
    (b'{"features": [1]}\n{"features": [2]}\n', "application/jsonlines"),
    (b"\n\n", None),
    (b"\x0a\x02\x0a\x00", None),  # a bare Record: binary without the magic
])
def test_sniff_names_the_format_of_the_first_bytes(body, content_type):
    from container.formats.sniff import sniff

    assert sniff(body) == content_type


@pytest.mark.parametrize("body", [CSV_BODY, LIBSVM_BODY])
def test_a_channel_without_content_type_is_read_as_its_bytes_show_and_logged(paths, body, caplog):
    caplog.set_level("INFO")
    paths.channel_dir("train").mkdir(parents=True)
    (paths.channel_dir("train") / "part-0").write_bytes(body)
    data = read_channel(paths, ChannelConfig("train"), feature_dim=2)
    np.testing.assert_array_equal(data.labels, [1, 0])
    np.testing.assert_allclose(data.to_scipy().toarray(), [[0.5, 2], [1.5, 0]])
    shown = "text/csv" if body == CSV_BODY else "text/libsvm"
    assert f"Channel 'train' declares no ContentType: reading {paths.channel_dir('train')}/part-0 as {shown}" \
        in caplog.text


@pytest.mark.parametrize("declared,body,shown", [
    ("application/x-recordio-protobuf", CSV_BODY, "text/csv"),
    ("text/csv", LIBSVM_BODY, "text/libsvm"),
    ("text/libsvm", CSV_BODY, "text/csv"),
    ("text/csv", _recordio([[1, 2]], [1]), "application/x-recordio-protobuf"),
])
def test_a_declared_type_the_bytes_contradict_names_the_content_type_to_set(paths, declared, body, shown):
    paths.channel_dir("train").mkdir(parents=True)
    (paths.channel_dir("train") / "part-0").write_bytes(body)
    with pytest.raises(DataError, match=f"Channel 'train' declares ContentType {declared} but .*part-0 looks like "
                                        f"{shown}: set the channel's ContentType to {shown}"):
        read_channel(paths, ChannelConfig("train", content_type=declared), feature_dim=2)


def test_weights_of_some_files_are_kept_and_the_others_rows_weigh_one(paths):
    from container.formats.record_pb2 import Record
    from container.formats.recordio_framing import frame_records

    record = Record()
    record.features["values"].float32_tensor.values.extend([1.0, 2.0])
    record.label["values"].float32_tensor.values.append(1.0)
    record.label["weight"].float32_tensor.values.append(0.25)
    train = paths.channel_dir("train")
    train.mkdir(parents=True)
    (train / "a").write_bytes(_recordio([[1, 1], [2, 2]], [0, 1]))
    (train / "b").write_bytes(frame_records([record.SerializeToString()]))
    data = read_channel(paths, ChannelConfig("train"), feature_dim=2)
    np.testing.assert_array_equal(data.weights, [1, 1, 0.25])
