"""Request serializers and response deserializers, with the SageMaker SDK v2 interface (``CONTENT_TYPE`` +
``serialize(data)``; ``ACCEPT`` + ``deserialize(stream, content_type)``), so SDK ones work here too.

Rows go out in the built-in's request formats: JSON ``{"instances": [{"data": {"features": {...}}}]}``,
JSON Lines one ``{"data": {"features": {...}}}`` per line, CSV one dense row per line, RecordIO-protobuf one
Record per row; a scipy sparse row is sent as ``keys``/``shape``/``values`` (except in CSV, which is dense).

Each deserializer returns what the SDK's of the same name returns: ``JSONDeserializer`` the parsed body,
``JSONLinesDeserializer`` a list of parsed lines, ``CSVDeserializer`` a list of rows of strings,
``RecordDeserializer`` a list of ``Record`` messages, ``BytesDeserializer`` bytes. ``PredictionsDeserializer``
(no SDK counterpart) reads any of the response formats into one dict per row.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import IO, Any

import numpy as np

from fmwals.recordio import read_records, write_numpy_to_dense_tensor, write_spmatrix_to_sparse_tensor

JSON = "application/json"
JSONLINES = "application/jsonlines"
CSV = "text/csv"
RECORDIO = "application/x-recordio-protobuf"
RESPONSE_COLUMNS = ("score", "predicted_label")


def _is_sparse(data: Any) -> bool:
    return hasattr(data, "tocsr")


def _rows(data: Any) -> Any:
    """A 2-D view: ndarray, list of rows or one row, or a scipy sparse matrix (CSR)."""
    if _is_sparse(data):
        return data.tocsr()
    array = np.asarray(data)
    if array.ndim == 1:
        array = array.reshape(1, -1)
    if array.ndim != 2:
        raise ValueError(f"expected rows of features (a 1-D or 2-D array), got {array.ndim} dimensions")
    return array


def _features(rows: Any) -> Iterator[dict[str, Any]]:
    """One ``{"features": {...}}`` per row (dense ``values``, or sparse ``keys``/``shape``/``values``)."""
    if _is_sparse(rows):
        n_cols = int(rows.shape[1])
        for i in range(rows.shape[0]):
            start, stop = rows.indptr[i], rows.indptr[i + 1]
            yield {
                "features": {
                    "keys": rows.indices[start:stop].tolist(),
                    "shape": [n_cols],
                    "values": rows.data[start:stop].tolist(),
                }
            }
    else:
        for row in rows:
            yield {"features": {"values": row.tolist()}}


class _Serializer:
    """``bytes`` and ``str`` go out as they are; anything else is encoded by the subclass."""

    CONTENT_TYPE: str

    def serialize(self, data: Any) -> bytes:
        if isinstance(data, bytes):
            return data
        if isinstance(data, str):
            return data.encode()
        return self.encode(data)

    def encode(self, data: Any) -> bytes:
        raise NotImplementedError


class IdentitySerializer:
    """Sends the data as it is (bytes, or text encoded as UTF-8), as ``application/octet-stream`` unless
    ``content_type`` says otherwise: the SDK's ``IdentitySerializer``, the generic ``Predictor``'s default."""

    def __init__(self, content_type: str = "application/octet-stream") -> None:
        self.CONTENT_TYPE = content_type

    def serialize(self, data: Any) -> Any:
        return data


class JSONSerializer(_Serializer):
    """``application/json``; rows become the built-in's ``instances`` list, dicts are sent as they are."""

    CONTENT_TYPE = JSON

    def encode(self, data: Any) -> bytes:
        if isinstance(data, dict):
            return json.dumps(data).encode()
        return json.dumps({"instances": [{"data": f} for f in _features(_rows(data))]}).encode()


class JSONLinesSerializer(_Serializer):
    """``application/jsonlines``: one ``{"data": {"features": ...}}`` per row (dicts: one per line)."""

    CONTENT_TYPE = JSONLINES

    def encode(self, data: Any) -> bytes:
        if isinstance(data, list) and data and isinstance(data[0], dict):
            return "\n".join(json.dumps(d) for d in data).encode()
        return "\n".join(json.dumps({"data": f}) for f in _features(_rows(data))).encode()


class CSVSerializer(_Serializer):
    """``text/csv``: one dense row per line, no header."""

    CONTENT_TYPE = CSV

    def encode(self, data: Any) -> bytes:
        rows = _rows(data)
        dense = rows.toarray() if _is_sparse(rows) else rows
        return "\n".join(",".join(map(repr, row)) for row in dense.tolist()).encode()


class RecordSerializer(_Serializer):
    """``application/x-recordio-protobuf``: one Record per row, dense or sparse by the input's kind; the
    tensor type follows the dtype (float32 -> Float32) as the SDK's writers do."""

    CONTENT_TYPE = RECORDIO

    def encode(self, data: Any) -> bytes:
        rows = _rows(data)
        buffer = io.BytesIO()
        if _is_sparse(rows):
            write_spmatrix_to_sparse_tensor(buffer, rows)
        else:
            write_numpy_to_dense_tensor(buffer, rows)
        return buffer.getvalue()


class BytesDeserializer:
    """The response body as bytes (the generic ``Predictor``'s default, as in the SDK)."""

    ACCEPT = ("*/*",)

    def deserialize(self, stream: IO[bytes], content_type: str) -> bytes:
        return stream.read()


class JSONDeserializer:
    """``application/json`` parsed (FM: ``{"predictions": [...]}``)."""

    ACCEPT = (JSON,)

    def deserialize(self, stream: IO[bytes], content_type: str) -> Any:
        return json.loads(stream.read() or b"null")


class JSONLinesDeserializer:
    """``application/jsonlines``: a list with one parsed object per line."""

    ACCEPT = (JSONLINES,)

    def deserialize(self, stream: IO[bytes], content_type: str) -> list[Any]:
        return [json.loads(line) for line in stream.read().decode().splitlines() if line.strip()]


class CSVDeserializer:
    """``text/csv``: a list of rows, each a list of strings (as the SDK's)."""

    ACCEPT = (CSV,)

    def deserialize(self, stream: IO[bytes], content_type: str) -> list[list[str]]:
        return list(csv.reader(io.StringIO(stream.read().decode())))


class RecordDeserializer:
    """``application/x-recordio-protobuf``: a list of ``Record`` messages, one per row, the prediction in
    ``record.label["score"].float32_tensor.values[0]`` (``FactorizationMachinesPredictor``'s default, as in
    the SDK)."""

    ACCEPT = (RECORDIO,)

    def deserialize(self, stream: IO[bytes], content_type: str) -> list[Any]:
        return read_records(io.BytesIO(stream.read()))


class PredictionsDeserializer:
    """Any of the four response formats -> the built-in's record shape: one dict per row, e.g.
    ``{"score": 0.97, "predicted_label": 1.0}``. ``accept`` picks the format asked for."""

    def __init__(self, accept: str = JSON) -> None:
        self.ACCEPT = (accept,)

    def deserialize(self, stream: IO[bytes], content_type: str) -> list[dict[str, Any]]:
        kind = content_type.split(";")[0].strip().lower()
        if kind == JSON:
            body = JSONDeserializer().deserialize(stream, kind)
            return list(body["predictions"]) if isinstance(body, dict) and "predictions" in body else body
        if kind == JSONLINES:
            return JSONLinesDeserializer().deserialize(stream, kind)
        if kind == CSV:
            rows = CSVDeserializer().deserialize(stream, kind)
            names = RESPONSE_COLUMNS
            return [{n: float(v) for n, v in zip(names, row, strict=False)} for row in rows if row]
        if kind == RECORDIO:
            records = RecordDeserializer().deserialize(stream, kind)
            return [{k: v.float32_tensor.values[0] for k, v in r.label.items()} for r in records]
        raise ValueError(f"cannot read predictions of content type {content_type!r}")
