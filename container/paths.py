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

    def scratch_dir(self, purpose: str) -> Path:
        """A directory for the job's own files on the training volume (``input/scratch/<purpose>``, e.g. the
        streamed data's on-disk cache); never in ``model/`` or ``output/``, which SageMaker uploads."""
        return self.base / "input" / "scratch" / purpose
