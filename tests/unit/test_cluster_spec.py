"""resourceconfig.json of a multi-host job: the checks of container.cluster.read_cluster_spec, each naming the field
and the file."""

import json

import psutil
import pytest

from container.cluster import ClusterSpec, read_cluster_spec
from container.errors import ClientError
from container.paths import SageMakerPaths


def _paths(tmp_path, config) -> SageMakerPaths:
    (tmp_path / "input/config").mkdir(parents=True)
    (tmp_path / "input/config/resourceconfig.json").write_text(json.dumps(config))
    return SageMakerPaths(tmp_path)


def _error(tmp_path, config) -> str:
    paths = _paths(tmp_path, config)
    with pytest.raises(ClientError) as caught:
        read_cluster_spec(paths)
    assert str(paths.resource_config_file) in str(caught.value)
    return str(caught.value)


def test_loopback_host_on_lo(tmp_path):
    spec = read_cluster_spec(_paths(tmp_path, {"current_host": "127.0.0.2", "hosts": ["127.0.0.1", "127.0.0.2"],
                                               "network_interface_name": "lo"}))
    assert spec == ClusterSpec(("127.0.0.1", "127.0.0.2"), "127.0.0.2", "lo", "127.0.0.2", 8786, 8788)
    assert not spec.is_driver and spec.rank == 1


def test_interface_found_from_the_address_when_unnamed(tmp_path, monkeypatch):
    monkeypatch.setenv("FMWALS_SCHEDULER_PORT", "9100")
    spec = read_cluster_spec(_paths(tmp_path, {"current_host": "127.0.0.1", "hosts": ["127.0.0.1", "127.0.0.3"]}))
    assert spec.interface == "lo" and spec.is_driver and spec.scheduler_port == 9100


def test_duplicate_hosts(tmp_path):
    message = _error(tmp_path, {"current_host": "127.0.0.1", "hosts": ["127.0.0.1", "127.0.0.2", "127.0.0.1"]})
    assert "hosts in" in message and "127.0.0.1 more than once" in message


def test_current_host_not_in_hosts(tmp_path):
    message = _error(tmp_path, {"current_host": "127.0.0.9", "hosts": ["127.0.0.1", "127.0.0.2"]})
    assert message.startswith("current_host '127.0.0.9'") and "not one of its hosts" in message


def test_unknown_interface(tmp_path):
    message = _error(tmp_path, {"current_host": "127.0.0.1", "hosts": ["127.0.0.1", "127.0.0.2"],
                                "network_interface_name": "nosuch9"})
    assert message.startswith("network_interface_name 'nosuch9'") and "lo" in message


def test_current_host_off_the_interface(tmp_path):
    others = [name for name, addresses in psutil.net_if_addrs().items() if name != "lo"
              and any(a.family == 2 and not a.address.startswith("127.") for a in addresses)]
    if not others:
        pytest.skip("this machine has no IPv4 interface besides lo")
    message = _error(tmp_path, {"current_host": "127.0.0.2", "hosts": ["127.0.0.1", "127.0.0.2"],
                                "network_interface_name": others[0]})
    assert "resolves to 127.0.0.2" in message and f"network_interface_name {others[0]!r}" in message


def test_host_that_never_resolves(tmp_path, monkeypatch):
    monkeypatch.setenv("FMWALS_HOST_WAIT_SECONDS", "0.5")
    paths = _paths(tmp_path, {"current_host": "algo-1.invalid", "hosts": ["algo-1.invalid", "algo-2.invalid"]})
    with pytest.raises(ClientError, match=r"Host algo-1.invalid \(current_host in .*resourceconfig.json\) does "
                       r"not resolve .*after waiting 0.5 s \(FMWALS_HOST_WAIT_SECONDS\)"):
        read_cluster_spec(paths)
