"""serve/nginx.conf as serve.sh renders it: the settings in their directives, the app's error bodies, and a
configuration nginx itself accepts."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

from serve.nginx_conf import render
from serve.settings import ServeSettings


def _render(tmp_path: Path, **env: str) -> str:
    return render(ServeSettings.from_env(env), tmp_path)


def test_settings_reach_their_directives(tmp_path: Path) -> None:
    conf = _render(tmp_path, SAGEMAKER_BIND_TO_PORT="9090", SAGEMAKER_MAX_PAYLOAD_IN_MB="20",
                   SAGEMAKER_MODEL_SERVER_TIMEOUT="120", FMWALS_CLIENT_TIMEOUT="7")
    assert "{{" not in conf
    assert "listen 9090 " in conf
    assert "client_max_body_size 20m;" in conf
    for directive in ("client_header_timeout", "client_body_timeout", "send_timeout"):
        assert f"{directive} 7s;" in conf
    assert "proxy_read_timeout 120s;" in conf
    assert f"server unix:{tmp_path}/gunicorn.sock" in conf


def test_no_model_server_timeout_means_one_day(tmp_path: Path) -> None:
    assert "proxy_read_timeout 86400s;" in _render(tmp_path, SAGEMAKER_MODEL_SERVER_TIMEOUT="0")


def test_413_body_is_the_apps_json_error(tmp_path: Path) -> None:
    settings = ServeSettings.from_env({"SAGEMAKER_MAX_PAYLOAD_IN_MB": "3"})
    body = re.search(r"return 413 '(.*)';", render(settings, tmp_path)).group(1)  # type: ignore[union-attr]
    assert body.encode() == orjson.dumps({"error": settings.payload_too_large_message})


@pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed here (the image has it)")
def test_nginx_accepts_the_rendered_configuration(tmp_path: Path) -> None:
    (tmp_path / "nginx.conf").write_text(_render(tmp_path, SAGEMAKER_BIND_TO_PORT="18099"))
    result = subprocess.run(["nginx", "-t", "-e", "stderr", "-c", str(tmp_path / "nginx.conf")],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
