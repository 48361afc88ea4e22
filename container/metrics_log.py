"""The one place the training log's metric lines are formatted, and the regexes that read them back.

Line formats follow SageMaker's built-in algorithms so existing metric definitions and tuning jobs work:

    #quality_metric: host=algo-1, epoch=3, train rmse <loss>=0.91
    #quality_metric: host=algo-1, epoch=3, test rmse <loss>=0.95        (when a test channel is given)
    #test_score (algo-1) : ('rmse', 0.95)
    #quality_metric: host=algo-1, test rmse <loss>=0.95                  (final, the tuning objective)
    #progress_metric: host=algo-1, completed 30.0 % of epochs
    #throughput_metric: host=algo-1, train throughput=105657.87 records/second

The client wrapper imports ``metric_definitions`` from here; stdlib only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# Metrics where larger is better are "score"; the rest are "loss" (as in the built-in's lines).
SCORE_METRICS = frozenset(
    {"binary_classification_accuracy", "binary_f_beta", "auc", "precision_at_k", "map_at_k", "ndcg_at_k"}
)

METRICS = {
    "fm": {
        "regressor": ("rmse", "mse", "absolute_loss"),
        "binary_classifier": (
            "binary_classification_accuracy", "binary_classification_cross_entropy", "binary_f_beta", "auc",
        ),
    },
    "wals": {
        "train": ("loss", "rwse"),
        "test": ("rmse", "precision_at_k", "map_at_k", "ndcg_at_k", "auc"),
    },
}


def kind(metric: str) -> str:
    """``score`` for metrics to maximize, ``loss`` for metrics to minimize."""
    return "score" if metric in SCORE_METRICS else "loss"


def _number(value: float) -> str:
    return repr(float(value))


def epoch_lines(host: str, epoch: int, split: str, metrics: Mapping[str, float]) -> list[str]:
    """Per-epoch lines: ``#quality_metric: host=<h>, epoch=<e>, <split> <m> <loss|score>=<x>``."""
    return [
        f"#quality_metric: host={host}, epoch={epoch}, {split} {name} <{kind(name)}>={_number(value)}"
        for name, value in metrics.items()
    ]


def final_lines(host: str, split: str, metrics: Mapping[str, float]) -> list[str]:
    """End-of-training lines, the ones tuning objectives read (``test`` also gets ``#test_score``)."""
    lines = []
    for name, value in metrics.items():
        if split == "test":
            lines.append(f"#test_score ({host}) : ({name!r}, {_number(value)})")
        lines.append(f"#quality_metric: host={host}, {split} {name} <{kind(name)}>={_number(value)}")
    return lines


def progress_line(host: str, done: float, total: int) -> str:
    return f"#progress_metric: host={host}, completed {100.0 * done / max(total, 1):.1f} % of epochs"


def throughput_line(host: str, rows_per_second: float) -> str:
    return f"#throughput_metric: host={host}, train throughput={rows_per_second:.2f} records/second"


_FLOAT = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|nan|inf))"


def metric_regex(split: str, metric: str, per_epoch: bool = False) -> str:
    """The regex whose first group captures ``metric`` on ``split`` (final line, or per-epoch lines)."""
    epoch = r"epoch=\S+, " if per_epoch else ""
    return rf"#quality_metric: host=\S+, {epoch}{split} {re.escape(metric)} <{kind(metric)}>={_FLOAT}"


def metric_definitions(algorithm: str = "fm", predictor_type: str | None = None) -> list[dict[str, str]]:
    """SageMaker ``MetricDefinitions`` (Name/Regex) for every metric the algorithm logs.

    ``test:<m>`` and ``train:<m>`` read the final lines; ``train:<m>:epoch`` and ``test:<m>:epoch`` the
    per-epoch ones. For FM, ``predictor_type`` narrows the list to that predictor's metrics.
    """
    if algorithm == "fm":
        groups = METRICS["fm"]
        names = groups[predictor_type] if predictor_type else tuple(n for g in groups.values() for n in g)
        splits = {"train": names, "test": names}
    else:
        splits = {"train": METRICS["wals"]["train"], "test": METRICS["wals"]["test"]}
    out = []
    for split, metrics in splits.items():
        for name in metrics:
            out.append({"Name": f"{split}:{name}", "Regex": metric_regex(split, name)})
            out.append({"Name": f"{split}:{name}:epoch", "Regex": metric_regex(split, name, per_epoch=True)})
    out.append({"Name": "train:throughput", "Regex": r"#throughput_metric: host=\S+, train throughput=(\S+)"})
    return out


def parse_log(lines: list[str] | str) -> dict[str, list[float]]:
    """Every metric value in a training log, by definition name, in order (used by the wrapper)."""
    text = lines if isinstance(lines, str) else "\n".join(lines)
    found: dict[str, list[float]] = {}
    for algorithm in ("fm", "wals"):
        for definition in metric_definitions(algorithm):
            values = [float(m) for m in re.findall(definition["Regex"], text)]
            if values:
                found[definition["Name"]] = values
    return found


