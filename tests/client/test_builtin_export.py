"""The client's export to the built-in FM's layout: FactorizationMachinesModel.export_builtin and
FactorizationMachines.export_builtin write a model.tar.gz that reads back as the same model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from algorithm import artifact
from algorithm.fm import FactorizationMachines as FMModel
from fmwals import FactorizationMachines, FactorizationMachinesModel


def test_model_export_builtin_reads_back_as_the_same_model(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    arrays = {"w0": np.ones(1, np.float32), "w": rng.normal(size=6).astype(np.float32),
              "V": rng.normal(size=(6, 2)).astype(np.float32)}
    model = FMModel.from_artifact({"hyperparameters": {"feature_dim": 6, "num_factors": 2,
                                                       "predictor_type": "binary_classifier"}}, arrays)
    artifact.save(tmp_path / "model", model)
    written = FactorizationMachinesModel(f"file://{tmp_path / 'model'}").export_builtin(tmp_path / "b.tar.gz")
    assert written == tmp_path / "b.tar.gz"
    meta, read = artifact.read(written)
    assert meta["predictor_type"] == "binary_classifier"
    for name in arrays:
        np.testing.assert_array_equal(read[name], arrays[name])


def test_an_estimator_without_a_model_says_so(tmp_path: Path) -> None:
    estimator = FactorizationMachines(role="r", instance_count=1, instance_type="local_process", num_factors=2,
                                      predictor_type="regressor")
    with pytest.raises(ValueError, match="no trained model yet"):
        estimator.export_builtin(tmp_path / "b.tar.gz")
