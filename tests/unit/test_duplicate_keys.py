"""A feature given twice in a row is one feature holding the sum (scipy's ``sum_duplicates``), in every decoder,
for training and serving alike, and in ``CSR`` itself: no row ever pairs a feature with itself."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pytest
import scipy.sparse as sp

from algorithm.csr import CSR
from algorithm.fm import FactorizationMachines
from container.formats.recordio import write_spmatrix_to_sparse_tensor
from container.formats.registry import JSON, JSONLINES, LIBSVM, RECORDIO, decode

D = 12


def repeated_rows(seed: int = 0) -> tuple[sp.csr_matrix, np.ndarray]:
    """Rows (float32 CSR, not canonical) where some columns come twice or three times and out of order, and
    their labels."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(40):
        keys = list(rng.choice(D, rng.integers(0, 5), replace=False))
        keys += list(rng.choice(keys, rng.integers(0, len(keys) + 1))) if keys else []
        rng.shuffle(keys)
        rows.append(keys)
    indptr = np.concatenate([[0], np.cumsum([len(k) for k in rows])])
    data = rng.integers(-8, 9, int(indptr[-1])).astype(np.float32) / 4  # exact sums in any order
    matrix = sp.csr_matrix((data, np.concatenate(rows).astype(np.int32), indptr), shape=(len(rows), D))
    assert not matrix.has_canonical_format
    return matrix, rng.integers(0, 2, len(rows)).astype(np.float32)


def summed(matrix: sp.csr_matrix) -> sp.csr_matrix:
    canonical = matrix.copy()
    canonical.sum_duplicates()
    return canonical


def bodies(matrix: sp.csr_matrix, labels: np.ndarray) -> dict[str, bytes]:
    rows = [(matrix.indices[a:b].tolist(), matrix.data[a:b].tolist())
            for a, b in zip(matrix.indptr[:-1], matrix.indptr[1:], strict=True)]
    instances = [{"data": {"features": {"keys": k, "shape": [D], "values": v}}} for k, v in rows]
    recordio = io.BytesIO()
    write_spmatrix_to_sparse_tensor(recordio, matrix, labels)  # keeps the repeats, as the SDK's writer does
    return {
        JSON: orjson.dumps({"instances": instances}),
        JSONLINES: b"\n".join(map(orjson.dumps, instances)),
        LIBSVM: "\n".join(f"{y:g} " + " ".join(f"{j}:{x!r}" for j, x in zip(k, v, strict=True))
                          for y, (k, v) in zip(labels, rows, strict=True)).encode(),
        RECORDIO: recordio.getvalue(),
    }


def assert_same_rows(csr: CSR, expected: sp.csr_matrix) -> None:
    np.testing.assert_array_equal(csr.indptr, expected.indptr)
    np.testing.assert_array_equal(csr.indices, expected.indices)
    np.testing.assert_array_equal(csr.data, expected.data)


@pytest.mark.parametrize("content_type", [JSON, JSONLINES, LIBSVM, RECORDIO])
def test_serving_decoders_sum_repeated_keys_as_scipy_does(content_type):
    matrix, labels = repeated_rows()
    X = decode(content_type, bodies(matrix, labels)[content_type], source="r", feature_dim=D)
    assert_same_rows(X, summed(matrix))


@pytest.mark.parametrize("content_type", [LIBSVM, RECORDIO])
def test_training_decoders_sum_repeated_keys_and_keep_the_labels(content_type):
    matrix, labels = repeated_rows(1)
    X = decode(content_type, bodies(matrix, labels)[content_type], source="r", with_labels=True)
    assert_same_rows(X, summed(matrix))
    np.testing.assert_array_equal(X.labels, labels)


def test_a_repeated_key_scores_as_its_summed_value_never_as_a_self_interaction():
    rng = np.random.default_rng(2)
    arrays = {"w0": np.zeros(1, np.float32), "w": rng.standard_normal(D).astype(np.float32),
              "V": rng.standard_normal((D, 3)).astype(np.float32)}
    model = FactorizationMachines.from_artifact(
        {"hyperparameters": {"feature_dim": D, "num_factors": 3, "predictor_type": "regressor"}}, arrays)
    twice = decode(LIBSVM, b"3:1 3:1 5:0.5\n5:0.5 3:2\n", source="r", feature_dim=D)
    scores = model.predict_scores(twice)
    assert scores[0] == scores[1]
    expected = 2 * arrays["w"][3] + 0.5 * arrays["w"][5] + 2 * 0.5 * arrays["V"][3] @ arrays["V"][5]
    np.testing.assert_allclose(scores[0], expected, rtol=1e-5)


def test_csr_sums_repeats_into_new_arrays_and_leaves_canonical_rows_as_given():
    data, indices = np.array([1, 2, 3, 4], np.float32), np.array([5, 1, 5, 5])
    csr = CSR(data, indices, np.array([0, 1, 4]), 8)
    assert csr.indices.tolist() == [5, 1, 5] and csr.data.tolist() == [1, 2, 7] and csr.indptr.tolist() == [0, 1, 3]
    assert indices.tolist() == [5, 1, 5, 5] and data.tolist() == [1, 2, 3, 4]
    unsorted = CSR(data, np.array([5, 1, 3, 2]), np.array([0, 1, 4]), 8)
    assert unsorted.data is data  # no repeats: nothing copied, the order kept
    with pytest.raises(ValueError, match="indptr must not decrease"):
        CSR(data, indices, np.array([0, 3, 1, 4]), 8)


@pytest.mark.parametrize("row_length", [3, 64, 65, 300])
def test_summed_rows_are_scipys_for_short_and_long_rows(row_length):
    rng = np.random.default_rng(row_length)
    indptr = np.arange(0, 20 * row_length + 1, row_length)
    indices = rng.integers(0, row_length, indptr[-1])
    data = (rng.integers(-8, 9, indptr[-1]) / 4).astype(np.float32)
    csr = CSR(data, indices, indptr, row_length)
    assert_same_rows(csr, summed(sp.csr_matrix((data, indices, indptr), shape=(20, row_length))))
