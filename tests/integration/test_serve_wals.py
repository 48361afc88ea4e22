"""A WALS model trained by the real `train` process, served by the real gunicorn server: every query kind
against the in-process model, original ids in and out, per-instance unknown ids, malformed requests -> 400."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from algorithm.artifact import load
from algorithm.wals_model import WALSModel
from tests.integration.test_serve_http import ServeProcess

ROOT = Path(__file__).resolve().parents[2]
JSON, JSONLINES, CSV = "application/json", "application/jsonlines", "text/csv"
N_ROWS, N_COLS = 30, 12


def _train(base: Path) -> WALSModel:
    """Implicit-feedback counts with string row ids ("u7") and integer column ids (700 + j)."""
    rng = np.random.default_rng(0)
    lines = ["user,item,count"] + [f"u{r},{700 + c},{n}" for r, c, n in zip(
        rng.integers(0, N_ROWS, 200), rng.integers(0, N_COLS, 200), rng.integers(1, 4, 200), strict=True)]
    (base / "input/config").mkdir(parents=True)
    (base / "input/data/train").mkdir(parents=True)
    (base / "input/data/train/a.csv").write_text("\n".join(lines))
    (base / "input/config/hyperparameters.json").write_text(json.dumps(
        {"algorithm": "wals", "embedding_dimension": "4", "max_sweeps": "3", "alpha": "5"}))
    (base / "input/config/inputdataconfig.json").write_text(json.dumps({"train": {"ContentType": CSV}}))
    proc = subprocess.run([sys.executable, str(ROOT / "train")], env={"SAGEMAKER_BASE_DIR": str(base),
                          "PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return load(base / "model")


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    base = tmp_path_factory.mktemp("wals")
    model = _train(base)
    server = ServeProcess(base)
    try:
        yield model, server
    finally:
        server.stop()


def _predictions(server: ServeProcess, *instances: dict) -> list[dict]:
    response = server.post(json.dumps({"instances": list(instances)}).encode(), JSON, JSON)
    assert response.status_code == 200, response.text
    return json.loads(response.content)["predictions"]


def _ranked(ids, values) -> tuple[list, np.ndarray]:
    keep = (ids >= 0) & np.isfinite(values)
    return ids[keep], values[keep]


def test_scores_of_pairs_match_the_model(served):
    model, server = served
    rows, cols = model.row_ids.ids[[0, 3, 5, 3]], model.col_ids.ids[[1, 0, 11, 2]]
    got = _predictions(server, *({"row": r, "col": int(c)} for r, c in zip(rows, cols, strict=True)))
    expected = model.wals.predict(model.row_ids.index(rows), model.col_ids.index(cols))
    np.testing.assert_allclose([p["score"] for p in got], expected, rtol=1e-6)


@pytest.mark.parametrize("options", [{}, {"exclude_seen": False}, {"include": [700, 703, 705, 711, 9999]},
                                     {"exclude": [700, 701, "nope"]}])
def test_top_k_for_a_known_row(served, options):
    model, server = served
    row = model.row_ids.find("u3")
    (got,) = _predictions(server, {"row": "u3", "k": 4, **options})
    known = [model.col_ids.find(c) for c in options.get("include", options.get("exclude", []))]
    known = np.array([i for i in known if i is not None], dtype=np.int64)
    ids, scores = model.wals.recommend(
        row, 4, exclude_seen=model.seen[row] if options.get("exclude_seen", True) else None,
        include=known if "include" in options else None, exclude=known if "exclude" in options else None)
    ids, scores = _ranked(ids, scores)
    assert got["cols"] == model.col_ids.to_list(ids)
    np.testing.assert_allclose(got["scores"], scores, rtol=1e-6)
    if options == {}:
        assert not set(got["cols"]) & set(model.col_ids.to_list(model.seen_cols(row)))


def test_top_k_for_a_new_row_folds_it_in(served):
    model, server = served
    observed = {"cols": [701, 704, 701], "values": [2.0, 1.0, 1.0]}  # duplicates are summed
    (got,) = _predictions(server, {"observed": observed, "k": 3})
    R_new = sp.csr_matrix((np.float32([3, 1]), ([0, 0], [1, 4])), shape=(1, N_COLS))
    factors = model.wals.project_rows(R_new)
    ids, scores = _ranked(*(a[0] for a in model.wals.recommend_from_factors(factors, 3, exclude_seen=R_new)))
    assert got["cols"] == model.col_ids.to_list(ids) and 701 not in got["cols"]
    np.testing.assert_allclose(got["scores"], scores, rtol=1e-5)


def test_similar_columns_and_top_rows_for_a_column(served):
    model, server = served
    similar, top_rows = _predictions(server, {"similar_to_col": 702, "k": 3},
                                     {"top_rows_for_col": "702", "k": 5})
    ids, values = model.wals.similar_cols(model.col_ids.find(702), 3)
    assert similar["cols"] == model.col_ids.to_list(ids) and 702 not in similar["cols"]
    np.testing.assert_allclose(similar["similarities"], values, rtol=1e-5)
    ids, values = model.wals.top_rows_for_col(model.col_ids.find(702), 5)
    assert top_rows["rows"] == model.row_ids.to_list(ids) and all(r.startswith("u") for r in top_rows["rows"])
    np.testing.assert_allclose(top_rows["scores"], values, rtol=1e-6)


def test_unknown_ids_are_reported_in_their_slot(served):
    _, server = served
    got = _predictions(server, {"row": "u999"}, {"row": "u1", "col": 7}, {"similar_to_col": "u1"},
                       {"observed": {"cols": [700, 5]}}, {"row": "u1", "k": 1})
    assert got[:4] == [{"error": "unknown row id 'u999'"}, {"error": "unknown col id 7"},
                       {"error": "unknown col id 'u1'"}, {"error": "unknown col id 5 in observed.cols"}]
    assert len(got[4]["cols"]) == 1


def test_json_lines_in_and_out(served):
    _, server = served
    body = b'{"row": "u2", "k": 2}\n\n{"top_rows_for_col": 700, "k": 1}\n'
    response = server.post(body, JSONLINES, JSONLINES)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == JSONLINES
    assert response.text.endswith("}\n")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert lines == _predictions(server, {"row": "u2", "k": 2}, {"top_rows_for_col": 700, "k": 1})
    response = server.post(b'{"row": "u2"}\n{"row": \n', JSONLINES, JSONLINES)
    assert response.status_code == 400 and "line 2 is not valid JSON" in response.json()["error"]


def test_single_instance_without_the_instances_wrapper(served):
    _, server = served
    response = server.post(b'{"row": "u2", "col": 700}', JSON, JSON)
    assert response.status_code == 200 and list(json.loads(response.content)["predictions"][0]) == ["score"]


@pytest.mark.parametrize("body,message", [
    (b'{"instances": [{"row": "u1"}, {"row": "u1", "k": "ten"}]}',
     "instance 1: field 'k' must be an integer"),
    (b'{"instances": [{"row": "u1", "topk": 3}]}',
     "instance 0: field 'topk' is not allowed in a recommend query"),
    (b'{"instances": [{"k": 3}]}', "instance 0: needs one of 'row', 'observed'"),
    (b'{"instances": [["u1", 700]]}', "instance 0: expected a JSON object"),
    (b'{"instances": [{"row": null, "col": 700}]}', "instance 0: field 'row' must be a row id"),
    (b'{"instances": [{"row": "u1", "exclude_seen": "yes"}]}', "field 'exclude_seen' must be true or false"),
    (b'{"instances": [{"observed": {"cols": [700], "values": [-1]}}]}', "observed.values[0] must be a finite "
                                                                        "number >= 0"),
    (b'{"instances": [{"observed": {"cols": [700, 701], "values": [1]}}]}', "as long as observed.cols (2)"),
    (b'{"instances": [{"similar_to_col": 700, "row": "u1"}]}', "field 'row' is not allowed"),
    (b'{"instances": []}', "no instances"),
    (b'{"instances": [', "body is not valid JSON"),
    (b'{"instances": [{"observed": {"cols": [700], "values": [1e400]}}]}', "body is not valid JSON"),
    (b'{"instances": [{"observed": {"cols": [700]}, "weight": -1}]}', "instance 0: field 'weight' must be a finite "
                                                                     "number >= 0"),
    (b'{"instances": [{"row": "u999"}, {"row": "u999", "col": null}]}', "instance 1: field 'col' must be a col id"),
    (b'{"instances": [{"row": "u1"}, {"row": "u1", "include": "700"}]}', "instance 1: field 'include' must be a "
                                                                         "list of column ids"),
])
def test_malformed_requests_are_400_naming_instance_and_field(served, body, message):
    _, server = served
    response = server.post(body, JSON, JSON)
    assert response.status_code == 400, response.text
    assert message in json.loads(response.content)["error"]


def test_answers_over_the_response_limit_are_413_before_ranking(served):
    """Lists of two million ids (at least 6 bytes each: an id and a score) exceed InvokeEndpoint's 6 MB."""
    _, server = served
    body = json.dumps({"instances": [{"row": "u1", "k": 1_000_000}, {"similar_to_col": 700, "k": 1_000_000}]})
    response = server.post(body.encode(), JSON, JSON)
    assert response.status_code == 413, response.text
    assert "2000000 listed ids" in response.json()["error"]
    assert "FMWALS_MAX_RESPONSE_IN_MB" in response.json()["error"]


def test_unsupported_media_types(served):
    _, server = served
    assert server.post(b"u1,700", CSV, JSON).status_code == 415
    assert server.post(b'{"row": "u1"}', JSON, CSV).status_code == 406


def _mixed_instances(model: WALSModel, n: int) -> list[dict]:
    """Every query kind, interleaved, with unknown ids, various k, exclude_seen both ways, include and exclude
    lists, fold-ins with duplicates and weights, and ids given as "7" for 7."""
    rng = np.random.default_rng(7)
    rows, cols = [*model.row_ids.ids.tolist(), "u999"], [*model.col_ids.ids.tolist(), 9999]
    out = []
    for i in range(n):
        row, col = rows[rng.integers(len(rows))], cols[rng.integers(len(cols))]
        k = int(rng.integers(1, N_COLS + 3))
        some = [cols[j] for j in rng.integers(0, len(cols), 3)]
        kind = i % 6
        if kind == 0:
            out.append({"row": row, "col": str(col) if i % 4 == 0 else col})
        elif kind == 1:
            out.append({"row": row, "k": k, "exclude_seen": bool(i % 4), "exclude": some})
        elif kind == 2:
            out.append({"row": row, "k": k, "include": some} if i % 4 else {"row": row})
        elif kind == 3:
            out.append({"observed": {"cols": some, "values": [1.0, 2.0, 0.5]}, "weight": float(i % 3), "k": k,
                        "exclude_seen": bool(i % 4), **({"include": some[:2]} if i % 5 == 0 else {})})
        elif kind == 4:
            out.append({"similar_to_col": col, "k": k})
        else:
            out.append({"top_rows_for_col": col, "k": k})
    return out


def _same_answer(batched: dict, alone: dict) -> None:
    assert batched.keys() == alone.keys()
    for key, value in batched.items():
        if key in ("score", "scores", "similarities"):
            np.testing.assert_allclose(value, alone[key], rtol=1e-5, atol=1e-6)
        else:
            assert value == alone[key]


def test_a_batch_answers_as_its_instances_one_by_one(served):
    model, server = served
    instances = _mixed_instances(model, 90)
    batched = _predictions(server, *instances)
    assert len(batched) == len(instances)
    assert any("error" in answer for answer in batched) and any("cols" in answer for answer in batched)
    for instance, answer in zip(instances, batched, strict=True):
        (alone,) = _predictions(server, instance)
        _same_answer(answer, alone)


def test_a_large_batch_in_process_matches_the_model(served):
    model, _ = served
    from serve.wals_servable import WALSServable

    rng = np.random.default_rng(3)
    rows, cols = rng.integers(0, N_ROWS, 1000), rng.integers(0, N_COLS, 1000)
    instances = [{"row": model.row_ids.to_list(rows[i:i + 1])[0], "k": 5} if i % 2 else
                 {"row": model.row_ids.to_list(rows[i:i + 1])[0], "col": model.col_ids.to_list(cols[i:i + 1])[0]}
                 for i in range(1000)]
    answers = json.loads(WALSServable(model).invoke(json.dumps(instances).encode(), JSON, JSON))["predictions"]
    pairs = np.arange(0, 1000, 2)
    np.testing.assert_allclose([answers[i]["score"] for i in pairs], model.wals.predict(rows[pairs], cols[pairs]),
                               rtol=1e-6)
    for i in range(1, 1000, 2):
        ids, scores = _ranked(*model.wals.recommend(int(rows[i]), 5, exclude_seen=model.seen[int(rows[i])]))
        assert answers[i]["cols"] == model.col_ids.to_list(ids)
        np.testing.assert_allclose(answers[i]["scores"], scores, rtol=1e-6)
