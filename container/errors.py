"""Error types: what the user must fix (exit 1 with a one-line reason) versus our own bugs."""

from __future__ import annotations


class ClientError(Exception):
    """A problem the user can fix: a bad hyperparameter (``container.training`` reports the schema's
    ``HyperparameterError`` as one), bad data, a missing channel.

    ``str(error)`` is the one-line human reason written first in ``output/failure``.
    """


class DataError(ClientError):
    """Input data that cannot be decoded; the message names the source and the record, line or byte offset."""


class ChannelError(ClientError):
    """A required channel is missing or empty, or a channel is configured wrongly."""


class UnsupportedFormatError(ClientError):
    """A content type no decoder or encoder handles."""

    def __init__(self, content_type: str, supported: list[str]) -> None:
        self.content_type = content_type
        self.supported = list(supported)
        super().__init__(
            f"Unsupported content type {content_type!r}; supported: {', '.join(sorted(supported))}"
        )
