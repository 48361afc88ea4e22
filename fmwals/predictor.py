"""Predictors: send rows to an endpoint (local or on SageMaker) and read the answers.

``Predictor(endpoint_name, serializer=..., deserializer=...)`` has the SDK v2 interface; SDK serializers
and deserializers work too, and so do v1-style callables (``json_deserializer`` & co. below) and
``content_type``/``accept`` assignments. Each predictor class has the SDK's default pair, so ``predict``
returns what it returns with the SDK: bytes from ``Predictor``, a list of ``Record`` messages from
``FactorizationMachinesPredictor``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from typing import Any

from fmwals.backends import backend_for_endpoint
from fmwals.backends.backend import Backend
from fmwals.serializers import (
    JSON,
    BytesDeserializer,
    CSVDeserializer,
    CSVSerializer,
    IdentitySerializer,
    JSONDeserializer,
    JSONSerializer,
    PredictionsDeserializer,
    RecordDeserializer,
    RecordSerializer,
)

# The SDK v1's module-level (de)serializers (``from sagemaker.predictor import json_deserializer``).
json_serializer = JSONSerializer()
json_deserializer = JSONDeserializer()
csv_serializer = CSVSerializer()
csv_deserializer = CSVDeserializer()


def _request_body(body: Any, serializer: Any) -> bytes:
    """What a serializer returned as the request's bytes (bytes, text, or a buffer like the SDK's
    RecordSerializer returns)."""
    if hasattr(body, "read"):
        body = body.read()
    if isinstance(body, bytes | bytearray):
        return bytes(body)
    if isinstance(body, str):
        return body.encode()
    raise TypeError(
        f"the serializer ({type(serializer).__name__}) made a {type(body).__name__}, not bytes: the default "
        "Predictor sends bytes as they are (the SDK's IdentitySerializer). To send arrays, set "
        "predictor.serializer, e.g. fmwals.serializers.JSONSerializer() or CSVSerializer()"
    )


class Predictor:
    """Real-time predictions from the endpoint ``endpoint_name``. By default the request body is sent as it
    is (bytes or text) and the response body returned as bytes, as with the SDK's ``Predictor``."""

    # What ``serializer=None`` / ``deserializer=None`` mean; subclasses override.
    default_serializer: Any = IdentitySerializer
    default_deserializer: Any = BytesDeserializer

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
        self.serializer: Any = serializer if serializer is not None else self.default_serializer()
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
        body = _request_body(serialize(data), self.serializer)
        args = initial_args or {}
        content_type = args.get("ContentType", self._content_type())
        accept = args.get("Accept", self._accept())
        response, response_type = self.backend.invoke_endpoint(self.endpoint_name, body, content_type, accept)
        deserialize = getattr(self.deserializer, "deserialize", self.deserializer)
        return deserialize(io.BytesIO(response), response_type)

    def delete_endpoint(self, delete_endpoint_config: bool = True) -> None:
        """Stop the endpoint and forget it."""
        self.backend.delete_endpoint(self.endpoint_name)


class FactorizationMachinesPredictor(Predictor):
    """FM predictions as the SDK's ``FactorizationMachinesPredictor`` returns them: rows (an ndarray, a scipy
    sparse matrix or a list of rows) go out as RecordIO-protobuf, and ``predict`` returns a list of ``Record``
    messages, one per row: ``record.label["score"].float32_tensor.values[0]`` (and ``"predicted_label"`` for
    a binary classifier). ``deserializer=PredictionsDeserializer()`` gives ``[{"score": s,
    "predicted_label": l}, ...]`` instead."""

    default_serializer = RecordSerializer
    default_deserializer = RecordDeserializer

    def recommend(
        self,
        context: dict[str, Any] | list[dict[str, Any]] | None,
        candidates: dict[str, Any] | range | Sequence[int],
        k: int | None = None,
        exclude: Sequence[Any] | None = None,
        include: Sequence[Any] | None = None,
    ) -> list[dict[str, Any]]:
        """The top ``k`` candidates for each context (a top-k query of the endpoint, README "Top-k queries"):
        ``[{"candidates": [...], "scores": [...], "predicted_labels": [...]}, ...]``, one dict per context,
        best first, in the ids sent. ``context``: ``{"keys": [...], "values": [...]}`` (values optional), a
        list of them (one query each, sharing the candidates) or None (no context features). ``candidates``:
        a ``range`` of feature indices, a list of feature indices, or the query's own ``{"range": [lo, hi]}``,
        ``{"ids": [...]}`` or ``{"rows": [...], "row_ids": [...]}``. ``k`` defaults to 10 (or all candidates
        when fewer); ``exclude``/``include``: candidate ids to leave out / to rank alone. Does not change what
        ``predict`` sends or returns."""
        contexts = context if isinstance(context, list) else [context]
        if isinstance(candidates, range):
            if candidates.step != 1:
                raise ValueError(f"candidates range must have step 1, got {candidates!r}")
            spec: dict[str, Any] = {"range": [candidates.start, candidates.stop]}
        elif isinstance(candidates, dict):
            spec = candidates
        else:
            spec = {"ids": list(candidates)}
        fields: dict[str, Any] = {"candidates": spec}
        if k is not None:
            fields["k"] = int(k)
        for name, ids in (("exclude", exclude), ("include", include)):
            if ids is not None:
                fields[name] = list(ids)
        queries = [fields if c is None else {"context": c, **fields} for c in contexts]
        body = json.dumps({"queries": queries}, default=_plain).encode()
        response, content_type = self.backend.invoke_endpoint(self.endpoint_name, body, JSON, JSON)
        return PredictionsDeserializer().deserialize(io.BytesIO(response), content_type)


def _plain(value: Any) -> Any:
    """numpy arrays and scalars as JSON-ready values."""
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")
