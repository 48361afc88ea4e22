"""Records of local jobs, endpoints and tuning jobs on disk, so ``attach`` and ``model_data`` work from any
process: ``$FMWALS_HOME`` (default ``~/.fmwals``)/<kind>/<name>/record.json, beside the job's files.

Training records use the shape of SageMaker's DescribeTrainingJob response, so every back end describes a
job the same way.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

KINDS = ("jobs", "endpoints", "tuning", "transform")
STOP_MARKER = "stop-requested"  # created in a training job's directory to ask its supervisor to stop it
_NAME = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$")


def home() -> Path:
    """The root of every local record: ``$FMWALS_HOME`` or ``~/.fmwals``."""
    return Path(os.environ.get("FMWALS_HOME") or Path.home() / ".fmwals")


def entity_dir(kind: str, name: str) -> Path:
    """The directory of one job, endpoint or tuning job."""
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}")
    return home() / kind / name


def record_path(kind: str, name: str) -> Path:
    return entity_dir(kind, name) / "record.json"


def exists(kind: str, name: str) -> bool:
    return record_path(kind, name).is_file()


def read(kind: str, name: str) -> dict[str, Any]:
    """The record of ``name``; ``KeyError`` if there is none."""
    try:
        return dict(json.loads(record_path(kind, name).read_text(encoding="utf-8")))
    except FileNotFoundError:
        raise KeyError(name) from None


def write(kind: str, name: str, record: dict[str, Any]) -> None:
    """Replace the record atomically (readers never see half a file)."""
    path = record_path(kind, name)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, delete=False, suffix=".tmp", encoding="utf-8"
    ) as f:
        json.dump(record, f, indent=1, default=str)
    os.replace(f.name, path)


def update(kind: str, name: str, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into the record and write it back; returns the new record."""
    record = {**read(kind, name), **fields}
    write(kind, name, record)
    return record


def now() -> str:
    """A timestamp as records store it (ISO 8601, UTC)."""
    return dt.datetime.now(dt.UTC).isoformat()


def check_name(name: str) -> str:
    """Names follow SageMaker's rule: letters, digits and single hyphens, at most 63 characters."""
    if not _NAME.match(name):
        raise ValueError(
            f"invalid name {name!r}: use 1 to 63 letters, digits and hyphens, starting with a letter or digit"
        )
    return name


def unique_name(base: str, max_length: int = 63) -> str:
    """``<base>-YYYY-MM-DD-HH-MM-SS-mmm`` as the SageMaker SDK names jobs (base sanitized and shortened)."""
    stamp = dt.datetime.now(dt.UTC)
    suffix = stamp.strftime("%Y-%m-%d-%H-%M-%S-") + f"{stamp.microsecond // 1000:03d}"
    clean = re.sub(r"[^a-zA-Z0-9]+", "-", base).strip("-") or "fmwals"
    return f"{clean[: max_length - len(suffix) - 1].rstrip('-')}-{suffix}"
