"""The model a worker serves, adapted to HTTP bodies: decode -> predict -> encode.

``load(model_dir)`` reads the artifact and wraps it in the ``Servable`` of its kind; the HTTP layer only
sees the protocol, so another model kind (WALS) plugs in with its own class and one line in ``_SERVABLES``.
Loading runs no numba code, so it is safe in the gunicorn master before fork. ``warm_up`` runs every
decoder, scoring kernel and encoder once, and must run in the worker, after fork.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import orjson
import scipy.sparse as sp

from algorithm import artifact
from algorithm.csr import CSR
from algorithm.fm import PARALLEL_SCORING_NNZ, FactorizationMachines
from algorithm.fm_topk import FMTopK
from algorithm.wals_model import WALSModel
from container.errors import UnsupportedFormatError
from container.formats import fm_queries, responses
from container.formats.recordio import write_spmatrix_to_sparse_tensor
from container.formats.registry import CSV, JSON, JSONLINES, LIBSVM, RECORDIO, decode
from container.resources import memory_available_bytes
from serve.limits import MIN_CANDIDATE_BYTES, UNLIMITED, Limits
from serve.wals_servable import WALSServable

REQUEST_SOURCE = "request body"


class Servable(Protocol):
    """A loaded model as the HTTP layer sees it."""

    content_types: tuple[str, ...]  # request media types it decodes
    accepts: tuple[str, ...]  # response media types it encodes
    warm: bool  # every kernel of the request path has run once

    def warm_up(self) -> None: ...

    def invoke(self, body: bytes, content_type: str, accept: str, limits: Limits = UNLIMITED) -> bytes:
        """The response body for a request body; ``ClientError`` subclasses for the client's mistakes, and
        ``ResponseTooLargeError`` (checked before the work) past ``limits``."""
        ...


class FMServable:
    """Factorization Machines: one score per input row (and a predicted label for the binary classifier), or
    the top-k candidates of each query of a top-k body (``container.formats.fm_queries``)."""

    content_types = (JSON, JSONLINES, RECORDIO, CSV, LIBSVM)
    accepts = tuple(responses.ENCODERS)

    def __init__(self, model: FactorizationMachines) -> None:
        self.model = model
        self.classifier = model.predictor_type == "binary_classifier"
        self.ranker = FMTopK(model)
        self.warm = False

    @property
    def columns(self) -> tuple[str, ...]:
        """The names of the response columns."""
        return ("score", "predicted_label") if self.classifier else ("score",)

    def predict(self, X: CSR) -> dict[str, np.ndarray]:
        """The response columns: ``score`` (a probability for the classifier) and ``predicted_label``."""
        scores = self.model.predict_scores(X)
        if self.classifier:
            return {"score": scores, "predicted_label": (scores >= 0.5).astype(np.float32)}
        return {"score": scores}

    def invoke(self, body: bytes, content_type: str, accept: str, limits: Limits = UNLIMITED) -> bytes:
        instances = fm_queries.query_instances(body, content_type)
        if instances is not None:
            return self.top_k(instances, accept, limits)
        X = decode(content_type, body, source=REQUEST_SOURCE, feature_dim=self.model.feature_dim)
        limits.check_rows(X.n_rows)
        each = responses.min_row_bytes(accept, self.columns)
        limits.check_estimate(X.n_rows * each, f"{X.n_rows} rows at {each} bytes or more each")
        return limits.check_body(responses.encode(accept, self.predict(X)))

    def top_k(self, instances: list[Any], accept: str, limits: Limits = UNLIMITED) -> bytes:
        """The answers of top-k queries, in JSON or JSON Lines."""
        if accept not in (JSON, JSONLINES):
            raise UnsupportedFormatError(accept, [JSON, JSONLINES])
        limits.check_rows(len(instances), "queries")
        queries = fm_queries.read_queries(instances, self.model.feature_dim)
        ranked_k = sum(q.ranked.k for q in queries)
        limits.check_estimate(ranked_k * MIN_CANDIDATE_BYTES, f"{ranked_k} ranked candidates")
        ranked = self.ranker.rank([q.ranked for q in queries])
        return limits.check_body(fm_queries.encode_ranked(queries, ranked, self.classifier, accept))

    def warm_up(self) -> None:
        """Run every decoder, scoring kernel (serial, and parallel in case numba has threads) and encoder
        once, so that no request pays for compilation."""
        d = self.model.feature_dim
        for content_type, body in _one_row_bodies(d).items():
            self.invoke(body, content_type, JSON)
        n = PARALLEL_SCORING_NNZ
        big = CSR(np.ones(n, np.float32), np.zeros(n, np.int64), np.array([0, n // 2, n]), d)
        columns = self.predict(big)
        for accept in self.accepts:
            responses.encode(accept, columns)
        for content_type, body in _top_k_bodies(d).items():
            self.invoke(body, content_type, content_type)
        self.warm = True


def _one_row_bodies(feature_dim: int) -> dict[str, bytes]:
    """A one-row request (feature 0 = 1.0) in every request format."""
    recordio = io.BytesIO()
    write_spmatrix_to_sparse_tensor(recordio, sp.csr_matrix(([1.0], ([0], [0])), shape=(1, feature_dim),
                                                            dtype=np.float32))
    sparse = b'{"data":{"features":{"keys":[0],"shape":[%d],"values":[1.0]}}}' % feature_dim
    return {
        JSON: b'{"instances":[%s]}' % sparse,
        JSONLINES: sparse,
        RECORDIO: recordio.getvalue(),
        CSV: b"1" + b",0" * (feature_dim - 1),
        LIBSVM: b"0:1",
    }


def _top_k_bodies(feature_dim: int) -> dict[str, bytes]:
    """Top-k queries of every candidate kind (two contexts sharing a range: the matrix-matrix path)."""
    last = feature_dim - 1
    queries = [
        {"context": {"keys": [0]}, "candidates": {"range": [0, feature_dim]}, "k": 1, "exclude": [last]},
        {"context": {"keys": [last]}, "candidates": {"range": [0, feature_dim]}, "k": 1, "include": [0]},
        {"candidates": {"ids": [0]}, "k": 1},
        {"candidates": {"rows": [{"keys": [0], "values": [1.0]}]}, "k": 1},
    ]
    return {JSON: b'{"queries":%s}' % orjson.dumps(queries), JSONLINES: b"\n".join(map(orjson.dumps, queries))}


_SERVABLES: dict[type, type[Any]] = {FactorizationMachines: FMServable, WALSModel: WALSServable}


def load(model_dir: Path) -> Servable:
    """The servable of the artifact in ``model_dir``: model.json + model.npz, a model.tar.gz there, or the
    built-in FM's model_algo-1 (``algorithm.artifact`` detects which), in at most half the memory this process
    may still use; ``artifact.ArtifactError`` naming the file when it cannot be read."""
    model = artifact.load(model_dir, max_bytes=memory_available_bytes() // 2)
    try:
        servable_class = _SERVABLES[type(model)]
    except KeyError:
        raise TypeError(f"no serving support for {type(model).__name__} models") from None
    servable: Servable = servable_class(model)
    return servable
