"""A trained model (an image plus ``model_data``) that can be deployed to an endpoint or run as a batch
transform, on the back end its ``instance_type`` selects."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fmwals import jobs
from fmwals.backends import backend_for
from fmwals.backends.backend import ModelSpec
from fmwals.builtin_export import export_builtin
from fmwals.images import base_name, default_image
from fmwals.predictor import FactorizationMachinesPredictor, Predictor
from fmwals.transformer import Transformer


class Model:
    """``model_data`` is a ``model.tar.gz`` or model directory: a local path, ``file://`` or ``s3://``."""

    def __init__(
        self,
        image_uri: str | None = None,
        model_data: str | None = None,
        role: str | None = None,
        predictor_cls: type[Predictor] | None = None,
        env: dict[str, str] | None = None,
        name: str | None = None,
        sagemaker_session: Any = None,
        image: str | None = None,
    ) -> None:
        self.image_uri = image_uri or image or default_image()
        if model_data is None:
            raise ValueError("Model needs model_data (a model.tar.gz or a model directory)")
        self.model_data = model_data
        self.role = role
        self.predictor_cls = predictor_cls or Predictor
        self.env = dict(env or {})
        self.name = name
        self.sagemaker_session = sagemaker_session
        self.endpoint_name: str | None = None

    @property
    def spec(self) -> ModelSpec:
        """What a back end runs for this model."""
        return ModelSpec(self.image_uri, self.model_data, dict(self.env), self.role)

    def deploy(
        self,
        initial_instance_count: int = 1,
        instance_type: str | None = None,
        serializer: Any = None,
        deserializer: Any = None,
        endpoint_name: str | None = None,
        wait: bool = True,
        port: int | None = None,
        **kwargs: Any,
    ) -> Predictor:
        """Start an endpoint serving this model and return a predictor for it.

        ``port`` (local back ends only) fixes the host port; by default a free one is used.
        """
        if instance_type is None:
            raise ValueError("deploy needs instance_type: 'local_process', 'local' or an 'ml.*' type")
        backend = backend_for(instance_type, self.sagemaker_session)
        name = endpoint_name or self.name or jobs.unique_name(base_name(self.image_uri))
        backend.create_endpoint(name, self.spec, instance_type, initial_instance_count, port)
        self.endpoint_name = name
        predictor_kwargs = {
            k: v for k, v in (("serializer", serializer), ("deserializer", deserializer)) if v is not None
        }
        return self.predictor_cls(name, sagemaker_session=self.sagemaker_session, **predictor_kwargs)

    def transformer(self, instance_count: int, instance_type: str, *args: Any, **kwargs: Any) -> Transformer:
        """A batch transformer running this model; the other arguments are ``Transformer``'s."""
        return Transformer(
            self.spec, instance_count, instance_type, *args, sagemaker_session=self.sagemaker_session, **kwargs
        )


class FactorizationMachinesModel(Model):
    """An FM model (``model_data``) whose ``deploy`` returns a ``FactorizationMachinesPredictor``, as the SDK's
    class of the same name; the other keyword arguments are ``Model``'s."""

    def __init__(self, model_data: str, role: str | None = None, sagemaker_session: Any = None,
                 **kwargs: Any) -> None:
        super().__init__(model_data=model_data, role=role, predictor_cls=FactorizationMachinesPredictor,
                         sagemaker_session=sagemaker_session, **kwargs)

    def export_builtin(self, path: str | os.PathLike[str]) -> Path:
        """Write this model to the local file ``path`` as the built-in SageMaker FM's ``model.tar.gz``
        (``model_algo-1``), which MXNet scripts written for the built-in load; returns the path."""
        return export_builtin(self.model_data, path, self.sagemaker_session)
