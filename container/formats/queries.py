"""What the query formats (FM top-k, WALS) share: checking each query with its position named, and the
answer bodies in JSON and JSON Lines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import orjson

from container.errors import DataError
from container.formats.registry import JSONLINES

REQUEST_SOURCE = "request body"
Checked = TypeVar("Checked")


class FieldError(Exception):
    """A malformed field of one query: the whole request fails with 400, naming the query."""


def check_each(items: list[Any], noun: str, check: Callable[[dict[str, Any]], Checked]) -> list[Checked]:
    """``check`` of each item, in order; ``DataError`` naming the first item (``noun`` and position) that is not
    a JSON object or whose field ``check`` rejects with ``FieldError``."""
    checked = []
    for position, item in enumerate(items):
        where = f"{REQUEST_SOURCE}: {noun} {position}"
        if not isinstance(item, dict):
            raise DataError(f"{where}: expected a JSON object, got {type(item).__name__}")
        try:
            checked.append(check(item))
        except FieldError as err:
            raise DataError(f"{where}: {err}") from None
    return checked


def encode_answers(answers: list[dict[str, Any]], accept: str) -> bytes:
    """The response body: ``{"predictions": [...]}`` (JSON), or one answer a line, each line ending with a
    newline (JSON Lines). Numpy arrays and scalars are written as JSON numbers."""
    option = orjson.OPT_SERIALIZE_NUMPY
    if accept == JSONLINES:
        return b"".join(orjson.dumps(a, option=option) + b"\n" for a in answers)
    return orjson.dumps({"predictions": answers}, option=option)
