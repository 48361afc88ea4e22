"""``app`` for gunicorn: the model in ``$SAGEMAKER_BASE_DIR/model`` (default /opt/ml/model) behind Flask.

A model that cannot be read stops the server with one line naming the file and what is wrong (exit 1)."""

from __future__ import annotations

import sys

from algorithm.artifact import ArtifactError
from container.paths import SageMakerPaths
from serve import model_store
from serve.app import ServeSettings, create_app

try:
    servable = model_store.load(SageMakerPaths.from_env().model_dir)
except ArtifactError as error:  # SystemExit passes gunicorn's app loader: the message alone, no traceback
    sys.exit(f"Cannot start the server: {error}")
app = create_app(servable, ServeSettings.from_env())
