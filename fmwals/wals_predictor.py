"""The WALS endpoint's predictor: JSON requests in, parsed JSON out."""

from __future__ import annotations

from typing import Any

from fmwals.predictor import Predictor
from fmwals.serializers import JSONDeserializer, JSONSerializer


class WALSPredictor(Predictor):
    """Predictions of a WALS endpoint (original ids in, original ids out)."""

    def __init__(
        self,
        endpoint_name: str,
        sagemaker_session: Any = None,
        serializer: Any = None,
        deserializer: Any = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(
            endpoint_name,
            sagemaker_session,
            serializer or JSONSerializer(),
            deserializer or JSONDeserializer(),
            **kwargs,
        )
