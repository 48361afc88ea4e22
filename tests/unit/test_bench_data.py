"""Small-size checks of the FM benchmark's seeded data generators (bench/fm_data.py) and libsvm writer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench import fm_anchors, fm_data

SMALL_CTR = {"n_rows": 4_000, "n_features": 20_000, "n_fields": 12, "rare_count": 50.0}
SMALL_RATINGS = {"n_users": 60, "n_items": 80, "n_ratings": 2_500}


def test_ctr_rows_are_one_hot_distinct_sorted_and_seeded() -> None:
    raw = fm_data.generate_ctr(3, **SMALL_CTR)
    idx = raw["idx"]
    assert idx.shape == (4_000, 12) and idx.dtype == np.int32
    assert idx.min() >= 0 and idx.max() < 20_000
    assert np.all(np.diff(idx, axis=1) > 0)  # sorted and distinct within each row
    again = fm_data.generate_ctr(3, **SMALL_CTR)
    assert all(np.array_equal(raw[k], again[k]) for k in raw)
    other = fm_data.generate_ctr(4, **SMALL_CTR)
    assert not np.array_equal(raw["idx"], other["idx"])


def test_ctr_labels_follow_the_hidden_model() -> None:
    raw = fm_data.generate_ctr(0, **SMALL_CTR)
    y, p = raw["y"], raw["p"]
    assert set(np.unique(y)) == {0.0, 1.0}
    assert abs(y.mean() - 0.25) < 0.03 and abs(p.mean() - 0.25) < 0.02
    assert 0.7 < fm_data.auc(y, p) < 0.9  # the Bayes-optimal score separates the labels


def test_ctr_feature_frequencies_are_power_law() -> None:
    raw = fm_data.generate_ctr(0, **SMALL_CTR)
    counts = np.sort(np.bincount(raw["idx"].ravel(), minlength=20_000))[::-1]
    top = counts[: len(counts) // 100].sum() / counts.sum()
    assert top > 0.3  # the top 1% of features carry a large share of the occurrences
    assert (counts == 0).sum() > 0  # and a long tail is never seen


def test_ctr_sets_split_and_build_csr() -> None:
    train, test, meta = fm_data._ctr_sets(fm_data.generate_ctr(0, **SMALL_CTR), 20_000)
    assert (train.n_rows, test.n_rows) == (3_600, 400)
    for ds in (train, test):
        assert ds.data.dtype == np.float32 and ds.indices.dtype == np.int64 and ds.indptr.dtype == np.int64
        assert np.all(ds.data == 1.0) and np.all(np.diff(ds.indptr) == 12) and ds.n_cols == 20_000
        assert ds.to_scipy().shape == (ds.n_rows, 20_000)
    assert 0.5 < meta["bayes_auc"] < 1.0 and meta["bayes_logloss"] > 0


def test_ratings_pairs_distinct_ratings_in_range() -> None:
    raw = fm_data.generate_ratings(1, **SMALL_RATINGS)
    user, item, y = raw["user"], raw["item"], raw["y"]
    assert len(y) == 2_500
    assert user.max() < 60 and item.max() < 80
    assert len(np.unique(user.astype(np.int64) * 80 + item)) == 2_500
    assert set(np.unique(y)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    assert np.all((raw["expected"] >= 1) & (raw["expected"] <= 5))
    assert fm_data.rmse(y, raw["expected"]) < fm_data.rmse(y, np.full_like(y, y.mean()))
    again = fm_data.generate_ratings(1, **SMALL_RATINGS)
    assert all(np.array_equal(raw[k], again[k]) for k in raw)


def test_ratings_sets_are_one_hot_user_and_item() -> None:
    raw = fm_data.generate_ratings(0)  # the full MovieLens-1M shape is fast enough (~2 s)
    train, test, meta = fm_data._ratings_sets(raw)
    assert train.n_rows + test.n_rows == fm_data.ML_RATINGS and test.n_rows == fm_data.ML_RATINGS // 10
    assert train.n_cols == 9_746
    cols = train.indices.reshape(-1, 2)
    assert np.all(cols[:, 0] < 6_040) and np.all(cols[:, 1] >= 6_040)
    assert 0.7 < meta["bayes_rmse"] < 0.8 < 1.0 < meta["global_mean_rmse"]


def test_user_counts_sum_exactly_and_respect_bounds() -> None:
    rng = np.random.default_rng(0)
    counts = fm_data._user_counts(rng, 6_040, 3_706, 1_000_209)
    assert counts.sum() == 1_000_209 and counts.min() >= 20 and counts.max() <= 2_314


def test_digits_is_it_a_zero() -> None:
    data = fm_data.make_digits(0)
    assert data.task == "binary_classifier" and data.feature_dim == 64
    assert data.train.n_rows + data.test.n_rows == 1_797
    assert 0.05 < data.test.labels.mean() < 0.15
    assert data.train.data.max() <= 1.0


def test_load_caches_and_subsamples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    generate = fm_data.generate_ctr

    def small(seed: int = 0) -> dict[str, np.ndarray]:
        calls.append(seed)
        return generate(seed, **SMALL_CTR)

    monkeypatch.setattr(fm_data, "generate_ctr", small)
    monkeypatch.setattr(fm_data, "CTR_FEATURES", 20_000)
    first = fm_data.load("ctr", seed=5, data_dir=tmp_path)
    second = fm_data.load("ctr", seed=5, data_dir=tmp_path)
    assert calls == [5] and len(list(tmp_path.glob("ctr_*seed5.npz"))) == 1
    assert np.array_equal(first.train.indices, second.train.indices)
    assert first.meta["bayes_auc"] == pytest.approx(second.meta["bayes_auc"])
    sub = fm_data.load("ctr", seed=5, data_dir=tmp_path, rows=1_000)
    assert sub.train.n_rows == 1_000 and sub.test.n_rows == 400  # test shrinks, but keeps >= 2,000 or all
    assert np.array_equal(sub.train.labels, first.train.labels[:1_000])


def test_metrics() -> None:
    y = np.array([0, 0, 1, 1], np.float32)
    assert fm_data.auc(y, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert fm_data.logloss(y, np.array([0.5] * 4)) == pytest.approx(np.log(2))
    assert fm_data.rmse(np.array([1.0, 3.0]), np.array([2.0, 2.0])) == pytest.approx(1.0)
    assert fm_data.accuracy(y, np.array([0.2, 0.6, 0.7, 0.9])) == pytest.approx(0.75)


def test_write_libsvm_matches_rows(tmp_path: Path) -> None:
    train, _, _ = fm_data._ctr_sets(fm_data.generate_ctr(0, **SMALL_CTR), 20_000)
    small = train.head(7)
    fm_anchors.write_libsvm(small, tmp_path / "one_hot.txt", chunk=3)
    lines = (tmp_path / "one_hot.txt").read_text().splitlines()
    assert len(lines) == 7
    label, *feats = lines[2].split()
    assert float(label) == small.labels[2]
    assert [int(f.split(":")[0]) for f in feats] == small.indices[24:36].tolist()
    digits = fm_data.make_digits(0).train.head(3)
    fm_anchors.write_libsvm(digits, tmp_path / "dense.txt")
    first = (tmp_path / "dense.txt").read_text().splitlines()[0].split()
    assert len(first) - 1 == digits.indptr[1] - digits.indptr[0]


def test_libfm_binary_is_found_or_skipped_with_the_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(fm_anchors.LIBFM_ENV, raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    path, why = fm_anchors.libfm_binary(None)
    assert path is None and "not run" in why and "--libfm" in why
    script = tmp_path / "libFM"
    script.write_text("#!/bin/sh\n")
    path, why = fm_anchors.libfm_binary(str(script))
    assert path is None and "not an executable file" in why
    script.chmod(0o755)
    assert fm_anchors.libfm_binary(None) == (str(script), "")  # found on PATH
    monkeypatch.setenv(fm_anchors.LIBFM_ENV, str(tmp_path / "missing"))
    assert fm_anchors.libfm_binary(None)[0] is None


def test_libfm_runs_sgd_on_the_ratings_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real libFM run (skipped without a binary: --libfm / $LIBFM / PATH): per-epoch CPU seconds and test RMSE
    from its rlog, the final RMSE from its predictions."""
    binary, why = fm_anchors.libfm_binary(None)
    if binary is None:
        pytest.skip(why)
    monkeypatch.setattr(fm_anchors, "DATA_DIR", tmp_path)
    train, test, meta = fm_data._ratings_sets(fm_data.generate_ratings(0, **SMALL_RATINGS), 60, 80)
    data = fm_data.BenchData("ratings", "regressor", train, test, {"seed": 0, **meta})
    result = fm_anchors.run_libfm(data, 4, 3, binary)
    assert len(result.epoch_seconds) == 3 and result.cpu_seconds == result.epoch_seconds
    assert all(s >= 0 for s in result.epoch_seconds)
    assert [set(m) for m in result.epoch_metrics] == [{"rmse"}] * 3
    assert result.metrics["rmse"] == pytest.approx(result.epoch_metrics[-1]["rmse"], abs=1e-3)
