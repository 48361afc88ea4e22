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
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return json.loads(text) if text.strip() else None
    except json.JSONDecodeError as err:
        raise ClientError(f"{path} is not valid JSON: {err.msg} at line {err.lineno} column {err.colno}") from None


def _expect_object(value: Any, path: Path) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ClientError(f"{path} must hold a JSON object, found {type(value).__name__}")
    return value


def read_hyperparameters(paths: SageMakerPaths) -> dict[str, Any]:
    """The raw hyperparameter map (values usually strings); empty when the file is absent."""
    return _expect_object(_read_json(paths.hyperparameters_file), paths.hyperparameters_file)


def read_input_data_config(paths: SageMakerPaths) -> dict[str, ChannelConfig]:
    """Channel name -> ChannelConfig; empty when the file is absent."""
    raw = _expect_object(_read_json(paths.input_data_config_file), paths.input_data_config_file)
    channels = {}
    for name, entry in raw.items():
        entry = _expect_object(entry, paths.input_data_config_file)
        channels[name] = ChannelConfig(
            name=name,
            content_type=str(entry["ContentType"]) if entry.get("ContentType") else None,
            input_mode=str(entry.get("TrainingInputMode") or "File"),
            compression=str(entry.get("CompressionType") or "None"),
            record_wrapper=str(entry.get("RecordWrapperType") or "None"),
            distribution=str(entry.get("S3DistributionType") or "FullyReplicated"),
        )
    return channels


def read_resource_config(paths: SageMakerPaths) -> ResourceConfig:
    """This host and the cluster; ``algo-1`` alone when the file is absent."""
    raw = _expect_object(_read_json(paths.resource_config_file), paths.resource_config_file)
    host = str(raw.get("current_host") or "algo-1")
    return ResourceConfig(
        current_host=host,
        hosts=list(raw.get("hosts") or [host]),
        network_interface_name=raw.get("network_interface_name"),
        current_instance_type=raw.get("current_instance_type"),
    )
