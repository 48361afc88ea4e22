"""The content type a body's first bytes show: RecordIO-protobuf by its magic number, else the shape of the
first lines of text (JSON, JSON Lines, libsvm's ``index:value`` pairs, CSV). Reads at most ``HEAD`` bytes."""

from __future__ import annotations

import codecs
import re

from container.formats.recordio_framing import MAGIC_BYTES
from container.formats.registry import CSV, JSON, JSONLINES, LIBSVM, RECORDIO

HEAD = 1 << 16
LINES = 10  # lines searched for a libsvm pair (the first may hold a label only)
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")  # binary, e.g. a bare protobuf Record
_PAIR = re.compile(r"^[0-9]+:[^,\s]+$")  # a libsvm index:value token


def sniff(body: bytes | memoryview) -> str | None:
    """The content type ``body`` looks like, or None when its first bytes fit none of them (binary without
    RecordIO's magic, such as a bare Record, or an empty body)."""
    head = bytes(body[:HEAD])
    if head.startswith(MAGIC_BYTES):
        return RECORDIO
    head = head.removeprefix(codecs.BOM_UTF8)
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as err:
        if err.start < len(head) - 3:  # not just a character cut at the end of the head
            return None
        text = head[: err.start].decode("utf-8")
    if _CONTROL.search(text):
        return None
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return None
    first = lines[0]
    if first.startswith("["):
        return JSON
    if first.startswith("{"):
        return JSONLINES if len(lines) > 1 and lines[1].startswith("{") else JSON
    if any(_PAIR.match(token) for line in lines[:LINES] for token in line.split("#", 1)[0].split()):
        return LIBSVM
    return CSV
