"""The Flask app: ``GET /ping``, ``POST /invocations``, ``GET /execution-parameters``, errors as JSON.

- ``/ping`` answers 200 with an empty body once the servable is warm (it warms it if no gunicorn hook has).
- ``/invocations`` picks the decoder from Content-Type (parameters ignored; 415 if unsupported), the encoder
  from Accept (q-values honoured, ``*/*`` or absent means ``SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT``; 406 if
  nothing matches), refuses bodies above ``SAGEMAKER_MAX_PAYLOAD_IN_MB`` (413) and empty ones (400), refuses
  before any scoring requests over ``FMWALS_MAX_ROWS_PER_REQUEST`` rows or whose answer would exceed
  ``FMWALS_MAX_RESPONSE_IN_MB`` (413, ``serve.limits``), and
  replies with the chosen type as Content-Type. JSON Lines and CSV bodies end with a newline, except in
  batch transform (``SAGEMAKER_BATCH``), whose ``AssembleWith=Line`` appends one per response. A worker's
  threads run invocations concurrently when each worker has one numba thread (the default: workers = CPUs),
  as scoring is then serial; with more numba threads per worker a lock lets one invocation run at a time,
  since numba's workqueue threading layer aborts on concurrent parallel regions.
- ``/execution-parameters`` offers ``MaxConcurrentTransforms`` (one per worker, within SageMaker's
  ``MaxConcurrentTransforms x MaxPayloadInMB <= 100``) and ``MaxPayloadInMB``, and leaves ``BatchStrategy``
  out: the platform's documented spelling ``MULTI_RECORD`` breaks SDK local mode, which copies it verbatim
  and accepts only ``MultiRecord``/``SingleRecord``; both strategies work, so the job's choice stands.

Client mistakes (``ClientError``) become 400 with ``{"error": "<reason>"}``; anything else is logged with
its traceback and answered 500 with a short message. ``/invocations`` is served by ``Invocations``, plain WSGI
in front of Flask (measured: Flask's per-request machinery cost as much as a one-row invocation); Flask
serves the other routes.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import numba
import orjson
from flask import Flask, Response
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from container.errors import ClientError, UnsupportedFormatError
from container.formats.registry import JSON, media_type
from container.formats.responses import for_line_assembly
from serve.limits import MB, ResponseTooLargeError
from serve.model_store import Servable
from serve.settings import ServeSettings

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

log = logging.getLogger(__name__)


def choose_accept(header: str | None, supported: Sequence[str], default: str) -> str | None:
    """The response media type for an Accept header: by descending q-value, then header order, the first
    supported type (aliases resolved); ``*/*`` (or no header) means ``default``. ``None`` when nothing is
    acceptable."""
    if header in supported:
        return header
    if not header or not header.strip():
        return default
    ranked = []
    for position, item in enumerate(header.split(",")):
        name, *params = item.split(";")
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, position, media_type(name)))
    for _, _, name in sorted(ranked):
        if name == "*/*":
            return default
        if name in supported:
            return name
    return None


def _error(status: int, message: str) -> tuple[int, str, bytes]:
    return status, JSON, orjson.dumps({"error": message})


def _flask_error(status: int, message: str) -> Response:
    _, content_type, body = _error(status, message)
    return Response(body, status=status, content_type=content_type)


def _read_body(environ: dict[str, Any], limit: int) -> bytes:
    """The request body; ``RequestEntityTooLarge`` (413) when it is longer than ``limit``, with or without a
    Content-Length (Werkzeug's ``MAX_CONTENT_LENGTH`` silently truncates a chunked body at the limit).

    A refused body is read to its end and dropped, so the client sees the 413 rather than a reset
    connection, and the kept-alive connection stays usable.
    """
    stream = environ["wsgi.input"]
    length = environ.get("CONTENT_LENGTH")  # gunicorn has validated it; absent for chunked transfer
    if not length:
        body: bytes | None = stream.read(limit + 1)
    else:
        body = stream.read(int(length)) if int(length) <= limit else None
    if body is None or len(body) > limit:
        while stream.read(MB):
            pass
        raise RequestEntityTooLarge()
    return body


_STATUS_LINES = {status: f"{status} {HTTPStatus(status).phrase}" for status in (200, 400, 405, 406, 413, 415, 500)}


class Invocations:
    """``POST /invocations`` as plain WSGI in front of the Flask app, which serves every other request.

    Flask's routing, request context and request/response objects cost about as much as decoding and
    scoring a one-row request (docs/benchmarks.md, "Serving"), so this path reads the WSGI environ and
    writes the response itself. Client mistakes (``ClientError``) become 400 (415 for an unsupported
    Content-Type), anything else 500 after logging the traceback.
    """

    def __init__(self, fallback: WSGIApplication, servable: Servable, settings: ServeSettings,
                 default_accept: str) -> None:
        self.fallback = fallback
        self.servable = servable
        self.settings = settings
        self.default_accept = default_accept
        self.limits = settings.limits
        parallel_scoring = numba.config.NUMBA_NUM_THREADS > 1  # type: ignore[attr-defined]
        self.lock: contextlib.AbstractContextManager[object] = (
            threading.Lock() if parallel_scoring else contextlib.nullcontext()
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/invocations":
            return self.fallback(environ, start_response)
        headers = []
        try:
            if environ.get("REQUEST_METHOD") != "POST":
                headers.append(("Allow", "POST"))
                status, content_type, body = _error(405, "/invocations takes POST")
            else:
                status, content_type, body = self.invoke(environ)
        except UnsupportedFormatError as error:
            status, content_type, body = _error(415, str(error))
        except ResponseTooLargeError as error:
            status, content_type, body = _error(413, str(error))
        except ClientError as error:
            status, content_type, body = _error(400, str(error))
        except RequestEntityTooLarge:
            status, content_type, body = _error(413, self.settings.payload_too_large_message)
        except Exception as error:
            log.exception("invocation failed")
            status, content_type, body = _error(500, f"internal error ({type(error).__name__}); see the "
                                                "endpoint's logs")
        headers += [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        start_response(_STATUS_LINES[status], headers)
        return [body]

    def invoke(self, environ: WSGIEnvironment) -> tuple[int, str, bytes]:
        """Status, Content-Type and body of the response to one invocation."""
        servable = self.servable
        content_type = media_type(environ.get("CONTENT_TYPE"))
        if content_type not in servable.content_types:
            raise UnsupportedFormatError(content_type or "(none)", list(servable.content_types))
        accept = choose_accept(environ.get("HTTP_ACCEPT"), servable.accepts, self.default_accept)
        if accept is None:
            return _error(406, f"Unsupported Accept {environ.get('HTTP_ACCEPT')!r}; supported: "
                          f"{', '.join(servable.accepts)}")
        body = _read_body(environ, self.settings.max_payload_bytes)
        if not body:
            return _error(400, "empty request body: expected at least one record")
        with self.lock:
            response = servable.invoke(body, content_type, accept, self.limits)
        return 200, accept, for_line_assembly(accept, response) if self.settings.batch else response


def create_app(servable: Servable, settings: ServeSettings) -> Flask:
    """The WSGI app serving ``servable``; fails fast if the default Accept is one it cannot produce."""
    default_accept = media_type(settings.default_accept)
    if default_accept not in servable.accepts:
        raise ValueError(
            f"SAGEMAKER_DEFAULT_INVOCATIONS_ACCEPT {settings.default_accept!r} is not one of "
            f"{', '.join(servable.accepts)}"
        )
    app = Flask(__name__)
    execution_parameters = orjson.dumps({
        "MaxConcurrentTransforms": settings.max_concurrent_transforms,
        "MaxPayloadInMB": settings.max_payload_mb,
    })

    @app.get("/ping")
    def ping() -> Response:
        if not servable.warm:
            servable.warm_up()
        return Response(status=200)

    @app.get("/execution-parameters")
    def execution_parameters_route() -> Response:
        return Response(execution_parameters, content_type=JSON)

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        return _flask_error(error.code or 500, error.description or error.name)

    @app.errorhandler(Exception)
    def internal_error(error: Exception) -> Response:
        log.exception("request failed")
        return _flask_error(500, f"internal error ({type(error).__name__}); see the endpoint's logs")

    app.wsgi_app = Invocations(app.wsgi_app, servable, settings, default_accept)  # type: ignore[method-assign]
    return app
