"""`train` as a local process under SAGEMAKER_BASE_DIR: success, and every user error -> failure file, exit 1."""

import io
import json
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tomllib
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from sagemaker.amazon.common import write_numpy_to_dense_tensor, write_spmatrix_to_sparse_tensor

from algorithm import artifact
from algorithm.wals import WALS
from container import metrics_log

ROOT = Path(__file__).resolve().parents[2]
FM_HP = {"feature_dim": "8", "num_factors": "4", "predictor_type": "binary_classifier", "epochs": "3",
         "mini_batch_size": "50"}


def _dense(features, labels):
    buf = io.BytesIO()
    write_numpy_to_dense_tensor(buf, np.asarray(features, np.float32), np.asarray(labels, np.float32))
    return buf.getvalue()


def _job(base: Path, hp=None, channels=None, config=None):
    (base / "input/config").mkdir(parents=True, exist_ok=True)
    (base / "input/config/hyperparameters.json").write_text(json.dumps(FM_HP if hp is None else hp))
    if config is not None:
        (base / "input/config/inputdataconfig.json").write_text(json.dumps(config))
    for channel, files in (channels or {}).items():
        (base / "input/data" / channel).mkdir(parents=True, exist_ok=True)
        for name, payload in files.items():
            (base / "input/data" / channel / name).write_bytes(payload)
    return base


def _train(base: Path):
    proc = subprocess.run([sys.executable, str(ROOT / "train")], env={"SAGEMAKER_BASE_DIR": str(base),
                          "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=300)
    failure = base / "output/failure"
    return proc, failure.read_text() if failure.exists() else None


def _classification_data(rows=400, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((rows, 8), dtype=np.float32)
    y = (x[:, 0] + x[:, 1] * x[:, 2] > 0.75).astype(np.float32)
    return x, y


def _clicks(rows=2000, fields=10, values=50, seed=0) -> bytes:
    """RecordIO of one-hot click-like rows (feature_dim = fields * values), about 1 in 4 labels positive."""
    rng = np.random.default_rng(seed)
    cols = (rng.integers(0, values, (rows, fields)) + np.arange(fields) * values).ravel()
    x = sp.csr_matrix((np.ones(rows * fields, np.float32), cols, np.arange(0, rows * fields + 1, fields)),
                      shape=(rows, fields * values))
    y = (rng.random(rows) < 1 / (1 + np.exp(-(x @ rng.normal(0, 0.5, fields * values) - 1.5)))).astype(np.float32)
    buf = io.BytesIO()
    write_spmatrix_to_sparse_tensor(buf, x, y)
    return buf.getvalue()


def _model_tarball(model_dir: Path, channel_dir: Path) -> None:
    """The model channel as SageMaker fills it from an earlier job's output: its model.tar.gz."""
    channel_dir.mkdir(parents=True)
    with tarfile.open(channel_dir / "model.tar.gz", "w:gz") as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=path.name)


def test_success_writes_model_and_metric_lines(tmp_path):
    x, y = _classification_data()
    base = _job(tmp_path, channels={"train": {"part0": _dense(x[:300], y[:300])},
                                    "test": {"part0": _dense(x[300:], y[300:])}})
    proc, failure = _train(base)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert failure is None
    assert (base / "model/model.json").is_file() and (base / "model/model.npz").is_file()
    parsed = metrics_log.parse_log(proc.stdout)
    assert len(parsed["train:binary_classification_cross_entropy:epoch"]) == 3
    assert 0.0 <= parsed["test:binary_classification_accuracy"][0] <= 1.0
    assert "#progress_metric: host=algo-1, completed 100.0 % of epochs" in proc.stdout
    assert re.search(r"\[\d\d/\d\d/\d{4} \d\d:\d\d:\d\d INFO \d+\] #quality_metric", proc.stdout)
    assert "Fitted 3 epoch(s) of 3" in proc.stdout and "Early stopping" not in proc.stdout
    for path in (base / "model").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path.name  # as SageMaker's model files
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert json.loads((base / "model/model.json").read_text())["package_version"] == version


def test_early_stopping_says_so_and_completes_the_progress(tmp_path):
    x, y = _classification_data()
    hp = {**FM_HP, "epochs": "40", "early_stopping_patience": "2", "early_stopping_tolerance": "0.2",
          "num_threads": "1"}
    base = _job(tmp_path, hp=hp, channels={"train": {"part0": _dense(x[:300], y[:300])},
                                           "test": {"part0": _dense(x[300:], y[300:])}})
    proc, failure = _train(base)
    assert proc.returncode == 0, failure
    ran = len(metrics_log.parse_log(proc.stdout)["train:binary_classification_cross_entropy:epoch"])
    kept = json.loads((base / "model/model.json").read_text())["best_epoch"]
    assert ran < 40 and kept == ran - 3
    assert f"Fitted {ran} epoch(s) of 40" in proc.stdout and "Fitted 40" not in proc.stdout
    assert (f"Early stopping ended training after epoch {ran - 1} ({ran} of 40 epochs): the test "
            "binary_classification_cross_entropy did not improve by more than early_stopping_tolerance=0.2 for "
            f"early_stopping_patience=2 epochs; the model keeps the weights of epoch {kept}") in proc.stdout
    assert proc.stdout.rstrip().count("completed 100.0 % of epochs") == 1


def test_broken_hyperparameters_json(tmp_path):
    base = _job(tmp_path)
    (base / "input/config/hyperparameters.json").write_text('{"feature_dim": ')
    proc, failure = _train(base)
    assert proc.returncode == 1
    assert failure.splitlines()[0].startswith(f"{base}/input/config/hyperparameters.json is not valid JSON")


def test_invalid_hyperparameters_all_listed(tmp_path):
    x, y = _classification_data(50)
    base = _job(tmp_path, hp={**FM_HP, "num_factors": "0", "epochs": "many", "learning_rate": "0.1"},
                channels={"train": {"a": _dense(x, y)}})
    proc, failure = _train(base)
    assert proc.returncode == 1
    first = failure.splitlines()[0]
    assert "num_factors='0'" in first and "epochs='many'" in first and "'learning_rate'" in first
    assert not (base / "model/model.json").exists()


def test_missing_train_channel(tmp_path):
    x, y = _classification_data(50)
    base = _job(tmp_path, channels={"test": {"a": _dense(x, y)}},
                config={"test": {"TrainingInputMode": "File"}})
    proc, failure = _train(base)
    assert proc.returncode == 1
    assert "'train' channel is required" in failure.splitlines()[0]


def test_truncated_record_names_the_file(tmp_path):
    x, y = _classification_data(50)
    base = _job(tmp_path, channels={"train": {"part-7": _dense(x, y)[:-9]}})
    proc, failure = _train(base)
    assert proc.returncode == 1
    assert "part-7" in failure.splitlines()[0]


def test_key_beyond_feature_dim(tmp_path):
    buf = io.BytesIO()
    write_spmatrix_to_sparse_tensor(buf, sp.csr_matrix(np.eye(10, dtype=np.float32)), np.ones(10, np.float32))
    base = _job(tmp_path, channels={"train": {"wide": buf.getvalue()}})
    proc, failure = _train(base)
    assert proc.returncode == 1
    assert "wide" in failure and "8" in failure.splitlines()[0]


def test_classifier_label_outside_zero_one(tmp_path):
    x, y = _classification_data(50)
    y[17] = 2.0
    base = _job(tmp_path, channels={"train": {"a": _dense(x, y)}})
    proc, failure = _train(base)
    assert proc.returncode == 1
    assert "row 17" in failure and "labels 0 or 1" in failure


def test_divergence_is_a_clear_user_error_and_leaves_no_model(tmp_path):
    x, y = _classification_data(200)
    hp = {**FM_HP, "predictor_type": "regressor", "optimizer": "sgd", "bias_lr": "1e30", "linear_lr": "1e30",
          "factors_lr": "1e30", "epochs": "5"}
    base = _job(tmp_path, hp=hp, channels={"train": {"a": _dense(x * 1e3, y * 1e6)}})
    proc, failure = _train(base)
    assert proc.returncode == 1, proc.stdout
    assert "learning rate" in failure.splitlines()[0].lower()
    assert not (base / "model/model.json").exists()


def test_warm_start_continues_and_rejects_a_shape_mismatch(tmp_path):
    x, y = _classification_data()
    first = _job(tmp_path / "first", channels={"train": {"a": _dense(x, y)}})
    assert _train(first)[0].returncode == 0
    second = _job(tmp_path / "second", channels={"train": {"a": _dense(x, y)}})
    shutil.copytree(first / "model", second / "input/data/model")
    proc, _ = _train(second)
    assert proc.returncode == 0 and "Warm start" in proc.stdout
    third = _job(tmp_path / "third", hp={**FM_HP, "num_factors": "6"}, channels={"train": {"a": _dense(x, y)}})
    shutil.copytree(first / "model", third / "input/data/model")
    proc, failure = _train(third)
    assert proc.returncode == 1
    assert "warm start" in failure.lower()


@pytest.mark.parametrize("optimizer", ["adam", "sgd", "adagrad", "ftrl"])
def test_a_warm_start_continues_the_optimizer_like_one_longer_job(tmp_path, optimizer):
    """3 epochs, then a warm start from that job's model.tar.gz for 3 more, give the model 6 epochs give."""
    rng = np.random.default_rng(1)
    x = rng.random((400, 8), dtype=np.float32)
    target = 3 * x[:, 0] + 2 * x[:, 1] * x[:, 2] - x[:, 3]
    hp = {**FM_HP, "predictor_type": "regressor", "optimizer": optimizer, "num_threads": "1"}
    channels = {"train": {"part0": _dense(x, target)}}
    jobs = {"six": _job(tmp_path / "six", hp={**hp, "epochs": "6"}, channels=channels),
            "three": _job(tmp_path / "three", hp=hp, channels=channels),
            "more": _job(tmp_path / "more", hp=hp, channels=channels)}
    for name in ("six", "three"):
        assert _train(jobs[name])[0].returncode == 0
    _model_tarball(jobs["three"] / "model", jobs["more"] / "input/data/model")
    proc, failure = _train(jobs["more"])
    assert proc.returncode == 0, failure
    assert f"the {optimizer} optimizer continues from its state after 3 epoch(s)" in proc.stdout
    continued, six = artifact.load(jobs["more"] / "model"), artifact.load(jobs["six"] / "model")
    np.testing.assert_allclose(continued.V_, six.V_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(continued.w_, six.w_, rtol=1e-5, atol=1e-6)


def test_a_warm_start_without_the_optimizer_state_starts_it_fresh_and_says_so(tmp_path):
    x, y = _classification_data()
    first = _job(tmp_path / "first", hp={**FM_HP, "optimizer": "adagrad"}, channels={"train": {"a": _dense(x, y)}})
    assert _train(first)[0].returncode == 0
    second = _job(tmp_path / "second", hp={**FM_HP, "optimizer": "adam"}, channels={"train": {"a": _dense(x, y)}})
    shutil.copytree(first / "model", second / "input/data/model")
    proc, _ = _train(second)
    assert proc.returncode == 0
    assert "the adam optimizer starts fresh (the earlier model was trained with optimizer=adagrad" in proc.stdout
    third = _job(tmp_path / "third", hp={**FM_HP, "optimizer": "adagrad"}, channels={"train": {"a": _dense(x, y)}})
    shutil.copytree(first / "model", third / "input/data/model")
    (third / "input/data/model/optimizer_state.npz").unlink()  # e.g. only model.json and model.npz copied
    proc, _ = _train(third)
    assert proc.returncode == 0
    assert "optimizer_state.npz, which is not there" in proc.stdout
    assert "the adagrad optimizer starts fresh (the earlier model carries no optimizer state)" in proc.stdout


def test_a_wals_model_in_the_model_channel_is_the_users_error(tmp_path):
    x, y = _classification_data()
    base = _job(tmp_path, channels={"train": {"a": _dense(x, y)}})
    ratings = sp.random(20, 10, density=0.3, format="csr", random_state=0, dtype=np.float32)
    artifact.save(base / "input/data/model", WALS(embedding_dimension=2, max_sweeps=1).fit(ratings))
    proc, failure = _train(base)
    assert proc.returncode == 1, failure
    first = failure.splitlines()[0]
    assert first.startswith("Cannot warm start from the 'model' channel")
    assert "it holds a model trained with algorithm=wals, and this job trains algorithm=fm" in first


def test_a_loss_that_keeps_growing_is_reported_with_the_settings_to_lower(tmp_path):
    hp = {**FM_HP, "feature_dim": "500", "optimizer": "sgd", "positive_class_weight": "20", "bias_lr": "1",
          "linear_lr": "1", "factors_lr": "1", "mini_batch_size": "20", "epochs": "10", "num_threads": "1"}
    base = _job(tmp_path, hp=hp, channels={"train": {"clicks": _clicks()}})
    proc, failure = _train(base)
    assert proc.returncode == 0, failure
    warning = next(line for line in proc.stdout.splitlines() if "the training loss rose" in line)
    assert " WARNING " in warning and "in each of the last 3 epochs" in warning
    assert "factors_lr=1.0" in warning and "positive_class_weight=20.0" in warning and "clip_gradient" in warning


def test_positive_class_weight_with_a_regressor_is_refused(tmp_path):
    x, y = _classification_data(50)
    base = _job(tmp_path, hp={**FM_HP, "predictor_type": "regressor", "positive_class_weight": "5"},
                channels={"train": {"a": _dense(x, y)}})
    proc, failure = _train(base)
    assert proc.returncode == 1
    assert "positive_class_weight=5.0 applies to predictor_type=binary_classifier only" in failure.splitlines()[0]


@pytest.mark.parametrize("content_type,body", [
    ("text/csv", b"1,0.5,0,0,0,0,0,0,1\n0,0,0,0,0,0,0,0,0\n" * 40),
    ("text/libsvm", b"1 0:0.5 7:1\n0 3:1\n" * 40),
])
def test_text_training_formats(tmp_path, content_type, body):
    base = _job(tmp_path, channels={"train": {"data": body}},
                config={"train": {"ContentType": content_type, "TrainingInputMode": "File"}})
    proc, failure = _train(base)
    assert proc.returncode == 0, failure


@pytest.mark.parametrize("body,shown", [
    (b"1,0.5,0,0,0,0,0,0,1\n0,0,0,0,0,0,0,0,0\n" * 40, "text/csv"),
    (b"1 0:0.5 7:1\n0 3:1\n" * 40, "text/libsvm"),
])
def test_text_training_without_content_type_is_read_as_its_bytes_show(tmp_path, body, shown):
    base = _job(tmp_path, channels={"train": {"data": body}}, config={"train": {"TrainingInputMode": "File"}})
    proc, failure = _train(base)
    assert proc.returncode == 0, failure
    assert f"Channel 'train' declares no ContentType: reading {base}/input/data/train/data as {shown}" \
        in proc.stdout


def test_a_csv_header_without_content_type_is_named_as_a_header(tmp_path):
    body = b"label," + b",".join(b"f%d" % i for i in range(8)) + b"\n" + b"1,0.5,0,0,0,0,0,0,1\n" * 40
    proc, failure = _train(_job(tmp_path, channels={"train": {"data.csv": body}}))  # no inputdataconfig.json
    assert proc.returncode == 1
    assert "data.csv: line 1 column 1: 'label' is not a number; the first line looks like a header" in failure


def test_a_second_run_loads_every_kernel_from_the_cache(tmp_path):
    """Whether the first run compiled (it says so) or not, the next one finds every kernel in numba's cache."""
    x, y = _classification_data(rows=100)
    for run in ("first", "second"):
        base = _job(tmp_path / run, channels={"train": {"a": _dense(x, y)}, "test": {"a": _dense(x, y)}})
        proc, failure = _train(base)
        assert proc.returncode == 0, failure
        compiled = "Compiling numba kernels, first run on this machine only" in proc.stdout
        assert compiled == ("Compiled " in proc.stdout)
    assert not compiled, proc.stdout
