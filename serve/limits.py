"""Bounds on the work and the response of one invocation: rows per request and response bytes.

A small body can ask for a huge answer (a 6 MB libsvm body of label-only lines is 3 million rows, a 168 MB
RecordIO response), which SageMaker would drop anyway (``InvokeEndpoint`` returns at most 6 MB). The servables
check the row (or query) count and the fewest bytes its answer can take right after decoding, before any
scoring (``check_rows``, ``check_estimate``), then the encoded body itself (``check_body``: the estimate is a
lower bound); each answers 413 with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass

from container.errors import ClientError

MB = 1024 * 1024
MIN_CANDIDATE_BYTES = 6  # a ranked candidate's id and score in a top-k answer: at least "1,0.0,"


class ResponseTooLargeError(ClientError):
    """An invocation whose rows or response exceed the limits (413)."""


@dataclass(frozen=True)
class Limits:
    """``max_rows`` rows per request and ``max_response_bytes`` per response (settings in the messages)."""

    max_rows: int
    max_response_bytes: int

    def check_rows(self, rows: int, unit: str = "rows") -> None:
        """Refuse a request of more than ``max_rows`` rows (or queries: ``unit``)."""
        if rows > self.max_rows:
            raise ResponseTooLargeError(
                f"the request holds {rows} {unit}, more than the {self.max_rows} allowed per request "
                f"(FMWALS_MAX_ROWS_PER_REQUEST): send the {unit} in several requests")

    def check_estimate(self, min_bytes: int, what: str) -> None:
        """Refuse, before any work, a response that will take at least ``min_bytes`` (``what``: its content,
        e.g. "3000000 rows at 56 bytes each") when that is over ``max_response_bytes``."""
        if min_bytes > self.max_response_bytes:
            raise ResponseTooLargeError(
                f"the response would take at least {min_bytes} bytes ({what}), more than the "
                f"{self._limit_text()} response limit (FMWALS_MAX_RESPONSE_IN_MB): send less per request")

    def check_body(self, body: bytes) -> bytes:
        """``body``, or ``ResponseTooLargeError`` when it is longer than ``max_response_bytes``."""
        if len(body) > self.max_response_bytes:
            raise ResponseTooLargeError(
                f"the response takes {len(body)} bytes, more than the {self._limit_text()} response limit "
                "(FMWALS_MAX_RESPONSE_IN_MB): send less per request")
        return body

    def _limit_text(self) -> str:
        megabytes = self.max_response_bytes / MB
        return f"{megabytes:g} MB" if megabytes == int(megabytes) else f"{self.max_response_bytes} bytes"


UNLIMITED = Limits(max_rows=2**62, max_response_bytes=2**62)
