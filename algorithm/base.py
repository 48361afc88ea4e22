"""What the FM and WALS estimators share: errors, scikit-learn style parameters checked against their table."""

from __future__ import annotations

import inspect
import math
from typing import Any, ClassVar

import numpy as np

from algorithm.hyperparameters import Param, Schema
from algorithm.schemas import combination_problems


class DivergedError(ValueError):
    """The training loss became NaN or infinite, or kept growing."""


class NotFittedError(ValueError, AttributeError):
    """The model is used before ``fit`` (or loading)."""




class Estimator:
    """scikit-learn parameter conventions: ``__init__`` arguments are the parameters, each described by the
    entry of the same name in ``schema`` (``algorithm.schemas``)."""

    schema: ClassVar[Schema]
    # Parameters that may also be an array with one value per item instead of the table's number.
    array_params: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def _param_names(cls) -> list[str]:
        return [name for name in inspect.signature(cls.__init__).parameters if name != "self"]

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        """The constructor parameters (scikit-learn convention)."""
        return {name: getattr(self, name) for name in self._param_names()}

    def set_params(self, **params: Any) -> Any:
        """Set constructor parameters (scikit-learn convention); returns the estimator."""
        valid = self._param_names()
        for name, value in params.items():
            if name not in valid:
                raise ValueError(f"Invalid parameter {name!r} for {type(self).__name__}; valid: {valid}")
            setattr(self, name, value)
        return self

    def _check_params(self) -> None:
        """Raise one ValueError listing every parameter whose value the table does not allow, and every
        combination of values that does not go together (``algorithm.schemas.combination_problems``)."""
        problems = []
        for name in self._param_names():
            param, value = self.schema[name], getattr(self, name)
            array_ok = name in self.array_params
            if not ((array_ok and np.ndim(value) > 0) or _valid(param, value)):
                allowed = ("None or " if param.unset_allowed else "") + param.allowed()
                if array_ok:
                    allowed += " or an array with one value per item"
                problems.append(f"The {name!r} parameter of {type(self).__name__} must be {allowed}. "
                                f"Got {value!r} instead.")
        if not problems:
            problems = combination_problems(self.get_params())
        if problems:
            raise ValueError("\n".join(problems))


def _valid(param: Param, value: Any) -> bool:
    """Whether ``value`` (a Python or numpy scalar, or None) is of the parameter's kind and allowed."""
    if value is None:
        return param.unset_allowed
    if param.kind is bool:
        return isinstance(value, bool | np.bool_)
    if isinstance(value, bool | np.bool_):
        return False
    if param.kind is int:
        return isinstance(value, int | np.integer) and param.admits(value)
    if param.kind is float:
        return isinstance(value, int | float | np.number) and math.isfinite(value) and param.admits(value)
    return isinstance(value, str) and param.admits(value)
