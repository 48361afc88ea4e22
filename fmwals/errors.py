"""The client's exceptions: each message says what went wrong and what to do about it."""

from __future__ import annotations


class FmwalsError(Exception):
    """Base class of every error the client raises."""


class InvalidHyperparameterError(FmwalsError, ValueError):
    """A hyperparameter name or value the container would reject; the message is the container's."""


class JobFailedError(FmwalsError, RuntimeError):
    """A training or transform job ended in a status other than Completed."""

    def __init__(self, job_name: str, status: str, reason: str) -> None:
        self.job_name = job_name
        self.status = status
        self.reason = reason
        super().__init__(f"Job {job_name} ended with status {status}: {reason}")


class BackendUnavailableError(FmwalsError, RuntimeError):
    """The back end cannot run: no Docker engine, no image, a port in use, a stopped container."""


class EndpointError(FmwalsError, RuntimeError):
    """An endpoint is missing or answered an invocation with an error status."""

    def __init__(self, message: str, status: int | None = None, body: str = "") -> None:
        self.status = status
        self.body = body
        super().__init__(message)
