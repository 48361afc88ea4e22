"""WALS in the real image: `docker run IMAGE train` with algorithm=wals on CSV triplets with string ids, then
`docker run IMAGE serve` answering every query kind in those ids; user errors exit 1 with the reason."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from algorithm.artifact import load
from algorithm.wals_model import WALSModel
from container import metrics_log
from tests.container.helpers import ServeContainer, compiled_kernels, http, run_train

pytestmark = pytest.mark.docker

JSON, JSONLINES = "application/json", "application/jsonlines"
USERS = ["ann", "bob", "cé", "Smith, J.", "dan", "eve", "fay", "gus"]
ITEMS = ["film-1", "film-2", "film-3", "book-α", "book-β", "game-x"]


def write_job(opt_ml: Path, train: str, hyperparameters: dict[str, str], test: str | None = None) -> None:
    """input/config + input/data/train (and test) as SageMaker lays them out, CSV triplets."""
    config, data = opt_ml / "input" / "config", opt_ml / "input" / "data"
    config.mkdir(parents=True)
    (config / "hyperparameters.json").write_text(json.dumps({"algorithm": "wals", **hyperparameters}))
    channels = {"train": train, **({"test": test} if test is not None else {})}
    (config / "inputdataconfig.json").write_text(json.dumps(
        {name: {"ContentType": "text/csv", "TrainingInputMode": "File"} for name in channels}))
    for name, text in channels.items():
        (data / name).mkdir(parents=True)
        (data / name / "part-0.csv").write_text(text, encoding="utf-8")


def ratings(seed: int, n: int) -> str:
    """A header and ``n`` random (user, item, count) lines, quoted as the csv module writes them."""
    rng = np.random.default_rng(seed)
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["user", "item", "count"])
    for _ in range(n):
        writer.writerow([USERS[rng.integers(len(USERS))], ITEMS[rng.integers(len(ITEMS))], rng.integers(1, 6)])
    return text.getvalue()


def failure_reason(opt_ml: Path) -> str:
    failure = opt_ml / "output" / "failure"
    assert failure.is_file(), "output/failure was not written"
    return failure.read_text().splitlines()[0]


@pytest.fixture(scope="module")
def trained(docker_image: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """(opt_ml, train output) of an implicit-feedback job with a test channel holding one unknown user."""
    opt_ml = tmp_path_factory.mktemp("wals") / "opt_ml"
    write_job(opt_ml, ratings(0, 120), {"embedding_dimension": "3", "max_sweeps": "4", "alpha": "2",
                                        "unobserved_weight": "1", "eval_k": "3"},
              test=ratings(1, 30) + "stranger,film-1,2\n")
    result = run_train(docker_image, opt_ml)
    if result.returncode != 0:
        pytest.fail(f"WALS training failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}", pytrace=False)
    return opt_ml, result.stdout + result.stderr


@pytest.fixture(scope="module")
def model(trained: tuple[Path, str]) -> WALSModel:
    return load(trained[0] / "model")


@pytest.fixture(scope="module")
def server(docker_image: str, trained: tuple[Path, str]) -> Iterator[ServeContainer]:
    container = ServeContainer(docker_image, trained[0] / "model", env={"NUMBA_DEBUG_CACHE": "1"})
    yield container
    container.remove()


def post(server: ServeContainer, body: bytes, content_type: str = JSON, accept: str = JSON) -> tuple[int, bytes]:
    status, _, response = http("POST", server.url + "/invocations", body,
                               {"Content-Type": content_type, "Accept": accept})
    return status, response


def predictions(server: ServeContainer, *instances: dict) -> list[dict]:
    status, response = post(server, json.dumps({"instances": list(instances)}).encode())
    assert status == 200, response
    return list(json.loads(response)["predictions"])


def test_training_writes_string_id_maps_and_metrics(trained: tuple[Path, str], model: WALSModel) -> None:
    opt_ml, output = trained
    assert not (opt_ml / "output" / "failure").exists()
    assert set(model.row_ids.ids.tolist()) == set(USERS) and set(model.col_ids.ids.tolist()) == set(ITEMS)
    parsed = metrics_log.parse_log(output)
    assert len(parsed["train:loss:epoch"]) == 4 and len(parsed["test:ndcg_at_k:epoch"]) == 4
    assert "test: dropped 1 of 31 entries" in output


def test_serving_answers_every_query_kind_in_the_original_ids(server: ServeContainer, model: WALSModel) -> None:
    score, top, fold, similar, rows, unknown = predictions(
        server, {"row": "Smith, J.", "col": "book-α"}, {"row": "cé", "k": 3, "exclude": ["film-1"]},
        {"observed": {"cols": ["film-2", "game-x"], "values": [3, 1]}, "k": 2}, {"similar_to_col": "film-3", "k": 2},
        {"top_rows_for_col": "book-β", "k": 2}, {"row": "nobody", "col": "film-1"})
    wals, rows_of, cols_of = model.wals, model.row_ids, model.col_ids
    expected = wals.predict([rows_of.find("Smith, J.")], [cols_of.find("book-α")])[0]
    assert score["score"] == pytest.approx(float(expected), rel=1e-5)
    row = rows_of.find("cé")
    ids, _ = wals.recommend(row, 3, exclude_seen=model.seen[row], exclude=[cols_of.find("film-1")])
    assert top["cols"] == cols_of.to_list(ids[ids >= 0]) and "film-1" not in top["cols"]
    assert len(fold["cols"]) <= 2 and not {"film-2", "game-x"} & set(fold["cols"])
    assert set(similar["cols"]) <= set(ITEMS) - {"film-3"} and len(similar["similarities"]) == 2
    assert set(rows["rows"]) <= set(USERS) and len(rows["scores"]) == 2
    assert unknown == {"error": "unknown row id 'nobody'"}


def test_serving_json_lines_and_malformed_instances(server: ServeContainer) -> None:
    status, response = post(server, b'{"row": "ann", "k": 2}\n{"similar_to_col": "film-1", "k": 1}\n',
                            JSONLINES, JSONLINES)
    assert status == 200, response
    lines = [json.loads(line) for line in response.decode().splitlines()]
    assert len(lines) == 2 and len(lines[1]["cols"]) == 1
    status, response = post(server, b'{"instances": [{"row": "ann"}, {"row": "ann", "k": 0}]}')
    assert status == 400 and "instance 1: field 'k' must be an integer >= 1" in json.loads(response)["error"]


def test_serving_compiles_no_kernel_at_run_time(server: ServeContainer) -> None:
    predictions(server, {"row": "ann", "col": "film-1"}, {"row": "bob", "k": 2},
                {"observed": {"cols": ["film-1"]}, "k": 2}, {"top_rows_for_col": "film-1", "k": 2})
    compiled = compiled_kernels(server.logs(tail=None))
    assert not compiled, "kernels compiled at run time (missing from the warm-up):\n" + "\n".join(compiled)


def test_training_compiles_no_kernel_at_run_time(docker_image: str, tmp_path: Path) -> None:
    write_job(tmp_path, ratings(2, 40), {"embedding_dimension": "2", "max_sweeps": "2"}, test=ratings(3, 10))
    result = run_train(docker_image, tmp_path, env={"NUMBA_DEBUG_CACHE": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    compiled = compiled_kernels(result.stdout + result.stderr)
    assert not compiled, "kernels compiled at run time (missing from container.warmup):\n" + "\n".join(compiled)


@pytest.mark.parametrize("train,hyperparameters,reason", [
    ("ann,film-1,1\nbob,film-2,nan\n", {}, "part-0.csv: line 2: value 'nan' must be finite"),
    ("ann,film-1,1,1\nbob,film-2,1,-2\n", {"alpha": "1"}, "part-0.csv: line 2: weight '-2' must be finite and >= 0"),
    ("0,film-1,1\n9,film-2,1\n", {"num_rows": "5"}, "part-0.csv: line 2: row id 9 is outside [0, 5)"),
    ("0,film-1,1\n", {"num_rows": "3", "unobserved_weight": "0", "regularization_coeff": "0"},
     "2 row(s) have none (first: row id 1)"),
])
def test_bad_training_input_exits_1_with_the_reason(docker_image: str, tmp_path: Path, train: str,
                                                     hyperparameters: dict[str, str], reason: str) -> None:
    write_job(tmp_path, train, {"embedding_dimension": "2", "max_sweeps": "2", **hyperparameters})
    result = run_train(docker_image, tmp_path)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert reason in failure_reason(tmp_path)
    assert not (tmp_path / "model" / "model.json").exists()


def test_a_test_channel_without_known_ids_exits_1(docker_image: str, tmp_path: Path) -> None:
    write_job(tmp_path, "ann,film-1,1\n", {"embedding_dimension": "2"}, test="zed,film-9,1\n")
    result = run_train(docker_image, tmp_path)
    assert result.returncode == 1, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Channel 'test': none of its 1 entries" in failure_reason(tmp_path)
