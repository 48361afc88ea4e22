"""Hyperparameter ranges with the SageMaker SDK's interface (``ContinuousParameter``, ``IntegerParameter``,
``CategoricalParameter``), their CreateHyperParameterTuningJob shapes, their optuna sampling, and the tuning
presets the container's schema declares."""

from __future__ import annotations

import math
from typing import Any, ClassVar

from algorithm.schemas import SCHEMAS, TUNING_FIXED

SCALING_TYPES = ("Auto", "Linear", "Logarithmic", "ReverseLogarithmic")
AUTO_LOG_RATIO = 100.0  # Auto scaling samples on a log scale when max/min spans at least this much


class ParameterRange:
    """A numeric range ``[min_value, max_value]`` searched on ``scaling_type``'s scale."""

    kind: ClassVar[type] = float

    def __init__(self, min_value: float, max_value: float, scaling_type: str = "Auto") -> None:
        if scaling_type not in SCALING_TYPES:
            raise ValueError(f"scaling_type={scaling_type!r}: expected one of {', '.join(SCALING_TYPES)}")
        if not min_value <= max_value:
            raise ValueError(f"min_value {min_value} is larger than max_value {max_value}")
        if scaling_type == "Logarithmic" and min_value <= 0:
            raise ValueError("Logarithmic scaling needs min_value > 0")
        if scaling_type == "ReverseLogarithmic" and not 0 <= min_value <= max_value < 1:
            raise ValueError("ReverseLogarithmic scaling needs 0 <= min_value <= max_value < 1")
        self.min_value = self.kind(min_value)
        self.max_value = self.kind(max_value)
        self.scaling_type = scaling_type

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.min_value!r}, {self.max_value!r}, {self.scaling_type!r})"

    @classmethod
    def cast_to_type(cls, value: Any) -> Any:
        return cls.kind(value)

    def is_valid(self, value: Any) -> bool:
        return self.min_value <= value <= self.max_value

    def as_tuning_range(self, name: str) -> dict[str, str]:
        """The range as CreateHyperParameterTuningJob's ParameterRanges entry."""
        return {
            "Name": name,
            "MinValue": str(self.min_value),
            "MaxValue": str(self.max_value),
            "ScalingType": self.scaling_type,
        }

    def log_scale(self) -> bool:
        if self.scaling_type == "Auto":
            return self.min_value > 0 and self.max_value / self.min_value >= AUTO_LOG_RATIO
        return self.scaling_type == "Logarithmic"

    def suggest(self, trial: Any, name: str) -> Any:
        """A value drawn by an optuna trial on this range's scale."""
        if self.scaling_type == "ReverseLogarithmic":  # 1 - x on a log scale: dense near max_value
            return 1.0 - trial.suggest_float(name, 1.0 - self.max_value, 1.0 - self.min_value, log=True)
        return trial.suggest_float(name, self.min_value, self.max_value, log=self.log_scale())


class ContinuousParameter(ParameterRange):
    """A real-valued hyperparameter range."""


class IntegerParameter(ParameterRange):
    """An integer hyperparameter range."""

    kind = int

    def suggest(self, trial: Any, name: str) -> Any:
        if self.scaling_type == "ReverseLogarithmic":
            raise ValueError("ReverseLogarithmic scaling is for continuous ranges only")
        return trial.suggest_int(name, int(self.min_value), int(self.max_value), log=self.log_scale())


class CategoricalParameter:
    """A hyperparameter taking one of ``values`` (sent as strings, as the SDK does)."""

    def __init__(self, values: Any) -> None:
        items = values if isinstance(values, (list, tuple)) else [values]
        self.values = [str(v).lower() if isinstance(v, bool) else str(v) for v in items]
        if not self.values:
            raise ValueError("CategoricalParameter needs at least one value")

    def __repr__(self) -> str:
        return f"CategoricalParameter({self.values!r})"

    @classmethod
    def cast_to_type(cls, value: Any) -> str:
        return str(value)

    def is_valid(self, value: Any) -> bool:
        return str(value) in self.values

    def as_tuning_range(self, name: str) -> dict[str, Any]:
        return {"Name": name, "Values": list(self.values)}

    def suggest(self, trial: Any, name: str) -> str:
        return str(trial.suggest_categorical(name, self.values))


Range = ParameterRange | CategoricalParameter


def grid_values(parameter: Range) -> list[str]:
    """Every value a grid search tries: a categorical's values, or each integer of an integer range."""
    if isinstance(parameter, CategoricalParameter):
        return list(parameter.values)
    if isinstance(parameter, IntegerParameter):
        return [str(v) for v in range(int(parameter.min_value), int(parameter.max_value) + 1)]
    raise ValueError(
        "the Grid strategy needs categorical (or integer) ranges; continuous ranges have no grid"
    )


def preset_ranges(algorithm: str = "fm", names: list[str] | None = None) -> dict[str, Range]:
    """A search space to run as is, as the container's schema declares it for ``algorithm``: log-scaled ranges
    around the defaults that work, plus the values the preset fixes (FM: ``optimizer``, whose defaults the
    rates' ranges surround); ``names`` picks some of the ranges."""
    schema = SCHEMAS[algorithm]
    chosen = names if names is not None else [n for n, p in schema.items() if p.tune is not None]
    ranges: dict[str, Range] = {}
    for name in chosen:
        param = schema[name]
        if param.tune is None:
            raise ValueError(
                f"{name} has no tuning preset (presets: {', '.join(n for n, p in schema.items() if p.tune)})"
            )
        low, high, scaling = param.tune
        if param.kind is int:
            ranges[name] = IntegerParameter(int(low), int(high), scaling)
        else:
            ranges[name] = ContinuousParameter(low, high, scaling)
    for name, value in TUNING_FIXED[algorithm].items():
        ranges[name] = CategoricalParameter([value])
    return ranges


def parse_range(entry: dict[str, Any], kind: str) -> tuple[str, Range]:
    """The inverse of ``as_tuning_range`` (``kind``: Continuous, Integer or Categorical)."""
    if kind == "Categorical":
        return entry["Name"], CategoricalParameter(entry["Values"])
    cls = IntegerParameter if kind == "Integer" else ContinuousParameter
    low, high = float(entry["MinValue"]), float(entry["MaxValue"])
    if kind == "Integer":
        low, high = math.floor(low), math.ceil(high)
    return entry["Name"], cls(low, high, entry.get("ScalingType", "Auto"))
