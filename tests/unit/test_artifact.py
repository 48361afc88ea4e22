"""algorithm.artifact: round trip, integrity checks, tarballs, plain numpy access, atomic writes, the optimizer
state beside the model, file modes and the package version."""

from __future__ import annotations

import json
import logging
import stat
import tarfile
import tomllib
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from algorithm import artifact
from algorithm.fm import FactorizationMachines


@pytest.fixture(scope="module")
def fitted() -> tuple[FactorizationMachines, sp.csr_matrix]:
    X = sp.random(200, 40, density=0.1, format="csr", random_state=0, dtype=np.float32)
    y = (np.arange(200) % 2).astype(np.float32)
    model = FactorizationMachines(feature_dim=40, num_factors=3, predictor_type="binary_classifier", epochs=2,
                                  mini_batch_size=50, num_threads=1, optimizer="adam")
    return model.fit(X, y), X


def test_round_trip_gives_identical_scores(tmp_path: Path, fitted) -> None:
    model, X = fitted
    artifact.save(tmp_path, model, extra_meta={"training_seconds": 1.5})
    loaded = artifact.load(tmp_path)
    assert isinstance(loaded, FactorizationMachines)
    np.testing.assert_array_equal(loaded.predict_scores(X), model.predict_scores(X))
    assert loaded.get_params() == model.resolved_params()
    assert loaded.best_epoch_ == model.best_epoch_
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["format_version"] == 1 and meta["algorithm"] == "fm" and meta["training_seconds"] == 1.5
    assert meta["arrays"]["V"] == {"shape": [40, 3], "dtype": "float32"}
    assert meta["checksum"]["over"] == ["w0", "w", "V"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [  # no temp files left
        "model.json", "model.npz", "optimizer_state.npz"]


def test_plain_numpy_can_read_the_arrays(tmp_path: Path, fitted) -> None:
    model, _ = fitted
    artifact.save(tmp_path, model)
    with np.load(tmp_path / "model.npz", allow_pickle=False) as npz:
        assert npz["w0"].shape == (1,) and npz["w"].shape == (40,) and npz["V"].shape == (40, 3)
        assert npz["V"].dtype == np.float32
        np.testing.assert_array_equal(npz["V"], model.V_)


def test_corrupted_arrays_fail_the_checksum(tmp_path: Path, fitted) -> None:
    model, _ = fitted
    artifact.save(tmp_path, model)
    meta = json.loads((tmp_path / "model.json").read_text())
    meta["checksum"]["sha256"] = "0" * 64
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(artifact.ArtifactError, match="Checksum mismatch"):
        artifact.load(tmp_path)


def test_npz_from_another_save_is_rejected(tmp_path: Path, fitted) -> None:
    model, X = fitted
    artifact.save(tmp_path / "a", model)
    other = FactorizationMachines(**model.get_params()).set_params(seed=7)
    artifact.save(tmp_path / "b", other.fit(X, np.ones(X.shape[0], np.float32)))
    (tmp_path / "a" / "model.npz").write_bytes((tmp_path / "b" / "model.npz").read_bytes())
    with pytest.raises(artifact.ArtifactError, match="Checksum mismatch"):
        artifact.load(tmp_path / "a")


def test_tarball_as_left_by_sdk_local_mode(tmp_path: Path, fitted) -> None:
    model, X = fitted
    artifact.save(tmp_path / "model", model)
    serving = tmp_path / "serving"
    serving.mkdir()
    with tarfile.open(serving / "model.tar.gz", "w:gz") as tar:
        for name in ("model.json", "model.npz"):
            tar.add(tmp_path / "model" / name, arcname=f"./{name}")
    np.testing.assert_array_equal(artifact.load(serving).predict_scores(X), model.predict_scores(X))
    np.testing.assert_array_equal(artifact.load(serving / "model.tar.gz").V_, model.V_)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda meta: meta.update(format_version=2), "format_version 2"),
        (lambda meta: meta.update(algorithm="xgboost"), "algorithm 'xgboost'"),
        (lambda meta: meta["arrays"]["V"].update(shape=[3, 40]), "array 'V'"),
    ],
)
def test_bad_metadata_is_a_clear_error(tmp_path: Path, fitted, change, message: str) -> None:
    model, _ = fitted
    artifact.save(tmp_path, model)
    meta = json.loads((tmp_path / "model.json").read_text())
    change(meta)
    (tmp_path / "model.json").write_text(json.dumps(meta))
    with pytest.raises(artifact.ArtifactError, match=message):
        artifact.load(tmp_path)


def test_missing_or_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(artifact.ArtifactError, match="No model"):
        artifact.load(tmp_path)
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(artifact.ArtifactError, match=r"Cannot read .*model\.npz"):
        artifact.load(tmp_path)
    (tmp_path / "model.npz").write_bytes(b"garbage")
    with pytest.raises(artifact.ArtifactError, match="not valid JSON"):
        artifact.load(tmp_path)
    (tmp_path / "model.json").write_text(json.dumps({"format_version": 1}))
    with pytest.raises(artifact.ArtifactError, match=r"model\.npz .* is not an npz file"):
        artifact.load(tmp_path)
    (tmp_path / "model.tar.gz").write_bytes(b"garbage")
    with pytest.raises(artifact.ArtifactError, match="Cannot read"):
        artifact.load(tmp_path / "model.tar.gz")


def test_extra_meta_cannot_override_artifact_keys(tmp_path: Path, fitted) -> None:
    model, _ = fitted
    with pytest.raises(ValueError, match="checksum"):
        artifact.save(tmp_path, model, extra_meta={"checksum": "x"})
    assert not list(tmp_path.iterdir())


def test_the_optimizer_state_travels_beside_the_model_and_only_a_warm_start_reads_it(tmp_path: Path, fitted) -> None:
    model, _ = fitted
    artifact.save(tmp_path, model)
    meta = json.loads((tmp_path / "model.json").read_text())
    section = meta["optimizer_state"]
    assert section["file"] == "optimizer_state.npz" and section["optimizer"] == "adam"
    assert section["steps"] == model.optimizer_state_.steps == 8 and section["epochs"] == 2
    assert section["checksum"]["over"] == ["m_w0", "m_w", "m_V", "v_w0", "v_w", "v_V"]
    with np.load(tmp_path / "model.npz", allow_pickle=False) as npz:
        assert sorted(npz.files) == ["V", "w", "w0"]  # what serving reads is the model alone
    restored = artifact.load(tmp_path, optimizer_state=True).optimizer_state_
    assert (restored.optimizer, restored.steps, restored.epochs) == ("adam", 8, 2)
    for name, array in model.optimizer_state_.arrays.items():
        np.testing.assert_array_equal(restored.arrays[name], array)
    (tmp_path / "optimizer_state.npz").write_bytes(b"garbage")  # serving neither reads nor checks it
    assert artifact.load(tmp_path).optimizer_state_ is None
    with pytest.raises(artifact.ArtifactError, match=r"optimizer_state\.npz .* is not an npz file"):
        artifact.load(tmp_path, optimizer_state=True)


def test_a_state_from_another_save_fails_the_checksum(tmp_path: Path, fitted) -> None:
    model, X = fitted
    artifact.save(tmp_path / "a", model)
    other = FactorizationMachines(**model.get_params()).set_params(seed=7).fit(X, np.ones(X.shape[0], np.float32))
    artifact.save(tmp_path / "b", other)
    (tmp_path / "a" / "optimizer_state.npz").write_bytes((tmp_path / "b" / "optimizer_state.npz").read_bytes())
    with pytest.raises(artifact.ArtifactError, match=r"Checksum mismatch .*optimizer_state\.npz"):
        artifact.load(tmp_path / "a", optimizer_state=True)


def test_a_missing_state_file_loads_the_model_without_it(tmp_path: Path, fitted, caplog) -> None:
    model, X = fitted
    artifact.save(tmp_path, model)
    (tmp_path / "optimizer_state.npz").unlink()
    caplog.set_level(logging.WARNING, logger="algorithm.artifact")
    loaded = artifact.load(tmp_path, optimizer_state=True)
    assert loaded.optimizer_state_ is None and "optimizer_state.npz, which is not there" in caplog.text
    np.testing.assert_array_equal(loaded.predict_scores(X), model.predict_scores(X))


def test_the_state_is_read_from_a_tarball_and_a_stale_one_is_removed(tmp_path: Path, fitted) -> None:
    model, _ = fitted
    artifact.save(tmp_path / "model", model)
    with tarfile.open(tmp_path / "model.tar.gz", "w:gz") as tar:
        for path in sorted((tmp_path / "model").iterdir()):
            tar.add(path, arcname=path.name)
    assert artifact.load(tmp_path / "model.tar.gz", optimizer_state=True).optimizer_state_.steps == 8
    served = artifact.load(tmp_path / "model")  # no state: saving it again leaves no state file behind
    artifact.save(tmp_path / "model", served)
    assert sorted(p.name for p in (tmp_path / "model").iterdir()) == ["model.json", "model.npz"]
    assert "optimizer_state" not in json.loads((tmp_path / "model" / "model.json").read_text())


def test_model_files_are_readable_by_everyone(tmp_path: Path, fitted) -> None:
    model, _ = fitted
    artifact.save(tmp_path, model)
    for path in tmp_path.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path.name


def test_package_version_is_the_projects(tmp_path: Path, fitted, monkeypatch) -> None:
    model, _ = fitted
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    version = tomllib.loads(pyproject.read_text())["project"]["version"]
    assert artifact.package_version() == version != "0+unknown"
    artifact.save(tmp_path, model)
    assert json.loads((tmp_path / "model.json").read_text())["package_version"] == version
    monkeypatch.setattr(artifact, "PYPROJECT", tmp_path / "absent.toml")  # installed: the distribution's metadata
    monkeypatch.setattr(artifact.importlib.metadata, "packages_distributions", lambda: {"algorithm": ["fm-wals"]})
    monkeypatch.setattr(artifact.importlib.metadata, "version", lambda name: {"fm-wals": "9.8.7"}[name])
    assert artifact.package_version() == "9.8.7"
