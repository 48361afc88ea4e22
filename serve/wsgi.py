"""``app`` for gunicorn: the model in ``$SAGEMAKER_BASE_DIR/model`` (default /opt/ml/model) behind Flask."""

from __future__ import annotations

from container.paths import SageMakerPaths
from serve import model_store
from serve.app import ServeSettings, create_app

servable = model_store.load(SageMakerPaths.from_env().model_dir)
app = create_app(servable, ServeSettings.from_env())
