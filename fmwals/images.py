"""The image the client runs unless told otherwise, and the names derived from an image URI."""

from __future__ import annotations

import os


def default_image() -> str:
    """The image estimators and models use unless told otherwise: ``$FMWALS_IMAGE`` or ``fm-wals:latest``."""
    return os.environ.get("FMWALS_IMAGE", "fm-wals:latest")


def base_name(image_uri: str) -> str:
    """The repository name of an image URI (``.../fm-wals:latest`` -> ``fm-wals``), the default base of job,
    endpoint and transform job names."""
    return image_uri.rsplit("/", 1)[-1].split(":")[0]
