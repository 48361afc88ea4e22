"""The optimizer an FM job trains with, and the learning rates, weight decays, eps and factors_init_sigma it
leaves unset, per optimizer (and, where one value does not serve both, per predictor_type).

A job that sets no optimizer trains with AdaGrad at the defaults below, the best model this product trains
without tuning (docs/benchmarks.md). The SageMaker built-in always trains with Adam, so a job that sets any of
the built-in's optimizer settings (its learning rates, weight decays, eps, clip_gradient or rescale_grad) and no
optimizer trains with Adam, whose defaults are the built-in's: those values then mean what they mean for the
built-in. The other optimizers' defaults are tuned on the benchmark sets (CTR-like clicks and
MovieLens-shaped ratings) and are the same for every data set. Standard library only: ``algorithm.schemas``
(read by the client) imports it too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

DEFAULT_OPTIMIZER = "adagrad"
BUILTIN_OPTIMIZER = "adam"
# What the built-in's documentation calls its optimizer's parameters: their values are Adam's.
BUILTIN_OPTIMIZER_SETTINGS = ("bias_lr", "linear_lr", "factors_lr", "bias_wd", "linear_wd", "factors_wd", "eps",
                              "clip_gradient", "rescale_grad")

OPTIMIZER_DEFAULTS: dict[str, dict[str, float]] = {
    "adam": {"bias_lr": 0.1, "linear_lr": 0.001, "factors_lr": 0.0001, "bias_wd": 0.01, "linear_wd": 0.001,
             "factors_wd": 0.00001, "eps": 1e-8, "factors_init_sigma": 0.001},
    "sgd": {"bias_lr": 0.5, "linear_lr": 0.5, "factors_lr": 0.5, "bias_wd": 0.0, "linear_wd": 1e-6,
            "factors_wd": 1e-6, "factors_init_sigma": 0.01},
    "adagrad": {"bias_lr": 0.1, "linear_lr": 0.1, "factors_lr": 0.3, "bias_wd": 0.0, "linear_wd": 0.0,
                "factors_wd": 0.003, "eps": 1e-4, "factors_init_sigma": 0.001},
    "ftrl": {"bias_lr": 1.0, "linear_lr": 1.0, "factors_lr": 1.0, "bias_wd": 0.0, "linear_wd": 0.0,
             "factors_wd": 0.0, "factors_init_sigma": 0.01},
}
# Values that replace the optimizer's default for one predictor_type. AdaGrad's eps sets how fast rarely seen
# features learn (a step of about lr·g/√eps until their squared gradients outgrow eps). On the click data they
# carry little signal: at eps 1e-4 the held-out logloss is best after 2 epochs (0.462 at factors_lr 0.05, 0.481
# at 0.2) and 0.500 after 10; at eps 3e-3, 0.458 at best and 0.459 after 10 (k = 8). On the ratings, users and
# items are as rare and carry all the signal: eps 3e-3 gives RMSE 0.919 after 10 epochs, factors_lr 0.05 0.915,
# the regressor's defaults 0.818 (k = 8).
PREDICTOR_TYPE_DEFAULTS: dict[tuple[str, str], dict[str, float]] = {
    ("adagrad", "binary_classifier"): {"factors_lr": 0.05, "eps": 3e-3},
}


def optimizer_defaults(optimizer: str, predictor_type: str) -> dict[str, float]:
    """The defaults of ``optimizer`` for ``predictor_type`` (empty for an unknown optimizer)."""
    return {**OPTIMIZER_DEFAULTS.get(optimizer, {}),
            **PREDICTOR_TYPE_DEFAULTS.get((optimizer, predictor_type), {})}


def builtin_settings_set(params: Mapping[str, Any]) -> list[str]:
    """The built-in's optimizer settings that ``params`` sets (not None)."""
    return [name for name in BUILTIN_OPTIMIZER_SETTINGS if params.get(name) is not None]


def resolve_optimizer(params: Mapping[str, Any]) -> str:
    """The optimizer FM ``params`` train with: ``optimizer`` when set; unset, the built-in's Adam when any of
    the built-in's optimizer settings is set, else AdaGrad."""
    if params.get("optimizer") is not None:
        return str(params["optimizer"])
    return BUILTIN_OPTIMIZER if builtin_settings_set(params) else DEFAULT_OPTIMIZER


def optimizer_choice(params: Mapping[str, Any]) -> str | None:
    """A sentence saying which optimizer FM ``params`` with ``optimizer`` unset train with and why (None when
    ``optimizer`` is set)."""
    if params.get("optimizer") is not None:
        return None
    chosen = builtin_settings_set(params)
    if chosen:
        return (f"optimizer unset and {', '.join(chosen)} set: training with {BUILTIN_OPTIMIZER}, the built-in's "
                "optimizer, so these values mean what they mean for the built-in (set optimizer to choose "
                "another)")
    return (f"optimizer unset: training with {DEFAULT_OPTIMIZER} at its defaults, which learns far better "
            f"models than the built-in's {BUILTIN_OPTIMIZER} at its default rates (set optimizer="
            f"{BUILTIN_OPTIMIZER} to train as the built-in does)")


def resolve_optimizer_defaults(params: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of FM ``params`` with the optimizer resolved (``resolve_optimizer``) and the unset (None) learning
    rates, weight decays, eps and factors_init_sigma holding its defaults for the predictor_type; values that
    are set are kept."""
    resolved = dict(params)
    resolved["optimizer"] = resolve_optimizer(params)
    for name, value in optimizer_defaults(resolved["optimizer"], resolved["predictor_type"]).items():
        if resolved.get(name) is None:
            resolved[name] = value
    return resolved
