"""``FactorizationMachines`` and ``WALS``: estimators whose arguments are the algorithm's hyperparameters (its
table in ``algorithm.schemas``, with the seed pages' names), exposed as attributes checked on assignment, and
which build record sets."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar

from algorithm.hyperparameters import Schema
from algorithm.schemas import FM_SCHEMA, WALS_SCHEMA
from fmwals import jobs
from fmwals.estimator import Estimator
from fmwals.inputs import Inputs, RecordSet, feature_dim_of
from fmwals.predictor import FactorizationMachinesPredictor
from fmwals.recordset import write_shards, write_triplets
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

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """Give the class the signature its arguments make (what ``help()`` and editors show)."""
        super().__init_subclass__(**kwargs)
        arg = inspect.Parameter
        keywords = [name for name in cls.schema if name not in cls.positional and name != "algorithm"]
        cls.__signature__ = inspect.Signature(
            [arg(name, arg.POSITIONAL_OR_KEYWORD, default=None) for name in cls.positional]
            + [arg(name, arg.KEYWORD_ONLY, default=None) for name in (*keywords, "data_location")]
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
        hyperparameters = {k: kwargs.pop(k) for k in list(kwargs) if k in self.schema}
        hyperparameters.update(kwargs.pop("hyperparameters", None) or {})
        job = [kwargs.pop(name, None) for name in JOB_ARGUMENTS]
        kwargs.setdefault("base_job_name", self.repo_name)
        super().__init__(kwargs.pop("image_uri", None), *job, **kwargs)
        self.data_location = data_location
        defaults = {"algorithm": self.algorithm_name} if self.algorithm_name != "fm" else {}
        self.set_hyperparameters(**defaults, **{k: v for k, v in hyperparameters.items() if v is not None})

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


class WALS(AlgorithmEstimator):
    """Weighted alternating least squares with TensorFlow ``WALSMatrixFactorization``'s arguments (the TF
    sharding and caching arguments have no counterpart); trained on ``text/csv`` triplets ``row,col,value``,
    which ``record_set`` writes from a scipy sparse matrix or ``(rows, cols, values)`` (no labels)."""

    schema = WALS_SCHEMA
    positional = (
        "num_rows", "num_cols", "embedding_dimension", "unobserved_weight", "regularization_coeff", "row_init",
        "col_init", "row_weights", "col_weights", "max_sweeps", *JOB_ARGUMENTS,
    )
    algorithm_name = "wals"
    repo_name = "wals"
    predictor_cls = WALSPredictor

    def _write_records(self, train: Any, labels: Any, directory: Path, channel: str) -> RecordSet:
        if labels is not None:
            raise ValueError("WALS.record_set takes no labels: the matrix values are what it fits")
        entries, n_cols = write_triplets(train, directory / "triplets.csv")
        return RecordSet(f"file://{directory}/", entries, n_cols, "S3Prefix", channel, "text/csv")
