"""The built-in FM's model format against real Apache MXNet 1.9.1, run with its own python (.venv-mxnet, made
by `make venv-mxnet`; MXNet is never imported here): checkpoints MXNet writes (both name variants, several
shapes, dense and row_sparse storage) load through our reader and score as MXNet's NDArray arithmetic does;
what our exporter writes loads with the blog's Module.load and mx.nd.load and scores the same in MXNet.
Without that venv these tests skip with the reason, and fail under REQUIRE_DOCKER=1 (`make test`)."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from algorithm import artifact
from algorithm.fm import FactorizationMachines
from tests.conftest import ROOT, skip_or_fail

MXNET_PYTHON = ROOT / ".venv-mxnet" / "bin" / "python"
MXNET_INSTALLED = ROOT / ".venv-mxnet" / ".installed"  # written once its pip install succeeded
SCRIPTS = ROOT / "tests" / "mxnet"
ROW_SPARSE = b"\xc9\xfa\x93\xf9\x01\x00\x00\x00"  # an array's V2 magic followed by stype 1


def run_mxnet(*args: str | Path) -> str:
    if not MXNET_INSTALLED.exists():
        skip_or_fail(f"{MXNET_INSTALLED.parent.relative_to(ROOT)} holds no installed MXNet (make venv-mxnet "
                     "installs it from requirements-mxnet.txt, with Python 3.11): the MXNet compatibility tests "
                     "cannot run")
    environment = {"PATH": "/usr/bin:/bin", "MXNET_STORAGE_FALLBACK_LOG_VERBOSE": "0"}
    done = subprocess.run([str(MXNET_PYTHON), *map(str, args)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, check=False, env=environment)
    assert done.returncode == 0, done.stderr[-5000:]
    return done.stdout


@pytest.fixture(scope="module")
def mxnet_checkpoints(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("mxnet-checkpoints")
    run_mxnet(SCRIPTS / "write_checkpoints.py", out)
    return out


def as_model_algo(case_dir: Path, target: Path) -> Path:
    """The case's three files zipped as the built-in's model_algo-1, alone in ``target``."""
    target.mkdir()
    archive = shutil.make_archive(str(target / "zipped"), "zip", case_dir)
    return Path(shutil.move(archive, target / "model_algo-1")).parent


def test_checkpoints_mxnet_writes_load_and_score_as_mxnet_does(mxnet_checkpoints: Path, tmp_path: Path) -> None:
    cases = json.loads((mxnet_checkpoints / "cases.json").read_text())
    X_all = np.load(mxnet_checkpoints / "X.npy")
    variants = {name.split("-")[0] for name in cases}
    assert variants == {"w1_weight", "Linear_Plus_Bias"} and len(cases) >= 12
    row_sparse = 0
    for name, case in cases.items():
        params = (mxnet_checkpoints / name / "params").read_bytes()
        if case["stype"] == "row_sparse":
            assert ROW_SPARSE in params, name  # MXNet really stored the row_sparse layout
            row_sparse += 1
        model = artifact.load(as_model_algo(mxnet_checkpoints / name, tmp_path / name))
        assert isinstance(model, FactorizationMachines)
        assert (model.feature_dim, model.num_factors, model.predictor_type) == (
            case["feature_dim"], case["num_factors"], case["predictor_type"]), name
        np.testing.assert_allclose(model.predict_scores(X_all[:, :case["feature_dim"]]), case["scores"],
                                   rtol=1e-5, atol=1e-5, err_msg=name)
    assert row_sparse >= 5


@pytest.mark.parametrize(("predictor_type", "feature_dim", "num_factors"),
                         [("binary_classifier", 40, 8), ("regressor", 300, 64), ("binary_classifier", 1, 1)])
def test_mxnet_loads_what_we_export_and_scores_the_same(tmp_path: Path, predictor_type: str, feature_dim: int,
                                                        num_factors: int) -> None:
    rng = np.random.default_rng(feature_dim)
    arrays = {"w0": rng.normal(size=1).astype(np.float32), "w": rng.normal(size=feature_dim).astype(np.float32),
              "V": rng.normal(scale=0.2, size=(feature_dim, num_factors)).astype(np.float32)}
    model = FactorizationMachines.from_artifact({"hyperparameters": {
        "feature_dim": feature_dim, "num_factors": num_factors, "predictor_type": predictor_type}}, arrays)
    artifact.save(tmp_path / "ours", model)
    tarball = artifact.export_builtin(tmp_path / "ours", tmp_path / "export" / "model.tar.gz")
    X = ((rng.random((20, feature_dim)) < 0.3) * rng.normal(size=(20, feature_dim))).astype(np.float32)
    np.save(tmp_path / "X.npy", X)
    work = tmp_path / "work"
    work.mkdir()
    loaded = json.loads(run_mxnet(SCRIPTS / "load_export.py", tarball, tmp_path / "X.npy", work))
    assert loaded["arg_names"] == ["data", "out_label", "v", "w0_weight", "w1_weight"]
    assert loaded["shapes"] == {"arg:v": [feature_dim, num_factors], "arg:w1_weight": [feature_dim, 1],
                                "arg:w0_weight": [1]}
    assert set(loaded["dtypes"].values()) == {"float32"}
    assert loaded["meta"]["training_parameters"] == {"feature_dim": str(feature_dim),
                                                     "num_factors": str(num_factors), "predictor_type": predictor_type}
    ours = model.predict_scores(X)
    np.testing.assert_allclose(loaded["scores"], ours, rtol=1e-5, atol=1e-5)
    # The graph run forward sums in another order: float32 rounding of its terms (tens here) shows at 1e-5.
    np.testing.assert_allclose(loaded["module_scores"], ours, rtol=1e-5, atol=1e-4)
