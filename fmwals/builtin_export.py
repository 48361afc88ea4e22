"""An FM model's ``model_data`` (local, ``file://`` or ``s3://``) written as the built-in SageMaker FM's
``model.tar.gz`` (``model_algo-1``), which MXNet scripts written for the built-in load."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from algorithm import artifact
from fmwals.inputs import is_local, local_path
from fmwals.session import Session, download


def export_builtin(model_data: str, path: str | os.PathLike[str], sagemaker_session: Any = None) -> Path:
    """Write the FM model at ``model_data`` to the local file ``path`` in the built-in's layout; returns the
    path. ``artifact.ArtifactError`` when ``model_data`` holds no FM model."""
    if is_local(model_data):
        return artifact.export_builtin(local_path(model_data), path)
    with tempfile.TemporaryDirectory() as tmp:
        downloaded = download((sagemaker_session or Session()).s3_client, model_data, Path(tmp))
        return artifact.export_builtin(downloaded, path)
