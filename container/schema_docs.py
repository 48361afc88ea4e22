"""Render the hyperparameter tables as Markdown (``python -m container.schema_docs > docs/hyperparameters.md``)."""

from __future__ import annotations

from algorithm.hyperparameters import Param
from algorithm.schemas import SCHEMAS, TUNING_FIXED

TITLES = {"fm": "Factorization Machines (`algorithm=fm`, the default)",
          "wals": "WALS matrix factorization (`algorithm=wals`)"}


def _cell(param: Param, fixed: str | None) -> list[str]:
    default = "required" if param.required else ("unset" if param.default is None else f"`{param.default}`")
    tune = "" if param.tune is None else f"{param.tune[0]:g} to {param.tune[1]:g} ({param.tune[2]})"
    if fixed is not None:
        tune = f"fixed: {fixed}"
    return [f"`{param.name}`", param.kind.__name__, default, param.allowed(), tune, param.description]


def render() -> str:
    """The whole hyperparameter reference page."""
    out = [
        "# Hyperparameters",
        "",
        "Generated from `algorithm/schemas.py` by `python -m container.schema_docs`; do not edit by hand.",
        "",
        "Values may arrive as strings (`\"64\"`, `\"2.0\"`, `\"1e-05\"`, `\"True\"`) as SageMaker sends them. "
        "Keys starting with `sagemaker_` (the SDK's) or `_` (the built-in's internal settings such as `_kvstore`, "
        "`_num_gpus`, `_log_level`, and the tuning service's `_tuning_objective_metric`) are ignored, each with a "
        "log line; any other unknown key, a wrong type or a value out of range fails the job with every problem "
        "listed in `output/failure`.",
        "",
        "The tuning range column is the search space of `fmwals.preset_ranges(algorithm)`, to run as is with "
        "`HyperparameterTuner`. FM's rates range around AdaGrad's defaults and the preset fixes "
        "`optimizer=adagrad`: a job that sets a rate but no optimizer trains with the built-in's Adam.",
    ]
    for algorithm, schema in SCHEMAS.items():
        out += ["", f"## {TITLES[algorithm]}", "",
                "| name | type | default | allowed | tuning range | description |",
                "|---|---|---|---|---|---|"]
        out += ["| " + " | ".join(_cell(p, TUNING_FIXED[algorithm].get(p.name))) + " |" for p in schema.values()]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(render(), end="")
