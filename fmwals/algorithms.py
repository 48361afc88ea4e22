"""``FactorizationMachines`` and ``WALS``: estimators whose arguments are the algorithm's hyperparameters (its
table in ``algorithm.schemas``, with the seed pages' names), exposed as attributes checked on assignment, and
which build record sets; ``WALS`` also reads its trained factors as TF's estimator does."""

from __future__ import annotations

import inspect
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from algorithm import artifact
from algorithm.hyperparameters import Schema
from algorithm.schemas import FM_SCHEMA, WALS_SCHEMA
from fmwals import jobs, wals_factors
from fmwals.builtin_export import export_builtin
from fmwals.estimator import Estimator
from fmwals.inputs import Inputs, RecordSet, feature_dim_of, is_local, local_path
from fmwals.predictor import FactorizationMachinesPredictor
from fmwals.recordset import write_shards, write_triplets
from fmwals.session import Session, download
from fmwals.wals_predictor import WALSPredictor

JOB_ARGUMENTS = ("role", "instance_count", "instance_type")


class AlgorithmEstimator(Estimator):
    """An estimator of one algorithm of the image. Every parameter of ``schema`` is a keyword argument and an
    attribute; ``positional`` names the arguments that may also be given by position, in the order of the
    SDK's (or TF's) signature. The other keyword arguments are ``Estimator``'s."""

    schema: ClassVar[Schema]
    positional: ClassVar[tuple[str, ...]]
    algorithm_name: ClassVar[str]
    repo_name: ClassVar[str]
    __signature__: ClassVar[inspect.Signature]
    # Arguments of the mirrored signature that mean nothing here: name -> why (passing one warns, and says so).
    ignored: ClassVar[Mapping[str, str]] = {}
    # Parameters whose explicit None has a meaning in the mirrored signature: name -> the value it stands for
    # (any other None means "unset": the schema's default).
    none_means: ClassVar[Mapping[str, Any]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give the class the signature its arguments make (what ``help()`` and editors show)."""
        super().__init_subclass__(**kwargs)
        arg = inspect.Parameter
        names = [*cls.schema, *cls.ignored]
        keywords = [name for name in names if name not in cls.positional and name != "algorithm"]

        def default(name: str) -> Any:
            return cls.schema[name].default if name in cls.none_means else None

        cls.__signature__ = inspect.Signature(
            [arg(name, arg.POSITIONAL_OR_KEYWORD, default=default(name)) for name in cls.positional]
            + [arg(name, arg.KEYWORD_ONLY, default=default(name)) for name in (*keywords, "data_location")]
            + [arg("kwargs", arg.VAR_KEYWORD)]
        )

    def __init__(self, *args: Any, data_location: str | None = None, **kwargs: Any) -> None:
        if len(args) > len(self.positional):
            raise TypeError(f"{type(self).__name__} takes at most {len(self.positional)} positional arguments "
                            f"({len(args)} given)")
        for name, value in zip(self.positional, args, strict=False):
            if name in kwargs:
                raise TypeError(f"{type(self).__name__} got multiple values for argument {name!r}")
            kwargs[name] = value
        self._warn_ignored({k: kwargs.pop(k) for k in list(kwargs) if k in self.ignored})
        for name, meaning in self.none_means.items():
            if name in kwargs and kwargs[name] is None:
                kwargs[name] = meaning
        self._check_arguments(kwargs)
        hyperparameters = {k: kwargs.pop(k) for k in list(kwargs) if k in self.schema}
        hyperparameters.update(kwargs.pop("hyperparameters", None) or {})
        job = [kwargs.pop(name, None) for name in JOB_ARGUMENTS]
        kwargs.setdefault("base_job_name", self.repo_name)
        super().__init__(kwargs.pop("image_uri", None), *job, **kwargs)
        self.data_location = data_location
        defaults = {"algorithm": self.algorithm_name} if self.algorithm_name != "fm" else {}
        self.set_hyperparameters(**defaults, **{k: v for k, v in hyperparameters.items() if v is not None})

    @classmethod
    def _warn_ignored(cls, given: dict[str, Any]) -> None:
        notes = [f"{name}={value!r} ({cls.ignored[name]})" for name, value in given.items() if value is not None]
        if notes:
            warnings.warn(f"{cls.__name__} ignores " + "; ".join(notes), UserWarning, stacklevel=3)

    def _check_arguments(self, arguments: dict[str, Any]) -> None:
        """Refuse, with what to do instead, argument values of the mirrored signature that have another home
        here (the schema checks the rest)."""

    def __getattr__(self, name: str) -> Any:
        if name in type(self).schema:
            return self.__dict__.get("_hyperparameters", {}).get(name)
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        if name in type(self).schema:
            self.set_hyperparameters(**{name: value})
        else:
            super().__setattr__(name, value)

    def record_set(
        self, train: Any, labels: Any = None, channel: str = "train", encrypt: bool = False
    ) -> RecordSet:
        """Write ``train`` (and ``labels``) in the algorithm's training format where this estimator's back end
        reads them; returns the RecordSet for ``fit``."""
        name = jobs.unique_name(f"{type(self).__name__}-{channel}")
        local = self._write_records(train, labels, jobs.home() / "record-sets" / name, channel)
        return self.backend.stage_record_set(local, name, self.data_location)

    def _write_records(self, train: Any, labels: Any, directory: Path, channel: str) -> RecordSet:
        """Write ``train`` (and ``labels``) under ``directory`` in the algorithm's format; the local RecordSet."""
        raise NotImplementedError

    def fit(  # type: ignore[override]
        self,
        records: Inputs = None,
        mini_batch_size: int | None = None,
        wait: bool = True,
        logs: bool = True,
        job_name: str | None = None,
    ) -> None:
        """Train on ``records`` (a RecordSet, a list of them, or anything ``Estimator.fit`` takes); a RecordSet
        also sets ``feature_dim`` where the algorithm has one (as the SDK does)."""
        feature_dim = feature_dim_of(records) if "feature_dim" in self.schema else None
        if feature_dim is not None:
            self.set_hyperparameters(feature_dim=feature_dim)
        if mini_batch_size is not None:
            self.set_hyperparameters(mini_batch_size=mini_batch_size)
        super().fit(records, wait, logs, job_name)


class FactorizationMachines(AlgorithmEstimator):
    """Factorization Machines (``predictor_type`` binary_classifier or regressor) with the built-in's
    arguments; ``record_set`` writes a 2-D ndarray or scipy sparse matrix and its labels as RecordIO-protobuf
    shards, one per training instance."""

    schema = FM_SCHEMA
    positional = (
        *JOB_ARGUMENTS, "num_factors", "predictor_type", "epochs", "clip_gradient", "eps", "rescale_grad",
        "bias_lr", "linear_lr", "factors_lr", "bias_wd", "linear_wd", "factors_wd",
        "bias_init_method", "bias_init_scale", "bias_init_sigma", "bias_init_value",
        "linear_init_method", "linear_init_scale", "linear_init_sigma", "linear_init_value",
        "factors_init_method", "factors_init_scale", "factors_init_sigma", "factors_init_value",
    )
    algorithm_name = "fm"
    repo_name = "factorization-machines"
    predictor_cls = FactorizationMachinesPredictor

    def _write_records(self, train: Any, labels: Any, directory: Path, channel: str) -> RecordSet:
        write_shards(train, labels, int(self.instance_count), directory)
        rows, cols = int(train.shape[0]), int(train.shape[1])
        return RecordSet(f"file://{directory}/", rows, cols, "S3Prefix", channel)

    def export_builtin(self, path: str | os.PathLike[str]) -> Path:
        """Write the latest job's model to the local file ``path`` as the built-in SageMaker FM's
        ``model.tar.gz`` (``model_algo-1``: symbol.json, params, meta.json), which MXNet scripts written for the
        built-in load; returns the path."""
        model_data = self.model_data
        if model_data is None:
            raise ValueError("this FactorizationMachines has no trained model yet: call fit() (or attach()) first")
        return export_builtin(model_data, path, self.sagemaker_session)


class WALS(AlgorithmEstimator):
    """Weighted alternating least squares with TensorFlow ``WALSMatrixFactorization``'s arguments, in TF's
    order, and its ``get_row_factors``, ``get_col_factors`` and ``get_projections``; trained on ``text/csv``
    triplets ``row,col,value``, which ``record_set`` writes from a scipy sparse matrix or
    ``(rows, cols, values)`` (no labels).

    TF's sharding, caching and ``model_dir``/``config`` arguments are accepted and ignored with a warning.
    As in TF, ``regularization_coeff=None`` means no regularization and ``row_weights=None`` (or
    ``col_weights=None``) weighs every entry by ``unobserved_weight`` alone; per-row weight lists go to
    ``fit`` as a ``row_weights`` channel (docs/wals.md).
    """

    schema = WALS_SCHEMA
    positional = (
        "num_rows", "num_cols", "embedding_dimension", "unobserved_weight", "regularization_coeff", "row_init",
        "col_init", "num_row_shards", "num_col_shards", "row_weights", "col_weights",
        "use_factors_weights_cache_for_training", "use_gramian_cache_for_training", "max_sweeps", "model_dir",
        "config", *JOB_ARGUMENTS,
    )
    ignored: ClassVar[Mapping[str, str]] = {
        "num_row_shards": "the factors are not sharded: one process holds them",
        "num_col_shards": "the factors are not sharded: one process holds them",
        "use_factors_weights_cache_for_training": "there are no TF workers to cache on",
        "use_gramian_cache_for_training": "there are no TF workers to cache on",
        "model_dir": "the model goes to the job's output_path; model_data says where",
        "config": "instance_type and instance_count say where the job runs",
    }
    none_means: ClassVar[Mapping[str, Any]] = {"regularization_coeff": 0.0, "row_weights": 0.0, "col_weights": 0.0}
    algorithm_name = "wals"
    repo_name = "wals"
    predictor_cls = WALSPredictor
    # TF's feature keys of get_projections' input_fn.
    INPUT_ROWS = wals_factors.INPUT_ROWS
    INPUT_COLS = wals_factors.INPUT_COLS
    PROJECT_ROW = wals_factors.PROJECT_ROW
    PROJECTION_WEIGHTS = wals_factors.PROJECTION_WEIGHTS

    def _check_arguments(self, arguments: dict[str, Any]) -> None:
        for name in ("row_weights", "col_weights"):
            if isinstance(arguments.get(name), list | tuple | np.ndarray):
                side = name.split("_")[0]
                raise ValueError(
                    f"{name} takes one number for every {side}; per-{side} weights (TF's lists) go to fit as a "
                    f"{name!r} channel: a text/csv file of `id,weight` lines (docs/wals.md)"
                )

    def _artifact(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """(meta, arrays) of the latest job's model, read once per model_data."""
        model_data = self.model_data
        if model_data is None:
            raise ValueError("this WALS has no trained model yet: call fit() (or attach()) first")
        cached = self.__dict__.get("_artifact_cache")
        if cached is None or cached[0] != model_data:
            with tempfile.TemporaryDirectory() as tmp:
                path = local_path(model_data) if is_local(model_data) else download(
                    (self.sagemaker_session or Session()).s3_client, model_data, Path(tmp))
                cached = (model_data, *artifact.read(path))
            self.__dict__["_artifact_cache"] = cached
        return cached[1], cached[2]

    def get_row_factors(self) -> list[np.ndarray]:
        """TF's ``get_row_factors``: a list of one array (one shard), the trained row factors with row i
        holding row id i's (``fmwals.wals_factors`` says how other ids are ordered)."""
        _, arrays = self._artifact()
        return [wals_factors.tf_factors(arrays["row_factors"], arrays.get("row_ids"))]

    def get_col_factors(self) -> list[np.ndarray]:
        """TF's ``get_col_factors``: a list of one array, the trained column factors (row j: column id j)."""
        _, arrays = self._artifact()
        return [wals_factors.tf_factors(arrays["col_factors"], arrays.get("col_ids"))]

    def get_projections(self, input_fn: Callable[[], Any]) -> Iterator[np.ndarray]:
        """TF's ``get_projections``: the factors of new rows (``features[WALS.PROJECT_ROW]`` true: the rows of
        ``features[WALS.INPUT_ROWS]``, column j being column id j) or new columns (``WALS.INPUT_COLS``, one
        row per new column, column i being row id i), solved against the trained factors of the other side,
        one factor per row of the input. ``features[WALS.PROJECTION_WEIGHTS]`` (optional) weighs each new
        row or column. ``input_fn`` returns ``(features, labels)`` or ``features``; the inputs are scipy
        sparse matrices. Runs the numba kernels in this process."""
        project_row, entries, weights = wals_factors.projection_request(input_fn)
        meta, arrays = self._artifact()
        try:
            from algorithm.wals_model import WALSModel
        except ModuleNotFoundError as err:
            raise ModuleNotFoundError(
                f"WALS.get_projections solves with the numba kernels, which need {err.name}: install the "
                "container's dependencies too (pip install 'fm-wals-image[container]')", name=err.name
            ) from err
        side, key = ("col", self.INPUT_ROWS) if project_row else ("row", self.INPUT_COLS)
        factors = arrays[f"{side}_factors"]
        matrix = wals_factors.to_model_indices(entries, arrays.get(f"{side}_ids"), len(factors), key, side)
        model = WALSModel.from_artifact(meta, arrays).wals
        return iter(model.get_projections(matrix if project_row else matrix.T, project_row, weights))

    def _write_records(self, train: Any, labels: Any, directory: Path, channel: str) -> RecordSet:
        if labels is not None:
            raise ValueError("WALS.record_set takes no labels: the matrix values are what it fits")
        entries, n_cols = write_triplets(train, directory / "triplets.csv")
        return RecordSet(f"file://{directory}/", entries, n_cols, "S3Prefix", channel, "text/csv")
