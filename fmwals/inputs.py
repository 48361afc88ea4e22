"""Training inputs as the SageMaker SDK spells them: ``TrainingInput`` (v1 ``s3_input``), ``RecordSet``, and
the normalization of everything ``fit`` accepts into one channel map."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

LOCAL_SCHEMES = ("file://",)


@dataclass
class TrainingInput:
    """One channel: where its data is and how the container should read it.

    ``s3_data`` is an ``s3://`` URI, or for the local back ends a local path or ``file://`` URI.
    """

    s3_data: str
    distribution: str | None = None
    compression: str | None = None
    content_type: str | None = None
    record_wrapping: str | None = None
    s3_data_type: str = "S3Prefix"
    input_mode: str | None = None

    @property
    def config(self) -> dict[str, Any]:
        """The Channel structure of CreateTrainingJob, less its name."""
        source: dict[str, Any] = {
            "S3DataType": self.s3_data_type,
            "S3Uri": self.s3_data,
            "S3DataDistributionType": self.distribution or "FullyReplicated",
        }
        channel: dict[str, Any] = {"DataSource": {"S3DataSource": source}}
        for key, value in (
            ("CompressionType", self.compression),
            ("ContentType", self.content_type),
            ("RecordWrapperType", self.record_wrapping),
            ("InputMode", self.input_mode),
        ):
            if value is not None:
                channel[key] = value
        return channel

    @classmethod
    def from_config(cls, channel: Mapping[str, Any]) -> TrainingInput:
        """The inverse of ``config`` (used by ``attach``)."""
        source = channel["DataSource"]["S3DataSource"]
        return cls(
            source["S3Uri"],
            source.get("S3DataDistributionType"),
            channel.get("CompressionType"),
            channel.get("ContentType"),
            channel.get("RecordWrapperType"),
            source.get("S3DataType", "S3Prefix"),
            channel.get("InputMode"),
        )


s3_input = TrainingInput  # the SDK v1 name


@dataclass
class RecordSet:
    """RecordIO-protobuf data written by ``record_set()``: where it is, how many rows and columns."""

    s3_data: str
    num_records: int
    feature_dim: int
    s3_data_type: str = "ManifestFile"
    channel: str = "train"
    content_type: str | None = None  # None: RecordIO-protobuf; WALS record sets are text/csv triplets

    def records_s3_input(self) -> TrainingInput:
        distribution = "ShardedByS3Key" if self.s3_data_type == "ManifestFile" else "FullyReplicated"
        return TrainingInput(
            self.s3_data,
            distribution=distribution,
            s3_data_type=self.s3_data_type,
            content_type=self.content_type,
        )

    def data_channel(self) -> dict[str, TrainingInput]:
        return {self.channel: self.records_s3_input()}


Inputs = str | Path | TrainingInput | RecordSet | list[RecordSet] | Mapping[str, Any] | None


def is_local(uri: str) -> bool:
    """Whether ``uri`` names local data (a path or ``file://``) rather than S3."""
    return not uri.startswith("s3://")


def local_path(uri: str) -> Path:
    """The filesystem path of a local URI."""
    for scheme in LOCAL_SCHEMES:
        if uri.startswith(scheme):
            uri = uri[len(scheme) :]
    return Path(uri).expanduser().resolve()


def _channel(value: Any, name: str) -> TrainingInput:
    if isinstance(value, TrainingInput):
        return value
    if isinstance(value, RecordSet):
        return value.records_s3_input()
    if isinstance(value, (str, Path)):
        return TrainingInput(str(value))
    raise TypeError(
        f"channel {name!r}: expected a path, an s3:// URI, a TrainingInput or a RecordSet, "
        f"got {type(value).__name__}"
    )


def normalize(inputs: Inputs) -> dict[str, TrainingInput]:
    """Channel name -> TrainingInput for everything ``fit`` accepts (a bare location means ``train``)."""
    if inputs is None:
        return {}
    if isinstance(inputs, RecordSet):
        return inputs.data_channel()
    if isinstance(inputs, list):
        return {r.channel: r.records_s3_input() for r in inputs}
    if isinstance(inputs, Mapping):
        return {str(name): _channel(value, str(name)) for name, value in inputs.items()}
    return {"train": _channel(inputs, "train")}


def feature_dim_of(inputs: Inputs) -> int | None:
    """The feature dimension a RecordSet (or list of them) carries, for FM's ``feature_dim``."""
    records = [inputs] if isinstance(inputs, RecordSet) else inputs if isinstance(inputs, list) else []
    if isinstance(inputs, Mapping):
        records = [v for v in inputs.values() if isinstance(v, RecordSet)]
    dims = {r.feature_dim for r in records if isinstance(r, RecordSet)}
    return dims.pop() if len(dims) == 1 else None
