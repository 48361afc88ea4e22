"""A thin client for the fm-wals image with the SageMaker Python SDK's interface: estimators, predictors,
batch transform and hyperparameter tuning, run locally (``instance_type='local_process'`` or ``'local'``)
or on Amazon SageMaker (``'ml.*'``).

Importing this package loads neither numba nor Flask. The RecordIO helpers (``write_numpy_to_dense_tensor``,
``write_spmatrix_to_sparse_tensor``, ``read_records``) are the SDK's, in ``fmwals.recordio``. The in-process
estimators (numba, scikit-learn compatible) are in ``fmwals.inprocess``.
"""

from __future__ import annotations

from fmwals.algorithms import WALS, FactorizationMachines
from fmwals.analytics import TrainingJobAnalytics
from fmwals.errors import (
    BackendUnavailableError,
    EndpointError,
    FmwalsError,
    InvalidHyperparameterError,
    JobFailedError,
)
from fmwals.estimator import Estimator
from fmwals.inputs import RecordSet, TrainingInput, s3_input
from fmwals.model import FactorizationMachinesModel, Model
from fmwals.parameter import CategoricalParameter, ContinuousParameter, IntegerParameter, preset_ranges
from fmwals.predictor import FactorizationMachinesPredictor, Predictor
from fmwals.recordio import read_records, write_numpy_to_dense_tensor, write_spmatrix_to_sparse_tensor
from fmwals.session import Session
from fmwals.transformer import Transformer
from fmwals.tuner import HyperparameterTuner, WarmStartConfig, WarmStartTypes
from fmwals.wals_predictor import WALSPredictor

__all__ = [
    "WALS",
    "BackendUnavailableError",
    "CategoricalParameter",
    "ContinuousParameter",
    "EndpointError",
    "Estimator",
    "FactorizationMachines",
    "FactorizationMachinesModel",
    "FactorizationMachinesPredictor",
    "FmwalsError",
    "HyperparameterTuner",
    "IntegerParameter",
    "InvalidHyperparameterError",
    "JobFailedError",
    "Model",
    "Predictor",
    "RecordSet",
    "Session",
    "TrainingInput",
    "TrainingJobAnalytics",
    "Transformer",
    "WALSPredictor",
    "WarmStartConfig",
    "WarmStartTypes",
    "preset_ranges",
    "read_records",
    "s3_input",
    "write_numpy_to_dense_tensor",
    "write_spmatrix_to_sparse_tensor",
]

