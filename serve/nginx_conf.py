"""nginx's configuration for serve.sh: ``python3 -m serve.nginx_conf RUN_DIR > RUN_DIR/nginx.conf``.

Fills in ``serve/nginx.conf`` from the SAGEMAKER_* settings (``serve.settings``): the port, the payload limit
(``client_max_body_size``, answered 413 with the app's JSON message), ``FMWALS_CLIENT_TIMEOUT`` for clients and
``SAGEMAKER_MODEL_SERVER_TIMEOUT`` for gunicorn's answer (504 after it; 0 means SageMaker's longest, one day).
A malformed setting exits 1 with the message gunicorn's configuration gives, before anything starts.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

from serve.settings import MAX_TIMEOUT_SECONDS, ServeSettings

TEMPLATE = Path(__file__).with_name("nginx.conf")
SHUTDOWN_SECONDS = 20  # in-flight requests after SIGTERM; gunicorn then stops within SageMaker's 30 s


def _json_error(message: str) -> str:
    """``{"error": message}`` as the app writes it, escaped for an nginx single-quoted string."""
    return json.dumps({"error": message}, separators=(",", ":")).replace("\\", "\\\\").replace("'", "\\'")


def render(settings: ServeSettings, run_dir: Path) -> str:
    """``serve/nginx.conf`` with every double-braced name replaced; ``KeyError`` for a name it does not know."""
    request_timeout = settings.timeout_seconds or MAX_TIMEOUT_SECONDS
    values = {
        "run_dir": str(run_dir),
        "port": str(settings.port),
        "max_payload_mb": str(settings.max_payload_mb),
        "client_timeout": str(settings.client_timeout_seconds),
        "request_timeout": str(request_timeout),
        "shutdown_seconds": str(SHUTDOWN_SECONDS),
        "payload_too_large": _json_error(settings.payload_too_large_message),
        "request_timed_out": _json_error(
            f"the model server did not answer within {request_timeout} s (SAGEMAKER_MODEL_SERVER_TIMEOUT)"),
    }
    return re.sub(r"\{\{(\w+)\}\}", lambda match: values[match.group(1)], TEMPLATE.read_text())


def main(argv: list[str]) -> None:
    if len(argv) != 1:
        sys.exit("usage: python3 -m serve.nginx_conf RUN_DIR > RUN_DIR/nginx.conf")
    try:
        settings = ServeSettings.from_env()
    except ValueError as error:
        sys.exit(f"Cannot start the server: {error}")
    sys.stdout.write(render(settings, Path(argv[0]).resolve()))


if __name__ == "__main__":
    main(sys.argv[1:])
