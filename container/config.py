"""Readers for the three JSON files SageMaker writes under ``input/config`` (each may be absent)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from container.errors import ClientError
from container.paths import SageMakerPaths


@dataclass(frozen=True)
class ChannelConfig:
    """One entry of ``inputdataconfig.json``; every key but the channel name is optional (``content_type``
    None: the channel declares no ``ContentType``)."""

    name: str
    content_type: str | None = None
    input_mode: str = "File"
    compression: str = "None"
    record_wrapper: str = "None"
    distribution: str = "FullyReplicated"


@dataclass(frozen=True)
class ResourceConfig:
    """``resourceconfig.json``: who this host is and who else trains."""

    current_host: str = "algo-1"
    hosts: list[str] = field(default_factory=lambda: ["algo-1"])
    network_interface_name: str | None = None
    current_instance_type: str | None = None


def _read_json(path: Path) -> Any:
    """The JSON value in ``path``, None when the file is absent or blank; ClientError naming the file when it
    cannot be read, is not UTF-8 or is not JSON."""
    try:
        payload = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ClientError(f"{path} is not a readable file: {err.strerror or err}") from None
    try:
        text = payload.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ClientError(f"{path} is not UTF-8 text: byte 0x{payload[err.start]:02x} at offset {err.start} "
                          "(SageMaker writes these files as UTF-8 JSON)") from None
    if not text.strip():
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ClientError(f"{path} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except RecursionError:
        raise ClientError(f"{path} is not valid JSON: nested too deeply") from None


def _expect_object(value: Any, path: Path, where: str = "") -> dict[str, Any]:
    if value is None and not where:
        return {}
    if not isinstance(value, dict):
        raise ClientError(f"{path} must hold a JSON object{where}, found {_json_type(value)}")
    return value


def _string(entry: dict[str, Any], key: str, path: Path, where: str = "") -> str | None:
    """``entry[key]`` when it is a string, None when absent, null or empty; ClientError naming the file and
    the key for any other JSON type."""
    value = entry.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ClientError(f"{key}{where} in {path} must be a string, found {_json_type(value)} {value!r:.60}")
    return value


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "a number",
             float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def read_hyperparameters(paths: SageMakerPaths) -> dict[str, Any]:
    """The raw hyperparameter map (values usually strings); empty when the file is absent."""
    return _expect_object(_read_json(paths.hyperparameters_file), paths.hyperparameters_file)


def read_input_data_config(paths: SageMakerPaths) -> dict[str, ChannelConfig]:
    """Channel name -> ChannelConfig; empty when the file is absent."""
    path = paths.input_data_config_file
    raw = _expect_object(_read_json(path), path)
    channels = {}
    for name, entry in raw.items():
        where = f" of channel {name!r}"
        entry = _expect_object(entry, path, f" for channel {name!r}")
        channels[name] = ChannelConfig(
            name=name,
            content_type=_string(entry, "ContentType", path, where),
            input_mode=_string(entry, "TrainingInputMode", path, where) or "File",
            compression=_string(entry, "CompressionType", path, where) or "None",
            record_wrapper=_string(entry, "RecordWrapperType", path, where) or "None",
            distribution=_string(entry, "S3DistributionType", path, where) or "FullyReplicated",
        )
    return channels


def read_resource_config(paths: SageMakerPaths) -> ResourceConfig:
    """This host and the cluster; ``algo-1`` alone when the file is absent."""
    path = paths.resource_config_file
    raw = _expect_object(_read_json(path), path)
    host = _string(raw, "current_host", path) or "algo-1"
    hosts = raw.get("hosts") or [host]
    if not isinstance(hosts, list) or not all(isinstance(h, str) for h in hosts):
        raise ClientError(f"hosts in {path} must be an array of host names, found {hosts!r:.60}")
    return ResourceConfig(
        current_host=host,
        hosts=hosts,
        network_interface_name=_string(raw, "network_interface_name", path),
        current_instance_type=_string(raw, "current_instance_type", path),
    )
