"""What the FM and WALS estimators share: errors, scikit-learn style parameters checked against their table,
and what scikit-learn's tools (``clone``, ``cross_val_score``, ``GridSearchCV``) read: tags and ``score``.

scikit-learn is not a dependency: the tags are built with the classes of the scikit-learn that asks for them.
"""

from __future__ import annotations

import inspect
import math
import sys
from collections.abc import Callable
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
    entry of the same name in ``schema`` (``algorithm.schemas``).

    ``_estimator_type`` is scikit-learn's: "classifier" (labels 0/1, ``predict_proba``), "regressor", or None
    (neither); it picks the tags and what ``score`` measures."""

    schema: ClassVar[Schema]
    # Parameters that may also be an array with one value per item instead of the table's number.
    array_params: ClassVar[tuple[str, ...]] = ()
    # What fit and predict take, in scikit-learn's InputTags terms.
    input_tags: ClassVar[dict[str, bool]] = {"sparse": True}
    predict: Callable[..., Any]

    @property
    def _estimator_type(self) -> str | None:
        return None

    def _check_fitted(self) -> None:
        raise NotImplementedError

    def __sklearn_tags__(self) -> Any:
        """The tags ``sklearn.utils.get_tags`` reads, made of the calling scikit-learn's own classes."""
        utils = sys.modules.get("sklearn.utils")
        if utils is None:
            raise RuntimeError("__sklearn_tags__ is scikit-learn's hook: read tags with sklearn.utils.get_tags")
        kind = self._estimator_type
        return utils.Tags(
            estimator_type=kind,
            target_tags=utils.TargetTags(required=kind is not None),
            classifier_tags=utils.ClassifierTags(multi_class=False) if kind == "classifier" else None,
            regressor_tags=utils.RegressorTags() if kind == "regressor" else None,
            input_tags=utils.InputTags(**self.input_tags),
        )

    @property
    def classes_(self) -> np.ndarray:
        """The class labels of a fitted classifier, ``[0.0, 1.0]`` (the column order of ``predict_proba``)."""
        if self._estimator_type != "classifier":
            raise AttributeError(f"{type(self).__name__} has classes_ only as a classifier")
        self._check_fitted()
        return np.array([0.0, 1.0], dtype=np.float32)

    def score(self, X: Any, y: Any = None, sample_weight: Any = None) -> float:
        """scikit-learn's default score of a fitted model on ``X``, ``y``: the (weighted) accuracy of
        ``predict`` for a classifier, the coefficient of determination R² for a regressor."""
        if self._estimator_type not in ("classifier", "regressor"):
            raise NotImplementedError(f"{type(self).__name__} has no default score")
        truth = np.asarray(y, dtype=np.float64).ravel()
        predicted = np.asarray(self.predict(X), dtype=np.float64).ravel()
        if truth.shape != predicted.shape:
            raise ValueError(f"y has {truth.size} values but X has {predicted.size} rows")
        weights = np.ones_like(truth) if sample_weight is None else np.asarray(sample_weight, np.float64).ravel()
        if weights.shape != truth.shape:
            raise ValueError(f"sample_weight has {weights.size} values, y has {truth.size}")
        if self._estimator_type == "classifier":
            return float(np.average(predicted == truth, weights=weights))
        residual = float(np.sum(weights * (truth - predicted) ** 2))
        total = float(np.sum(weights * (truth - np.average(truth, weights=weights)) ** 2))
        if total == 0.0:
            return 1.0 if residual == 0.0 else 0.0  # scikit-learn's r2_score for a constant y
        return 1.0 - residual / total

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
