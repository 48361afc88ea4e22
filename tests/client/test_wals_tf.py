"""TensorFlow ``WALSMatrixFactorization`` code migrates to the client ``WALS``: TF's constructor (its
arguments with no meaning here warn, they do not raise), and ``get_row_factors``, ``get_col_factors`` and
``get_projections`` of a real local job, checked against what its real endpoint answers."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from fmwals import WALS

K = 4


def test_tf_constructor_arguments_in_tf_order():
    with pytest.warns(UserWarning) as caught:
        wals = WALS(100, 50, K, 0.1, None, "random", "random", 2, 3, 1, 1, True, False, 7, "/tmp/tf-model", "cfg")
    message = str(caught[0].message)
    for note in ("num_row_shards=2 (the factors are not sharded", "num_col_shards=3",
                 "use_factors_weights_cache_for_training=True (there are no TF workers",
                 "use_gramian_cache_for_training=False", "model_dir='/tmp/tf-model' (the model goes to the job's",
                 "config='cfg' (instance_type and instance_count"):
        assert note in message
    assert caught[0].filename == __file__  # the warning points at the caller's line
    assert wals.hyperparameters() == {
        "algorithm": "wals", "num_rows": "100", "num_cols": "50", "embedding_dimension": str(K),
        "unobserved_weight": "0.1", "regularization_coeff": "0.0",  # TF: None is no regularization
        "row_init": "random", "col_init": "random", "row_weights": "1", "col_weights": "1", "max_sweeps": "7",
    }
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plain = WALS(100, 50, K, model_dir=None, instance_type="local_process")  # nothing ignored: no warning
    assert plain.regularization_coeff is None  # not given: the schema's default applies


def test_tf_weights_none_and_lists():
    assert WALS(10, 5, K, row_weights=None, col_weights=None).hyperparameters()["row_weights"] == "0.0"
    with pytest.raises(ValueError, match=r"per-row weights \(TF's lists\) go to fit as a 'row_weights' channel"):
        WALS(10, 5, K, row_weights=[[1.0, 2.0]])


def _matrix():
    """40 x 30 ratings; row 7 and column 3 have no entries (the model stores no factor for them)."""
    rng = np.random.default_rng(3)
    dense = np.where(rng.random((40, 30)) < 0.3, rng.integers(1, 6, (40, 30)), 0).astype(np.float32)
    dense[39, :] = dense[:, 29] = 1  # the last row and column have entries: the ids span 0..39 and 0..29
    dense[7, :] = dense[:, 3] = 0
    return sp.csr_matrix(dense)


def test_factors_and_projections_of_a_trained_job():
    R = _matrix()
    wals = WALS(embedding_dimension=K, unobserved_weight=0.1, regularization_coeff=0.5, max_sweeps=6,
                role="role", instance_type="local_process")
    with pytest.raises(ValueError, match="no trained model yet: call fit"):
        wals.get_row_factors()
    wals.fit({"train": wals.record_set(R)}, logs=False)
    (U,), (V,) = wals.get_row_factors(), wals.get_col_factors()
    assert U.shape == (40, K) and V.shape == (30, K)
    assert not U[7].any() and not V[3].any() and U[6].any() and V[4].any()  # ids never seen: zero factors

    predictor = wals.deploy(1, "local_process")
    try:
        rows, cols = [0, 12, 39, 25], [29, 4, 0, 17]
        served = [answer["score"] for answer in predictor.score(rows, cols)]
        np.testing.assert_allclose(served, np.einsum("ij,ij->i", U[rows], V[cols]), rtol=1e-5, atol=1e-6)

        # Columns: TF's INPUT_COLS holds them transposed. The last half-sweep solved V against the final U,
        # so projecting the training columns gives their factors back.
        columns = [0, 5, 12, 29]
        features = {WALS.INPUT_COLS: R[:, columns].T.tocsr(), WALS.PROJECT_ROW: False}
        projected = list(wals.get_projections(lambda: (features, None)))
        assert len(projected) == len(columns)
        np.testing.assert_allclose(np.array(projected), V[columns], rtol=1e-4, atol=1e-5)

        # Rows: the endpoint's fold-in projects the same way; its scores are the projection's.
        row = R[10]
        for weight in (1.0, 2.5):
            features = {WALS.INPUT_ROWS: row, WALS.PROJECT_ROW: True, WALS.PROJECTION_WEIGHTS: [weight]}
            (u,) = wals.get_projections(lambda features=features: features)
            answer = predictor.fold_in({"cols": row.indices.tolist(), "values": row.data.tolist()}, k=5,
                                       weight=weight)[0]
            np.testing.assert_allclose(answer["scores"], V[answer["cols"]] @ u, rtol=1e-4, atol=1e-5)
    finally:
        predictor.delete_endpoint()

    with pytest.raises(ValueError, match=r"features\['input_rows'\] has 31 columns but the model's col ids are "
                                         r"0\.\.29: column j must hold col id j"):
        list(wals.get_projections(lambda: {WALS.INPUT_ROWS: sp.csr_matrix((1, 31)), WALS.PROJECT_ROW: True}))
    with pytest.raises(ValueError, match=r"with WALS\.PROJECT_ROW"):
        wals.get_projections(lambda: ({WALS.INPUT_ROWS: row}, None))
