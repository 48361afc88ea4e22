"""Every metric line the trainer prints is matched by the regex the wrapper and tuner use."""

import re

import pytest

from container import metrics_log


@pytest.mark.parametrize("algorithm,predictor", [("fm", "regressor"), ("fm", "binary_classifier"),
                                                 ("wals", None)])
def test_each_definition_matches_its_printed_line(algorithm, predictor):
    definitions = {d["Name"]: d["Regex"] for d in metrics_log.metric_definitions(algorithm, predictor)}
    groups = metrics_log.METRICS[algorithm]
    names = groups[predictor] if predictor else groups["train"] + groups["test"]
    for i, name in enumerate(names):
        value = 0.125 + i
        for split in ("train", "test"):
            if algorithm == "wals" and name not in groups[split]:
                continue
            final = metrics_log.final_lines("algo-1", split, {name: value})[-1]
            epoch = metrics_log.epoch_lines("algo-1", 7, split, {name: value})[0]
            logged = f"[11/23/2026 06:00:00 INFO 140] {final}"
            assert float(re.search(definitions[f"{split}:{name}"], logged).group(1)) == value
            assert float(re.search(definitions[f"{split}:{name}:epoch"], epoch).group(1)) == value
            assert re.search(definitions[f"{split}:{name}"], epoch) is None  # per-epoch != final


def test_builtin_shapes_and_kinds():
    assert metrics_log.final_lines("algo-1", "test", {"rmse": 0.5}) == [
        "#test_score (algo-1) : ('rmse', 0.5)", "#quality_metric: host=algo-1, test rmse <loss>=0.5"]
    assert metrics_log.epoch_lines("h", 0, "train", {"binary_f_beta": 1.0}) == [
        "#quality_metric: host=h, epoch=0, train binary_f_beta <score>=1.0"]
    assert metrics_log.progress_line("h", 1, 4) == "#progress_metric: host=h, completed 25.0 % of epochs"
    line = metrics_log.throughput_line("h", 105657.871)
    assert line == "#throughput_metric: host=h, train throughput=105657.87 records/second"


def test_tuning_objective_names_exist():
    names = {d["Name"] for d in metrics_log.metric_definitions("fm")}
    assert {"test:rmse", "test:binary_classification_accuracy", "test:binary_classification_cross_entropy",
            "test:binary_f_beta"} <= names


def test_parse_log_reads_values_in_order():
    lines = [*metrics_log.epoch_lines("algo-1", 0, "train", {"rmse": 2.0}),
             *metrics_log.epoch_lines("algo-1", 1, "train", {"rmse": 1.5}),
             *metrics_log.final_lines("algo-1", "test", {"rmse": 1.25}),
             metrics_log.throughput_line("algo-1", 10.0)]
    parsed = metrics_log.parse_log(lines)
    assert parsed["train:rmse:epoch"] == [2.0, 1.5]
    assert parsed["test:rmse"] == [1.25]
    assert parsed["train:throughput"] == [10.0]
