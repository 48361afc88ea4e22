"""Defaults of the FM learning rates, weight decays, eps and factors_init_sigma a job leaves unset, per optimizer
(and, where one value does not serve both, per predictor_type).

Adam's are the SageMaker built-in's, so a job written for the built-in trains the same way; the others were tuned
once on the benchmark sets (CTR-like clicks and MovieLens-shaped ratings, docs/benchmarks.md) and are the same for
every data set. Standard library only: ``algorithm.schemas`` (read by the client) imports it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

OPTIMIZER_DEFAULTS: dict[str, dict[str, float]] = {
    "adam": {"bias_lr": 0.1, "linear_lr": 0.001, "factors_lr": 0.0001, "bias_wd": 0.01, "linear_wd": 0.001,
             "factors_wd": 0.00001, "eps": 1e-8, "factors_init_sigma": 0.001},
    "sgd": {"bias_lr": 0.5, "linear_lr": 0.5, "factors_lr": 0.5, "bias_wd": 0.0, "linear_wd": 1e-6,
            "factors_wd": 1e-6, "factors_init_sigma": 0.01},
    "adagrad": {"bias_lr": 0.1, "linear_lr": 0.1, "factors_lr": 0.3, "bias_wd": 0.0, "linear_wd": 0.0,
                "factors_wd": 0.001, "eps": 1e-4, "factors_init_sigma": 0.001},
    "ftrl": {"bias_lr": 1.0, "linear_lr": 1.0, "factors_lr": 1.0, "bias_wd": 0.0, "linear_wd": 0.0,
             "factors_wd": 0.0, "factors_init_sigma": 0.01},
}
# Values that replace the optimizer's default for one predictor_type: AdaGrad's factors overfit the sparse
# click data at 0.2 (best held-out logloss 0.481; 0.462 at 0.05) and learn the ratings too slowly at 0.05
# (k = 8 RMSE 0.915 after 10 epochs; 0.825 at 0.2, 0.817 at 0.3, 0.819 at 0.4).
PREDICTOR_TYPE_DEFAULTS: dict[tuple[str, str], dict[str, float]] = {
    ("adagrad", "binary_classifier"): {"factors_lr": 0.05},
}


def optimizer_defaults(optimizer: str, predictor_type: str) -> dict[str, float]:
    """The defaults of ``optimizer`` for ``predictor_type`` (empty for an unknown optimizer)."""
    return {**OPTIMIZER_DEFAULTS.get(optimizer, {}),
            **PREDICTOR_TYPE_DEFAULTS.get((optimizer, predictor_type), {})}


def resolve_optimizer_defaults(params: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of FM ``params`` whose unset (None) learning rates, weight decays, eps and factors_init_sigma hold
    the defaults of its optimizer for its predictor_type; values that are set are kept."""
    resolved = dict(params)
    for name, value in optimizer_defaults(resolved["optimizer"], resolved["predictor_type"]).items():
        if resolved.get(name) is None:
            resolved[name] = value
    return resolved
