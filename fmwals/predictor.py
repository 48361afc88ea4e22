"""Predictors: send rows to an endpoint (local or on SageMaker) and read the answers.

``Predictor(endpoint_name, serializer=..., deserializer=...)`` has the SDK v2 interface; SDK serializers
and deserializers work too, and so do v1-style callables and ``content_type``/``accept`` assignments.
"""

from __future__ import annotations

import io
from typing import Any

from fmwals.backends import backend_for_endpoint
from fmwals.backends.backend import Backend
from fmwals.serializers import JSONDeserializer, JSONSerializer, PredictionsDeserializer


class Predictor:
    """Real-time predictions from the endpoint ``endpoint_name``."""

    default_deserializer: Any = JSONDeserializer  # what ``deserializer=None`` means; subclasses override

    def __init__(
        self,
        endpoint_name: str,
        sagemaker_session: Any = None,
        serializer: Any = None,
        deserializer: Any = None,
        content_type: str | None = None,
        accept: str | None = None,
    ) -> None:
        self.endpoint_name = endpoint_name
        self.sagemaker_session = sagemaker_session
        self.serializer: Any = serializer if serializer is not None else JSONSerializer()
        self.deserializer: Any = deserializer if deserializer is not None else self.default_deserializer()
        self.content_type = content_type
        self.accept = accept
        self._backend: Backend | None = None

    @property
    def endpoint(self) -> str:
        """The endpoint's name (the SDK v1 attribute)."""
        return self.endpoint_name

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = backend_for_endpoint(self.endpoint_name, self.sagemaker_session)
        return self._backend

    def _content_type(self) -> str:
        return (
            self.content_type
            or getattr(self.serializer, "CONTENT_TYPE", None)
            or getattr(self.serializer, "content_type", None)
            or "application/json"
        )

    def _accept(self) -> str:
        if self.accept:
            return self.accept
        accept = getattr(self.deserializer, "ACCEPT", None) or getattr(self.deserializer, "accept", None)
        if isinstance(accept, str):
            return accept
        return ", ".join(accept) if accept else "application/json"

    def predict(self, data: Any, initial_args: dict[str, str] | None = None) -> Any:
        """Serialize ``data``, invoke the endpoint, deserialize the answer.

        ``initial_args`` may override ``ContentType`` and ``Accept`` for this call.
        """
        serialize = getattr(self.serializer, "serialize", self.serializer)
        body = serialize(data)
        if hasattr(body, "read"):  # the SDK's RecordSerializer returns a buffer
            body = body.read()
        args = initial_args or {}
        content_type = args.get("ContentType", self._content_type())
        accept = args.get("Accept", self._accept())
        response, response_type = self.backend.invoke_endpoint(
            self.endpoint_name, body if isinstance(body, bytes) else str(body).encode(), content_type, accept
        )
        deserialize = getattr(self.deserializer, "deserialize", self.deserializer)
        return deserialize(io.BytesIO(response), response_type)

    def delete_endpoint(self, delete_endpoint_config: bool = True) -> None:
        """Stop the endpoint and forget it."""
        self.backend.delete_endpoint(self.endpoint_name)


class FactorizationMachinesPredictor(Predictor):
    """FM predictions in the built-in's record shape: ``[{"score": s, "predicted_label": l}, ...]`` (no
    ``predicted_label`` for a regressor) from an ndarray, a scipy sparse matrix or a list of rows."""

    default_deserializer = PredictionsDeserializer
