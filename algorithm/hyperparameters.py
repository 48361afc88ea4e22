"""The hyperparameter schema engine: typed parameters, lenient parsing of launcher strings, one error.

Stdlib only: the estimators, the container parser, the docs generator and the client wrapper all read the same
tables (``algorithm.schemas``), so validation and its wording never drift apart.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

# Names no schema declares and every job may carry: the SDK's (``sagemaker_program``, ...) and the built-in's
# internal settings, which start with "_" (``_kvstore``, ``_num_gpus``, ``_log_level``, ...; the tuning service
# adds ``_tuning_objective_metric``). They are ignored, each with a log line.
RESERVED_PREFIXES = ("sagemaker_", "_")
# Internal settings of the built-in that have a counterpart here: the log line names it.
_COUNTERPARTS = {
    "_optimizer": "optimizer",
    "_learning_rate": "bias_lr, linear_lr and factors_lr",
    "_wd": "bias_wd, linear_wd and factors_wd",
}


class HyperparameterError(ValueError):
    """One or more hyperparameters are unknown, of the wrong type or out of range (all listed at once)."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        noun = "hyperparameter" if len(problems) == 1 else "hyperparameters"
        super().__init__(f"Invalid {noun}: " + "; ".join(problems))


@dataclass(frozen=True)
class Param:
    """One hyperparameter: its type, default, allowed values and meaning.

    ``default=None`` with ``required=False`` means "unset" (the algorithm picks behaviour).
    ``choices`` (empty: any value of ``kind``) lists the allowed strings.
    ``low``/``high`` are bounds for numbers; ``low_open``/``high_open`` make them strict.
    ``tune`` is an optional (low, high, scaling) range for the tuner presets.
    """

    name: str
    kind: type
    description: str
    default: Any = None
    required: bool = False
    choices: tuple[str, ...] = ()
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    tune: tuple[float, float, str] | None = None

    def allowed(self) -> str:
        """Human description of the allowed values, used in every error message."""
        if self.choices:
            return "one of " + ", ".join(self.choices)
        what = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}[self.kind]
        bounds = []
        if self.low is not None:
            bounds.append(("> " if self.low_open else ">= ") + _fmt(self.low))
        if self.high is not None:
            bounds.append(("< " if self.high_open else "<= ") + _fmt(self.high))
        return what + (" " + " and ".join(bounds) if bounds else "")

    def parse(self, raw: Any) -> Any:
        """Convert a launcher value (usually a string) to ``kind`` and check it; ValueError names the problem."""
        value = _coerce(self.kind, raw)
        if not self.admits(value):
            raise ValueError
        return value

    def admits(self, value: Any) -> bool:
        """Whether ``value``, already of ``kind``, is one of the allowed values (choices, bounds)."""
        if self.choices and value not in self.choices:
            return False
        if self.kind in (int, float):
            if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
                return False
            if self.high is not None and (value > self.high or (self.high_open and value == self.high)):
                return False
        return True

    @property
    def unset_allowed(self) -> bool:
        """Whether ``None`` (unset) is a valid value: optional with no default."""
        return not self.required and self.default is None


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(x)


def _unquote(raw: Any) -> Any:
    """Strip the JSON quoting some launchers add (``"\\"64\\""`` -> ``"64"``)."""
    while isinstance(raw, str) and len(raw) >= 2 and raw[0] == raw[-1] == '"':
        try:
            raw = json.loads(raw)
        except ValueError:
            break
    return raw.strip() if isinstance(raw, str) else raw


def _coerce(kind: type, raw: Any) -> Any:
    raw = _unquote(raw)
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "false", "1", "0"):
            return raw.lower() in ("true", "1")
        if isinstance(raw, int) and raw in (0, 1):
            return bool(raw)
        raise ValueError
    if isinstance(raw, bool):
        raise ValueError
    if kind is int:
        number = float(raw)  # accepts 64, "64", "2.0", "1e3"
        if not math.isfinite(number) or not number.is_integer():
            raise ValueError
        return int(number)
    if kind is float:
        number = float(raw)
        if not math.isfinite(number):
            raise ValueError
        return number
    if kind is str:
        if not isinstance(raw, str):
            raise ValueError
        return raw
    raise TypeError(f"unsupported hyperparameter kind {kind!r}")


Schema = Mapping[str, Param]


def make_schema(*params: Param) -> dict[str, Param]:
    """An ordered name -> Param table."""
    return {p.name: p for p in params}


def defaults(schema: Schema) -> dict[str, Any]:
    """The default of every optional parameter (None where unset is the default)."""
    return {name: param.default for name, param in schema.items() if not param.required}


def parse_hyperparameters(raw: Mapping[str, Any], schema: Schema) -> dict[str, Any]:
    """Validate ``raw`` against ``schema`` and return every parameter typed, defaults filled in.

    Keys starting with ``sagemaker_`` or ``_`` (the built-in's internal settings) are ignored, each logged.
    Other unknown keys, wrong types, values out of range and missing required parameters are all collected into
    one ``HyperparameterError``.
    """
    problems: list[str] = []
    values: dict[str, Any] = {}
    for key, value in raw.items():
        if key.startswith(RESERVED_PREFIXES):
            _log_ignored(key, value)
            continue
        param = schema.get(key)
        if param is None:
            problems.append(f"unknown hyperparameter {key!r} (known: {', '.join(sorted(schema))})")
            continue
        try:
            values[key] = param.parse(value)
        except (ValueError, TypeError):
            problems.append(f"{key}={value!r} is not valid: expected {param.allowed()}")
    for name, param in schema.items():
        if name in values or name in raw:
            continue
        if param.required:
            problems.append(f"{name} is required: expected {param.allowed()}")
        else:
            values[name] = param.default
    if problems:
        raise HyperparameterError(problems)
    return {name: values[name] for name in schema if name in values}


def _log_ignored(key: str, value: Any) -> None:
    if key.startswith("sagemaker_"):
        log.info("Ignoring the SDK's hyperparameter %s=%r", key, value)
        return
    counterpart = _COUNTERPARTS.get(key)
    log.info("Ignoring the built-in's internal hyperparameter %s=%r: it has no effect here%s", key, value,
             f" (set {counterpart} instead)" if counterpart else "")


def serialize_hyperparameters(values: Mapping[str, Any]) -> dict[str, str]:
    """The string map SageMaker's API carries: ``None`` dropped, bools as ``true``/``false``."""
    out: dict[str, str] = {}
    for key, value in values.items():
        if value is None:
            continue
        out[key] = ("true" if value else "false") if isinstance(value, bool) else str(value)
    return out
