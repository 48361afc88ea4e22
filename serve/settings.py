"""The serving knobs SageMaker (or the inference-toolkit conventions) pass as environment variables.

Only the standard library, ``container.resources`` and ``serve.limits``: gunicorn's config reads these before numba is
imported (``NUMBA_NUM_THREADS`` must be set first).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from container.resources import usable_cpus
from serve.limits import MB, Limits

DEFAULT_ACCEPT = "application/json"
DEFAULT_PORT = 8080
DEFAULT_TIMEOUT_SECONDS = 60
DEFAULT_CLIENT_TIMEOUT_SECONDS = 30
MAX_TIMEOUT_SECONDS = 86400
MAX_PAYLOAD_LIMIT_MB = 100  # SageMaker's ceiling for MaxPayloadInMB
MAX_TRANSFORM_MEGABYTES = 100  # SageMaker: MaxConcurrentTransforms x MaxPayloadInMB <= 100
MAX_RESPONSE_MB = 6  # InvokeEndpoint's response Body holds at most 6291456 bytes (the sagemaker-runtime API)
BATCH_MAX_RESPONSE_MB = 100  # batch transform documents no response limit: its payload ceiling
MAX_RESPONSE_LIMIT_MB = 1024
MIN_ROW_RESPONSE_BYTES = 4  # the smallest answer a row can have: "0.0\n" (a regressor's score in CSV)


@dataclass(frozen=True)
class ServeSettings:
    workers: int
    cpus: int
    default_accept: str = DEFAULT_ACCEPT
    max_payload_mb: int = 6
    port: int = DEFAULT_PORT
    timeout_seconds: int = DEFAULT_TIMEOUT_SECONDS
    batch: bool = False  # serving a batch transform job (SAGEMAKER_BATCH)
    max_response_mb: int = MAX_RESPONSE_MB
    max_rows: int = MAX_RESPONSE_MB * MB // MIN_ROW_RESPONSE_BYTES
    client_timeout_seconds: int = DEFAULT_CLIENT_TIMEOUT_SECONDS  # FMWALS_CLIENT_TIMEOUT

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ServeSettings:
        """Settings from ``SAGEMAKER_MODEL_SERVER_WORKERS`` (default: usable CPUs),
        ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT``, ``SAGEMAKER_MAX_PAYLOAD_IN_MB`` (1-100, default 6),
        ``SAGEMAKER_BIND_TO_PORT`` (default 8080), ``SAGEMAKER_MODEL_SERVER_TIMEOUT`` (seconds, default 60,
        0 for none), ``SAGEMAKER_BATCH`` (``true`` in batch transform), and this image's own
        ``FMWALS_CLIENT_TIMEOUT`` (seconds nginx waits for a client's next bytes, 1-3600, default 30),
        ``FMWALS_MAX_RESPONSE_IN_MB`` (1-1024; default 6, InvokeEndpoint's response limit, or 100 in batch
        transform) and ``FMWALS_MAX_ROWS_PER_REQUEST`` (default: as many rows as the smallest answer, 4
        bytes, fits in the response limit); ``ValueError`` naming the variable when one is malformed."""
        cpus = usable_cpus()
        accept = environ.get("SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT", "").strip()
        batch = environ.get("SAGEMAKER_BATCH", "").strip().lower() in ("true", "1")
        response_mb = _int_env(environ, "FMWALS_MAX_RESPONSE_IN_MB",
                               BATCH_MAX_RESPONSE_MB if batch else MAX_RESPONSE_MB, 1, MAX_RESPONSE_LIMIT_MB)
        return cls(
            workers=_int_env(environ, "SAGEMAKER_MODEL_SERVER_WORKERS", cpus, 1, 1024),
            cpus=cpus,
            default_accept=accept or DEFAULT_ACCEPT,
            max_payload_mb=_int_env(environ, "SAGEMAKER_MAX_PAYLOAD_IN_MB", 6, 1, MAX_PAYLOAD_LIMIT_MB),
            port=_int_env(environ, "SAGEMAKER_BIND_TO_PORT", DEFAULT_PORT, 1, 65535),
            timeout_seconds=_int_env(
                environ, "SAGEMAKER_MODEL_SERVER_TIMEOUT", DEFAULT_TIMEOUT_SECONDS, 0, MAX_TIMEOUT_SECONDS
            ),
            batch=batch,
            max_response_mb=response_mb,
            max_rows=_int_env(environ, "FMWALS_MAX_ROWS_PER_REQUEST",
                              response_mb * MB // MIN_ROW_RESPONSE_BYTES, 1, 2**62),
            client_timeout_seconds=_int_env(environ, "FMWALS_CLIENT_TIMEOUT", DEFAULT_CLIENT_TIMEOUT_SECONDS, 1, 3600),
        )

    @property
    def numba_threads(self) -> int:
        """numba threads per worker so that workers x threads <= usable CPUs (at least 1)."""
        return max(1, self.cpus // self.workers)

    @property
    def max_payload_bytes(self) -> int:
        return self.max_payload_mb * MB

    @property
    def limits(self) -> Limits:
        """Rows per request and response bytes (``serve.limits``)."""
        return Limits(max_rows=self.max_rows, max_response_bytes=self.max_response_mb * MB)

    @property
    def payload_too_large_message(self) -> str:
        """The 413 error's reason, the same from nginx and from the app."""
        return f"request body larger than the {self.max_payload_mb} MB limit (SAGEMAKER_MAX_PAYLOAD_IN_MB)"

    @property
    def max_concurrent_transforms(self) -> int:
        """One batch-transform request per worker, within SageMaker's 100 MB x concurrency budget."""
        return max(1, min(self.workers, MAX_TRANSFORM_MEGABYTES // self.max_payload_mb))


def _int_env(environ: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    text = environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text!r}") from None
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low} and {high}, got {value}")
    return value
