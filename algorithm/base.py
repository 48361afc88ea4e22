"""What the FM and WALS estimators share: errors, scikit-learn style parameters, validation helpers."""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np


class DivergedError(ValueError):
    """The training loss became NaN or infinite."""


class NotFittedError(ValueError, AttributeError):
    """The model is used before ``fit`` (or loading)."""


def is_int(value: Any) -> bool:
    """An integer, not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def is_number(value: Any) -> bool:
    """A finite real number, not a bool."""
    return isinstance(value, int | float | np.number) and not isinstance(value, bool) and math.isfinite(value)


class Estimator:
    """scikit-learn parameter conventions: ``__init__`` arguments are the parameters."""

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


class ParamProblems:
    """Collects every invalid parameter of an estimator, then raises them together as one ValueError."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator
        self.problems: list[str] = []

    def check(self, name: str, ok: bool, allowed: str) -> None:
        if not ok:
            self.problems.append(f"The {name!r} parameter of {type(self.estimator).__name__} must be {allowed}. "
                                 f"Got {getattr(self.estimator, name)!r} instead.")

    def raise_any(self) -> None:
        if self.problems:
            raise ValueError("\n".join(self.problems))
