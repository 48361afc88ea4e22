"""Compile every FM kernel variant the image uses, so the first epoch and the first request pay no JIT cost.

Runs at ``docker build`` (with ``NUMBA_CACHE_DIR`` pointing at a writable folder baked into the image):
each optimizer x predictor type through the public API on tiny data (serial, Hogwild and deterministic
parallel, with an eval set), with writable and read-only input arrays (decoders hand out read-only views
of request bytes, a distinct numba type).
"""

from __future__ import annotations

import numpy as np

from algorithm.csr import CSR
from algorithm.fm import OPTIMIZERS, PREDICTOR_TYPES, FactorizationMachines, _score


def _tiny_rows(read_only: bool) -> CSR:
    rows = CSR(np.array([1.0, 0.5, 2.0, 1.0], dtype=np.float32), np.array([0, 2, 1, 3], dtype=np.int64),
               np.array([0, 2, 3, 4], dtype=np.int64), n_cols=4)
    for array in (rows.data, rows.indices, rows.indptr):
        array.flags.writeable = not read_only
    return rows


def warm_up() -> None:
    """Compile (or load from the numba cache) every training and scoring kernel signature in use."""
    labels = np.array([1.0, 0.0, 1.0], dtype=np.float32)
    for read_only in (False, True):
        rows = _tiny_rows(read_only)
        for predictor_type in PREDICTOR_TYPES:
            for optimizer in OPTIMIZERS:
                for threads, deterministic in ((1, False), (2, False), (2, True)):
                    model = FactorizationMachines(feature_dim=4, num_factors=2, predictor_type=predictor_type,
                                                  optimizer=optimizer, mini_batch_size=2, num_threads=threads,
                                                  deterministic=deterministic)
                    model.fit(rows, labels, eval_set=(rows, labels))
                    model.predict_scores(rows)
            for threads in (1, 2):
                _score(rows, model.w0_, model.w_, model.V_, predictor_type == "binary_classifier", threads)


if __name__ == "__main__":
    warm_up()
