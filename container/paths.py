"""Every /opt/ml path, derived from one base directory (``SAGEMAKER_BASE_DIR``, default ``/opt/ml``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BASE_DIR_ENV = "SAGEMAKER_BASE_DIR"
DEFAULT_BASE_DIR = "/opt/ml"


@dataclass(frozen=True)
class SageMakerPaths:
    """The SageMaker directory layout under ``base``; pure path arithmetic, no I/O."""

    base: Path

    @classmethod
    def from_env(cls) -> SageMakerPaths:
        """Paths under ``$SAGEMAKER_BASE_DIR`` (or ``/opt/ml`` when unset)."""
        return cls(Path(os.environ.get(BASE_DIR_ENV) or DEFAULT_BASE_DIR))

    @property
    def input_config(self) -> Path:
        return self.base / "input" / "config"

    @property
    def hyperparameters_file(self) -> Path:
        return self.input_config / "hyperparameters.json"

    @property
    def input_data_config_file(self) -> Path:
        return self.input_config / "inputdataconfig.json"

    @property
    def resource_config_file(self) -> Path:
        return self.input_config / "resourceconfig.json"

    @property
    def input_data(self) -> Path:
        return self.base / "input" / "data"

    def channel_dir(self, channel: str) -> Path:
        """File-mode directory of ``channel``."""
        return self.input_data / channel

    def pipe_path(self, channel: str, epoch: int) -> Path:
        """Pipe-mode FIFO of ``channel`` for ``epoch`` (``<channel>_<epoch>``)."""
        return self.input_data / f"{channel}_{epoch}"

    @property
    def model_dir(self) -> Path:
        return self.base / "model"

    @property
    def output_dir(self) -> Path:
        return self.base / "output"

    @property
    def output_data_dir(self) -> Path:
        return self.output_dir / "data"

    @property
    def failure_file(self) -> Path:
        return self.output_dir / "failure"

    @property
    def checkpoint_dir(self) -> Path:
        return self.base / "checkpoints"

    @property
    def scratch_dir(self) -> Path:
        """Where a job keeps its on-disk working data (caches of decoded data, memory-mapped matrices):
        ``input/scratch``, on the training volume (``VolumeSizeInGB``, which SageMaker sizes for the data
        and names as the algorithms' scratch space) beside the channels, never in ``model/`` or ``output/``
        (uploaded) nor ``checkpoints/`` (synced to S3). Each job makes its own directory under it and removes
        it at the end."""
        return self.base / "input" / "scratch"
