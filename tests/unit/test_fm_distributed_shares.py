"""Which FM jobs on several hosts train on every host: with data_loading=auto, a host's share of the train
channel decides (a FullyReplicated channel's size over the hosts, a ShardedByS3Key shard whole)."""

import pytest

from container import data_loading
from container.config import ChannelConfig
from container.fm_distributed import single_host_reason
from container.paths import SageMakerPaths


@pytest.mark.parametrize(("distribution", "hosts", "alone"), [
    ("FullyReplicated", 1, True), ("FullyReplicated", 2, True), ("FullyReplicated", 4, False),
    ("ShardedByS3Key", 4, True),
])
def test_a_hosts_share_of_the_channel_decides(tmp_path, monkeypatch, distribution, hosts, alone):
    paths = SageMakerPaths(tmp_path)
    paths.channel_dir("train").mkdir(parents=True)
    (paths.channel_dir("train") / "part.csv").write_bytes(b"1,0,1\n" * 1000)  # 6000 bytes, 3 per byte in memory
    monkeypatch.setattr(data_loading, "memory_limit_bytes", lambda: 16_000)  # half of it for the data: 8,000
    channels = {"train": ChannelConfig("train", "text/csv", distribution=distribution)}
    reason = single_host_reason(paths, {"data_loading": "auto"}, channels, hosts)
    assert (reason is not None) is alone
    if alone:
        assert reason.startswith("the 'train' channel is streamed")
    assert single_host_reason(paths, {"data_loading": "memory"}, channels, hosts) is None
    assert single_host_reason(paths, {"data_loading": "stream"}, channels, 4) is not None
