"""`train` with algorithm=wals as a local process: CSV and RecordIO triplets, test metrics, weight and model
channels, the artifact against an in-process fit, and every user error -> output/failure + exit 1."""

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from algorithm.artifact import load
from algorithm.wals import WALS
from container import metrics_log
from container.formats.recordio import write_spmatrix_to_sparse_tensor

ROOT = Path(__file__).resolve().parents[2]
CSV, RECORDIO = "text/csv", "application/x-recordio-protobuf"
HP = {"algorithm": "wals", "embedding_dimension": "4", "max_sweeps": "3", "regularization_coeff": "0.5"}
IN_PROCESS = {"embedding_dimension": 4, "max_sweeps": 3, "regularization_coeff": 0.5, "num_threads": 1}


def _job(base: Path, hp: dict, channels: dict[str, dict[str, bytes]], content_types: dict[str, str]) -> Path:
    (base / "input/config").mkdir(parents=True, exist_ok=True)
    (base / "input/config/hyperparameters.json").write_text(json.dumps(hp))
    config = {name: {"ContentType": content_types.get(name, CSV), "TrainingInputMode": "File"}
              for name in channels}
    for entry in config.values():  # None: the channel declares no ContentType
        if entry["ContentType"] is None:
            del entry["ContentType"]
    (base / "input/config/inputdataconfig.json").write_text(json.dumps(config))
    for channel, files in channels.items():
        (base / "input/data" / channel).mkdir(parents=True, exist_ok=True)
        for name, payload in files.items():
            (base / "input/data" / channel / name).write_bytes(payload)
    return base


def _train(base: Path, hp: dict, channels: dict, content_types: dict | None = None):
    _job(base, hp, channels, content_types or {})
    return _run(base)


def _run(base: Path):
    proc = subprocess.run([sys.executable, str(ROOT / "train")], env={"SAGEMAKER_BASE_DIR": str(base),
                          "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=300)
    failure = base / "output/failure"
    return proc, failure.read_text() if failure.exists() else None


def _ratings(seed=0, n_rows=40, n_cols=15, n=300):
    """(row, col, value) arrays of a small explicit ratings matrix (duplicates possible)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_rows, n), rng.integers(0, n_cols, n), rng.integers(1, 6, n).astype(np.float32)


def _csv(rows, cols, values, header="user,item,rating", fmt=("u{}", "item-{}"), weights=None) -> bytes:
    lines = [header] if header else []
    for i, (r, c, v) in enumerate(zip(rows, cols, values, strict=True)):
        tail = "" if weights is None else f",{float(weights[i])!r}"
        lines.append(f"{fmt[0].format(r)},{fmt[1].format(c)},{float(v)!r}{tail}")
    return ("\n".join(lines) + "\n").encode()


def _named(rows, cols) -> tuple[list[str], list[str]]:
    """The string ids _csv writes by default."""
    return [f"u{r}" for r in rows], [f"item-{c}" for c in cols]


def _one_hot(rows, cols, values, num_rows, num_cols) -> bytes:
    n = len(rows)
    keys = np.ravel(np.column_stack([rows, np.asarray(cols) + num_rows]))
    X = sp.csr_matrix((np.ones(2 * n, np.float32), (np.repeat(np.arange(n), 2), keys)),
                      shape=(n, num_rows + num_cols))
    buf = io.BytesIO()
    write_spmatrix_to_sparse_tensor(buf, X, np.asarray(values, np.float32))
    return buf.getvalue()


def _three_keys() -> bytes:
    buf = io.BytesIO()
    write_spmatrix_to_sparse_tensor(buf, sp.csr_matrix(np.float32([[1, 1, 1]])), np.float32([1]))
    return buf.getvalue()


def _matrix(row_ids, col_ids, values, shape=None) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """The training matrix built independently: ids sorted, duplicates summed."""
    rows, r = np.unique(row_ids, return_inverse=True)
    cols, c = np.unique(col_ids, return_inverse=True)
    R = sp.csr_matrix((values, (r, c)), shape=shape or (rows.size, cols.size), dtype=np.float32)
    R.sum_duplicates()
    return R, rows, cols


def test_csv_string_ids_metrics_and_artifact_match_in_process_fit(tmp_path):
    rows, cols, values = _ratings()
    test_rows, test_cols, test_values = _ratings(seed=1, n=60)
    test_body = _csv(test_rows, test_cols, test_values, header="") + b"nobody,item-1,3\n"
    proc, failure = _train(tmp_path, HP, {"train": {"a.csv": _csv(rows[:200], cols[:200], values[:200]),
                                                    "b.csv": _csv(rows[200:], cols[200:], values[200:])},
                                          "test": {"t.csv": test_body}})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert failure is None
    parsed = metrics_log.parse_log(proc.stdout)
    assert len(parsed["train:loss:epoch"]) == len(parsed["train:rwse:epoch"]) == 3
    assert len(parsed["test:rmse:epoch"]) == 3 and parsed["test:rmse"] == parsed["test:rmse:epoch"][-1:]
    assert parsed["train:loss:epoch"][2] < parsed["train:loss:epoch"][0]
    assert "dropped 1 of 61 entries" in proc.stdout
    assert "#progress_metric: host=algo-1, completed 100.0 % of epochs" in proc.stdout

    with np.load(tmp_path / "model/model.npz", allow_pickle=False) as npz:
        assert npz["row_ids"].dtype.kind == "U"
    model = load(tmp_path / "model")
    R, row_ids, col_ids = _matrix(*_named(rows, cols), values)
    assert model.row_ids.ids.tolist() == row_ids.tolist() and model.col_ids.ids.tolist() == col_ids.tolist()
    assert (model.seen != (R != 0)).nnz == 0
    expected = WALS(**IN_PROCESS).fit(R)
    np.testing.assert_allclose(model.wals.row_factors_, expected.row_factors_, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model.wals.col_factors_, expected.col_factors_, rtol=1e-5, atol=1e-6)


def test_early_stopping_says_so_and_completes_the_progress(tmp_path):
    rows, cols, values = _ratings()
    held_out = _ratings(seed=1, n=60)
    hp = {**HP, "max_sweeps": "30", "early_stopping_patience": "2", "early_stopping_tolerance": "0.2"}
    proc, failure = _train(tmp_path, hp, {"train": {"a.csv": _csv(rows, cols, values)},
                                          "test": {"t.csv": _csv(*held_out)}})
    assert proc.returncode == 0, failure
    ran = len(metrics_log.parse_log(proc.stdout)["train:loss:epoch"])
    kept = json.loads((tmp_path / "model/model.json").read_text())["best_sweep"]
    assert ran < 30 and kept == ran - 3
    assert f"Fitted {ran} sweep(s) of 30" in proc.stdout
    assert (f"Early stopping ended training after sweep {ran - 1} ({ran} of 30 sweeps): the test rmse did not "
            "improve by more than early_stopping_tolerance=0.2 for early_stopping_patience=2 sweeps; the model "
            f"keeps the weights of sweep {kept}") in proc.stdout
    assert proc.stdout.count("completed 100.0 % of epochs") == 1


def test_implicit_form_with_entry_weights_logs_ranking_metrics(tmp_path):
    rows, cols, values = _ratings(seed=2, n=400)
    weights = np.random.default_rng(3).choice([0.5, 1.0, 2.0], rows.size)
    held_out = _ratings(seed=4, n=80)
    hp = {**HP, "alpha": "2", "unobserved_weight": "1", "eval_k": "5"}
    proc, _ = _train(tmp_path, hp, {"train": {"a.csv": _csv(rows, cols, values, weights=weights)},
                                    "test": {"t.csv": _csv(*held_out)}})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    parsed = metrics_log.parse_log(proc.stdout)
    for metric in ("precision_at_k", "map_at_k", "ndcg_at_k", "auc"):
        assert len(parsed[f"test:{metric}:epoch"]) == 3 and 0 <= parsed[f"test:{metric}"][0] <= 1
    R, _, _ = _matrix(*_named(rows, cols), values * weights.astype(np.float32))
    expected = WALS(**IN_PROCESS, alpha=2.0, unobserved_weight=1.0, eval_k=5).fit(R)
    np.testing.assert_allclose(load(tmp_path / "model").wals.col_factors_, expected.col_factors_,
                               rtol=1e-5, atol=1e-6)


def test_recordio_one_hot_and_csv_with_declared_sizes_give_the_same_model(tmp_path):
    rows, cols, values = _ratings(seed=5)
    hp = {**HP, "num_rows": "45", "num_cols": "15"}
    proc, _ = _train(tmp_path / "rio", hp, {"train": {"part": _one_hot(rows, cols, values, 45, 15)}},
                     {"train": RECORDIO})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc, _ = _train(tmp_path / "csv", hp, {"train": {"a.csv": _csv(rows, cols, values, fmt=("{}", "{}"))}})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    from_recordio, from_csv = load(tmp_path / "rio/model"), load(tmp_path / "csv/model")
    assert from_recordio.row_ids.ids.tolist() == list(range(45))  # declared: ids are the indices
    np.testing.assert_array_equal(from_recordio.wals.row_factors_, from_csv.wals.row_factors_)
    R = sp.csr_matrix((values, (rows, cols)), shape=(45, 15), dtype=np.float32)
    expected = WALS(**IN_PROCESS).fit(R)
    np.testing.assert_allclose(from_csv.wals.row_factors_, expected.row_factors_, rtol=1e-5, atol=1e-6)


def test_weight_channels_then_warm_start_from_the_model_channel(tmp_path):
    rows, cols, values = _ratings(seed=6)
    train = {"a.csv": _csv(rows, cols, values)}
    row_weights = b"id,weight\nu0,3\nu1,0.5\nstranger,9\n"
    proc, _ = _train(tmp_path / "first", HP, {"train": train, "row_weights": {"w.csv": row_weights},
                                              "col_weights": {"w.csv": b"item-2,2\n"}})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "row_weights: dropped 1 weight(s)" in proc.stdout
    R, row_ids, col_ids = _matrix(*_named(rows, cols), values)
    r = np.ones(row_ids.size, np.float32)
    r[row_ids.tolist().index("u0")], r[row_ids.tolist().index("u1")] = 3, 0.5
    c = np.ones(col_ids.size, np.float32)
    c[col_ids.tolist().index("item-2")] = 2
    first = load(tmp_path / "first/model")
    expected = WALS(**IN_PROCESS, row_weights=r, col_weights=c).fit(R)
    np.testing.assert_allclose(first.wals.row_factors_, expected.row_factors_, rtol=1e-5, atol=1e-6)

    more = {"b.csv": b"newcomer,item-1,4\n"}
    hp = {**HP, "row_init": "model", "col_init": "model", "max_sweeps": "1"}
    proc, _ = _train(tmp_path / "second", hp, {"train": {**train, **more},
                                               "model": {"model.npz": b"", "model.json": b""}})
    assert proc.returncode == 1  # placeholders first: a broken model channel is a client error
    shutil.rmtree(tmp_path / "second/input/data/model")
    shutil.copytree(tmp_path / "first/model", tmp_path / "second/input/data/model")
    (tmp_path / "second/output/failure").unlink()
    proc, _ = _run(tmp_path / "second")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"row_init=model: {row_ids.size} of {row_ids.size + 1} row factors" in proc.stdout
    assert f"col_init=model: {col_ids.size} of {col_ids.size} col factors" in proc.stdout


def test_an_fm_model_in_the_model_channel_is_the_users_error(tmp_path):
    from algorithm import artifact
    from algorithm.fm import FactorizationMachines

    x = np.random.default_rng(0).random((20, 4), dtype=np.float32)
    fm = FactorizationMachines(feature_dim=4, num_factors=2, predictor_type="regressor").fit(x, x[:, 0])
    artifact.save(tmp_path / "input/data/model", fm)
    proc, failure = _train(tmp_path, {**HP, "row_init": "model"}, {"train": {"a.csv": b"u1,i1,1\n"}})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "it holds a model trained with algorithm=fm, and this job trains algorithm=wals" in failure


def test_channels_without_content_type_are_read_as_their_bytes_show(tmp_path):
    rows, cols, values = _ratings(seed=8)
    undeclared = {"train": None, "row_weights": None}
    proc, failure = _train(tmp_path, HP, {"train": {"a.csv": _csv(rows, cols, values)},
                                          "row_weights": {"w.csv": b"u0,2\n"}}, undeclared)
    assert proc.returncode == 0, failure
    log = proc.stdout + proc.stderr
    assert f"Channel 'train' declares no ContentType: reading {tmp_path}/input/data/train/a.csv as text/csv" in log
    assert "Channel 'row_weights' declares no ContentType" in log
    R, row_ids, _ = _matrix(*_named(rows, cols), values)
    r = np.ones(row_ids.size, np.float32)
    r[row_ids.tolist().index("u0")] = 2
    np.testing.assert_allclose(load(tmp_path / "model").wals.row_factors_,
                               WALS(**IN_PROCESS, row_weights=r).fit(R).row_factors_, rtol=1e-5, atol=1e-6)


BAD_CASES = {
    "csv declared as recordio": ({}, {"train": {"a.csv": b"u1,i1,1\n"}}, {"train": RECORDIO},
                                 "train/a.csv looks like text/csv: set the channel's ContentType to text/csv"),
    "missing train": ({}, {"test": {"a.csv": b"u1,i1,1\n"}}, {}, "'train' channel is required"),
    "nan value": ({}, {"train": {"a.csv": b"u1,i1,1\nu2,i1,nan\n"}}, {},
                  "a.csv: line 2: value 'nan' must be finite"),
    "infinite value": ({}, {"train": {"a.csv": b"u1,i1,1\nu2,i1,-inf\n"}}, {},
                       "a.csv: line 2: value '-inf' must be finite"),
    "value beyond float32": ({}, {"train": {"a.csv": b"u1,i1,1e39\n"}}, {},
                             "a.csv: line 1: value '1e39' must be finite"),
    "nan in the test channel": ({}, {"train": {"a.csv": b"u1,i1,1\n"}, "test": {"t.csv": b"u1,i1,nan\n"}}, {},
                                "t.csv: line 1: value 'nan' must be finite"),
    "recordio nan label": ({"num_rows": "2"}, {"train": {"p": _one_hot([0, 1], [0, 0], [1.0, np.nan], 2, 1)}},
                           {"train": RECORDIO}, "record 1"),
    "recordio three keys": ({"num_rows": "1"}, {"train": {"p": _three_keys()}}, {"train": RECORDIO},
                            "record 0 has 3 feature keys"),
    "header only": ({}, {"train": {"a.csv": b"user,item,rating\n\n"}}, {}, "Channel 'train' has no entries"),
    "not utf-8": ({}, {"train": {"a.csv": b"u1,i1,1\n\xff\xfe,i1,1\n"}}, {}, "a.csv: not UTF-8 text at byte 8"),
    "wrong field count": ({}, {"train": {"a.csv": b"u1,i1,1\nu2;i1;1\n"}}, {},
                          "a.csv: line 2 has 1 fields; expected row,col,value[,weight]"),
    "col id out of range": ({"num_cols": "3"}, {"train": {"a.csv": b"u1,0,1\nu2,3,1\n"}}, {},
                            "a.csv: line 2: col id 3 is outside [0, 3) (num_cols=3)"),
    "negative weight": ({}, {"train": {"a.csv": b"u1,i1,1,1\nu2,i1,1,-1\n"}}, {},
                        "a.csv: line 2: weight '-1' must be finite and >= 0"),
    "id out of range": ({"num_rows": "5"}, {"train": {"a.csv": b"0,i1,1\n7,i1,1\n"}}, {},
                        "a.csv: line 2: row id 7 is outside [0, 5)"),
    "recordio without num_rows": ({}, {"train": {"p": _one_hot([0], [0], [1.0], 1, 1)}}, {"train": RECORDIO},
                                  "set the num_rows hyperparameter"),
    "recordio key beyond num_cols": ({"num_rows": "2", "num_cols": "1"},
                                     {"train": {"p": _one_hot([0, 1], [0, 3], [1.0, 1.0], 2, 4)}},
                                     {"train": RECORDIO}, "train/p"),
    "no unobserved weight nor regularization": (
        {"num_rows": "10", "unobserved_weight": "0", "regularization_coeff": "0"},
        {"train": {"a.csv": b"0,i1,1\n1,i2,1\n"}}, {}, "8 row(s) have none (first: row id 2)"),
    "entry weights in the explicit form": ({}, {"train": {"a.csv": b"u1,i1,1,2\n"}}, {}, "per-entry weights"),
    "negative count in the implicit form": ({"alpha": "1"}, {"train": {"a.csv": b"u1,i1,-1\n"}}, {},
                                            "a.csv: line 1: value '-1' must be finite and >= 0"),
    "model init without model": ({"row_init": "model"}, {"train": {"a.csv": b"u1,i1,1\n"}}, {},
                                 "needs an earlier WALS model"),
    "test ids all unknown": ({}, {"train": {"a.csv": b"u1,i1,1\n"}, "test": {"t.csv": b"u9,i1,1\n"}}, {},
                             "none of its 1 entries"),
    "duplicate row weight": ({}, {"train": {"a.csv": b"u1,i1,1\n"},
                                  "row_weights": {"w": b"u1,1\nu1,2\n"}}, {},
                             "row id 'u1' has more than one weight"),
    "unsupported content type": ({}, {"train": {"a.json": b"{}"}}, {"train": "application/json"},
                                 "Unsupported content type"),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_bad_input_exits_1_with_the_reason(tmp_path, case):
    hp, channels, content_types, message = BAD_CASES[case]
    proc, failure = _train(tmp_path, {**HP, **hp}, channels, content_types)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert message in failure.splitlines()[0], failure
    assert not (tmp_path / "model/model.json").exists()


def test_pipe_mode_reads_the_fifo_of_epoch_0(tmp_path):
    rows, cols, values = _ratings(seed=7, n=100)
    (tmp_path / "input/data").mkdir(parents=True)
    (tmp_path / "input/data/train_0").write_bytes(_csv(rows, cols, values))  # a file stands in for the FIFO
    _job(tmp_path, HP, {}, {})
    (tmp_path / "input/config/inputdataconfig.json").write_text(json.dumps(
        {"train": {"ContentType": CSV, "TrainingInputMode": "Pipe"}}))
    proc, _ = _run(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    R, _, _ = _matrix(*_named(rows, cols), values)
    assert load(tmp_path / "model").seen.shape == R.shape
