"""Compile every FM and WALS kernel variant the image uses, so the first epoch and the first request pay no
JIT cost.

Runs at ``docker build`` (``container.warmup``, with ``NUMBA_CACHE_DIR`` pointing at a writable folder baked into
the image). Rows: the ``CSR`` check and summing of repeated columns. FM: each optimizer x predictor type through
the public API on tiny data (serial, Hogwild and deterministic parallel, with an eval set; in memory with either
width of renumbered ids, and streamed), with writable and read-only input arrays (decoders hand out read-only
views of request bytes, a distinct numba type). WALS: both solvers and both forms through the public API, then
the parallel variant of each kernel.
"""

from __future__ import annotations

import itertools
import tempfile

import numpy as np
import scipy.sparse as sp

from algorithm import _wals_kernels, artifact
from algorithm.csr import CSR
from algorithm.fm import OPTIMIZERS, PREDICTOR_TYPES, FactorizationMachines, _score
from algorithm.fm_replica import FMReplica, Part, column_rules, combine, initial_state, sync_plan
from algorithm.fm_topk import Candidates, FMTopK, TopKQuery
from algorithm.ranking_metrics import ranking_metrics, top_k
from algorithm.row_blocks import MemoryBlocks
from algorithm.wals import WALS, _entries


def _tiny_rows(read_only: bool, n_cols: int = 4) -> CSR:
    rows = CSR(np.array([1.0, 0.5, 2.0, 1.0], dtype=np.float32), np.array([0, 2, 1, 3], dtype=np.int64),
               np.array([0, 2, 3, 4], dtype=np.int64), n_cols=n_cols)
    for array in (rows.data, rows.indices, rows.indptr):
        array.flags.writeable = not read_only
    return rows


def warm_up_rows() -> None:
    """Compile the ``CSR`` row check and the summing of repeated columns, for every mix of writable and
    read-only arrays."""
    for read_only in itertools.product((False, True), repeat=3):
        for columns in ([0, 2, 1, 3], [0, 0, 1, 3]):
            data, indices = np.array([1.0, 0.5, 2.0, 1.0], np.float32), np.array(columns, np.int64)
            indptr = np.array([0, 2, 3, 4], np.int64)
            arrays: tuple[np.ndarray, ...] = (data, indices, indptr)
            for array, fixed in zip(arrays, read_only, strict=True):
                array.flags.writeable = not fixed
            CSR(data, indices, indptr, n_cols=4)


def warm_up_fm() -> None:
    """Compile (or load from the numba cache) every FM training and scoring kernel signature in use."""
    labels = np.array([1.0, 0.0, 1.0], dtype=np.float32)
    for read_only, feature_dim in itertools.product((False, True), (4, 2**15 + 1)):
        rows = _tiny_rows(read_only, feature_dim)  # fit trains with int16 ids, or int32 past 32,768 features
        blocks = MemoryBlocks(CSR(rows.data, rows.indices, rows.indptr, feature_dim, labels), 2)
        for predictor_type in PREDICTOR_TYPES:
            for optimizer in OPTIMIZERS:
                for threads, deterministic in ((1, False), (2, False), (2, True)):
                    model = FactorizationMachines(feature_dim=feature_dim, num_factors=2,
                                                  predictor_type=predictor_type, optimizer=optimizer,
                                                  mini_batch_size=2, num_threads=threads,
                                                  deterministic=deterministic)
                    model.fit(rows, labels, eval_set=(rows, labels))
                    model.predict_scores(rows)
                    if feature_dim == 4:
                        model.fit_blocks(blocks)  # streamed blocks train with the users' int64 ids
            for threads in (1, 2):
                _score(rows, model.w0_, model.w_, model.V_, predictor_type == "binary_classifier", threads)



def warm_up_fm_replica() -> None:
    """Compile the kernels of a data-parallel FM round (its rows renumbered by the replicas' feature counts)."""
    labels = np.array([1.0, 0.0, 1.0], dtype=np.float32)
    model = FactorizationMachines(feature_dim=4, num_factors=2, predictor_type="binary_classifier",
                                  mini_batch_size=2, num_threads=1)
    replica = FMReplica(model, _tiny_rows(False), labels)
    replica.start(*initial_state(model), sync_plan(replica.feature_counts(), 2, 3))
    replica.begin_epoch(0)
    replica.train(1)
    replica.apply(combine([replica.changes(Part(1, 2))], replica.sent_base, replica.base_bias,
                          column_rules(replica.layout, 2)))


def warm_up_fm_top_k() -> None:
    """Compile the top-k kernels for the array types serving has (a model read back from its artifact): one
    context alone, contexts sharing a candidate range, a gathered id list, candidate rows and an include list."""
    rows, labels = _tiny_rows(False), np.array([1.0, 0.0, 1.0], dtype=np.float32)
    model = FactorizationMachines(feature_dim=4, num_factors=2, predictor_type="binary_classifier",
                                  num_threads=1).fit(rows, labels)
    with tempfile.TemporaryDirectory() as directory:
        artifact.save(directory, model)
        served = artifact.load(directory)
    one = np.ones(1, dtype=np.float32)
    everything, some = Candidates(features=np.arange(4)), Candidates(features=np.array([0, 2]))
    queries = [TopKQuery(np.array([0]), one, everything, 1), TopKQuery(np.array([3]), one, everything, 2),
               TopKQuery(np.array([1]), one, everything, 1, include=np.array([0, 2])),
               TopKQuery(np.array([1]), one, some, 1), TopKQuery(np.array([2]), one, Candidates(rows=rows), 1)]
    top_k_model = FMTopK(served)
    top_k_model.rank(queries)
    top_k_model.rank(queries[:1])

def warm_up_wals() -> None:
    """Compile (or load from the numba cache) every WALS kernel signature: the public API on a tiny matrix
    (both solvers, both forms, test metrics, scoring, recommendation, projection) on one thread, then the
    parallel variant of each kernel, whatever the machine's thread count."""
    R = sp.csr_matrix(np.array([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0], [1.0, 1.0, 0.0]], dtype=np.float32))
    held_out = sp.csr_matrix(np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]], dtype=np.float32))
    for alpha in (None, 1.0):
        for solver in _wals_kernels.SOLVERS:
            model = WALS(embedding_dimension=2, max_sweeps=1, solver=solver, alpha=alpha, eval_k=2,
                         num_threads=1).fit(R, eval_set=held_out)
            model.predict([0, 1], [2, 0])
            model.recommend([0, 1], 2, exclude_seen=R[[0, 1]], include=[0, 1, 2], exclude=[1])
            model.similar_cols(0, 1)
            model.top_rows_for_col(0, 1)
            model.project_rows(R[:1])
            model.project_cols(R[:, :1])
    entries, extra = _entries(R, np.ones(3, np.float32), np.ones(3, np.float32), None)
    U, V = model.row_factors_.copy(), model.col_factors_.copy()
    for solver in _wals_kernels.SOLVERS:
        _wals_kernels.solve(entries, extra, V, U, 0.1, 0.1, solver, 1, 2)
    _wals_kernels.row_losses(entries, extra, U, V, 0.1, 2)
    _wals_kernels.pair_scores(np.arange(3), np.arange(3), U, V, 2)
    top_k(U @ V.T, 2, n_workers=2)
    ranking_metrics(U, V, held_out, 2, exclude=R, n_workers=2)
