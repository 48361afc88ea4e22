"""Hyperparameter validation from the tables the container reads (``algorithm.schemas``), with its wording."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from algorithm.hyperparameters import HyperparameterError, Schema, parse_hyperparameters, serialize_hyperparameters
from algorithm.schemas import SCHEMAS, parse_for_algorithm
from fmwals.errors import InvalidHyperparameterError

__all__ = ["algorithm_of", "check_complete", "check_partial", "serialize_hyperparameters"]


def algorithm_of(values: Mapping[str, Any]) -> str:
    """The algorithm a hyperparameter map selects (``fm`` unless ``algorithm`` says otherwise)."""
    return str(values.get("algorithm", "fm")).strip('"')


def _optional(schema: Schema) -> dict[str, Any]:
    return {name: dataclasses.replace(param, required=False) for name, param in schema.items()}


def check_partial(values: Mapping[str, Any]) -> None:
    """Raise ``InvalidHyperparameterError`` if any given name is unknown or any value invalid.

    Required parameters may still be missing: this runs every time a value is set.
    """
    algorithm = algorithm_of(values)
    try:
        if algorithm not in SCHEMAS:
            parse_for_algorithm(values)  # raises the container's message about ``algorithm``
        parse_hyperparameters(values, _optional(SCHEMAS[algorithm]))
    except HyperparameterError as err:
        raise InvalidHyperparameterError(str(err)) from None


def check_complete(values: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter typed with defaults filled in, as the container will see it; raises if any is
    missing or invalid (the container's message)."""
    try:
        return parse_for_algorithm(values)[1]
    except HyperparameterError as err:
        raise InvalidHyperparameterError(str(err)) from None
