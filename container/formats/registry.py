"""Content types and the one table from content type to decoder."""

from __future__ import annotations

from typing import Protocol

from algorithm.csr import CSR
from container.errors import UnsupportedFormatError
from container.formats.csv import decode_csv
from container.formats.json_requests import decode_json, decode_jsonlines
from container.formats.libsvm import decode_libsvm
from container.formats.recordio import decode_recordio

JSON = "application/json"
JSONLINES = "application/jsonlines"
CSV = "text/csv"
LIBSVM = "text/libsvm"
RECORDIO = "application/x-recordio-protobuf"

# Other names users send for the same formats (RecordIO-protobuf has none: application/x-recordio is
# plain RecordIO, a different format).
ALIASES = {
    "application/x-libsvm": LIBSVM,
    "text/x-libsvm": LIBSVM,
    "application/json-lines": JSONLINES,
    "application/x-jsonlines": JSONLINES,
    "application/jsonl": JSONLINES,
}


class Decoder(Protocol):
    def __call__(
        self, body: bytes | memoryview, *, source: str, feature_dim: int | None = None, with_labels: bool = False
    ) -> CSR: ...


DECODERS: dict[str, Decoder] = {
    JSON: decode_json,
    JSONLINES: decode_jsonlines,
    CSV: decode_csv,
    LIBSVM: decode_libsvm,
    RECORDIO: decode_recordio,
}


def media_type(header: str | None) -> str:
    """The bare media type of a Content-Type (or one Accept entry): lower-case, parameters such as
    ``; charset=utf-8`` stripped, aliases resolved to the names above; "" for a missing header."""
    bare = (header or "").split(";", 1)[0].strip().lower()
    return ALIASES.get(bare, bare)


def decode(
    content_type: str | None,
    body: bytes | memoryview,
    *,
    source: str,
    feature_dim: int | None = None,
    with_labels: bool = False,
) -> CSR:
    """Decode ``body`` by its content type; UnsupportedFormatError for a type no decoder handles."""
    decoder = DECODERS.get(media_type(content_type))
    if decoder is None:
        raise UnsupportedFormatError(content_type or "(none)", list(DECODERS))
    return decoder(body, source=source, feature_dim=feature_dim, with_labels=with_labels)


def warm_up() -> None:
    """Compile the text decoders' numba scanners (``container.warmup`` runs this at image build)."""
    sparse = b'{"data": {"features": {"keys": [0], "shape": [2], "values": [1.5]}}}'
    decode(LIBSVM, b"1 0:1.5e0\n", source="warm-up", with_labels=True)
    decode(CSV, b"1,2.5\n", source="warm-up")
    decode(JSON, b'{"instances": [%s]}' % sparse, source="warm-up")
    decode(JSONLINES, sparse, source="warm-up")
