"""``FactorizationMachines`` and ``WALS``: estimators whose constructor takes the algorithm's hyperparameters
(the seed pages' names), exposes them as attributes checked on assignment, and builds record sets."""

from __future__ import annotations

from typing import Any, ClassVar

from algorithm.hyperparameters import Schema
from algorithm.schemas import FM_SCHEMA, WALS_SCHEMA
from fmwals import jobs
from fmwals.estimator import Estimator
from fmwals.inputs import Inputs, RecordSet, feature_dim_of
from fmwals.recordset import write_shards, write_triplets


class AlgorithmEstimator(Estimator):
    """An estimator of one algorithm of the image; hyperparameters are also attributes."""

    schema: ClassVar[Schema]
    algorithm_name: ClassVar[str]
    repo_name: ClassVar[str]

    def __init__(
        self,
        role: str | None = None,
        instance_count: int | None = None,
        instance_type: str | None = None,
        data_location: str | None = None,
        **kwargs: Any,
    ) -> None:
        hyperparameters = {k: kwargs.pop(k) for k in list(kwargs) if k in self.schema}
        hyperparameters.update(kwargs.pop("hyperparameters", None) or {})
        kwargs.setdefault("base_job_name", self.repo_name)
        super().__init__(kwargs.pop("image_uri", None), role, instance_count, instance_type, **kwargs)
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

    def _stage(self, local: RecordSet) -> RecordSet:
        name = local.s3_data.rstrip("/").rsplit("/", 1)[-1]
        return self.backend.stage_record_set(local, name, self.data_location)

    def fit(  # type: ignore[override]
        self,
        records: Inputs = None,
        mini_batch_size: int | None = None,
        wait: bool = True,
        logs: bool = True,
        job_name: str | None = None,
    ) -> None:
        """Train on ``records`` (a RecordSet, a list of them, or anything ``Estimator.fit`` takes)."""
        if mini_batch_size is not None:
            self.set_hyperparameters(mini_batch_size=mini_batch_size)
        super().fit(records, wait, logs, job_name)


class FactorizationMachines(AlgorithmEstimator):
    """Factorization Machines (``predictor_type`` binary_classifier or regressor) with the built-in's
    arguments."""

    schema = FM_SCHEMA
    algorithm_name = "fm"
    repo_name = "factorization-machines"

    def __init__(
        self,
        role: str | None = None,
        instance_count: int | None = None,
        instance_type: str | None = None,
        num_factors: int | None = None,
        predictor_type: str | None = None,
        epochs: int | None = None,
        clip_gradient: float | None = None,
        eps: float | None = None,
        rescale_grad: float | None = None,
        bias_lr: float | None = None,
        linear_lr: float | None = None,
        factors_lr: float | None = None,
        bias_wd: float | None = None,
        linear_wd: float | None = None,
        factors_wd: float | None = None,
        bias_init_method: str | None = None,
        bias_init_scale: float | None = None,
        bias_init_sigma: float | None = None,
        bias_init_value: float | None = None,
        linear_init_method: str | None = None,
        linear_init_scale: float | None = None,
        linear_init_sigma: float | None = None,
        linear_init_value: float | None = None,
        factors_init_method: str | None = None,
        factors_init_scale: float | None = None,
        factors_init_sigma: float | None = None,
        factors_init_value: float | None = None,
        **kwargs: Any,
    ) -> None:
        given = {k: v for k, v in locals().items() if k in FM_SCHEMA}
        super().__init__(role, instance_count, instance_type, **given, **kwargs)

    def record_set(
        self, train: Any, labels: Any = None, channel: str = "train", encrypt: bool = False
    ) -> RecordSet:
        """Write ``train`` (2-D ndarray, or scipy sparse) and ``labels`` as RecordIO-protobuf shards, one per
        training instance, where this estimator's back end reads them; returns the RecordSet for ``fit``."""
        name = jobs.unique_name(f"{type(self).__name__}-{channel}")
        directory = jobs.home() / "record-sets" / name
        write_shards(train, labels, int(self.instance_count), directory)
        rows, cols = int(train.shape[0]), int(train.shape[1])
        local = RecordSet(f"file://{directory}/", rows, cols, "S3Prefix", channel)
        return self._stage(local)

    def fit(  # type: ignore[override]
        self,
        records: Inputs = None,
        mini_batch_size: int | None = None,
        wait: bool = True,
        logs: bool = True,
        job_name: str | None = None,
    ) -> None:
        """Train on ``records``; a RecordSet also sets ``feature_dim`` (as the SDK does)."""
        feature_dim = feature_dim_of(records)
        if feature_dim is not None:
            self.set_hyperparameters(feature_dim=feature_dim)
        super().fit(records, mini_batch_size, wait, logs, job_name)


class WALS(AlgorithmEstimator):
    """Weighted alternating least squares with TensorFlow ``WALSMatrixFactorization``'s arguments (the TF
    sharding and caching arguments have no counterpart); trained on ``text/csv`` triplets
    ``row,col,value``."""

    schema = WALS_SCHEMA
    algorithm_name = "wals"
    repo_name = "wals"

    def __init__(
        self,
        num_rows: int | None = None,
        num_cols: int | None = None,
        embedding_dimension: int | None = None,
        unobserved_weight: float | None = None,
        regularization_coeff: float | None = None,
        row_init: str | None = None,
        col_init: str | None = None,
        row_weights: float | None = None,
        col_weights: float | None = None,
        max_sweeps: int | None = None,
        role: str | None = None,
        instance_count: int | None = None,
        instance_type: str | None = None,
        **kwargs: Any,
    ) -> None:
        given = {k: v for k, v in locals().items() if k in WALS_SCHEMA}
        super().__init__(role, instance_count, instance_type, **given, **kwargs)

    def record_set(
        self, train: Any, labels: Any = None, channel: str = "train", encrypt: bool = False
    ) -> RecordSet:
        """Write the observed entries of ``train`` (a scipy sparse matrix, or ``(rows, cols, values)``) as
        ``row,col,value`` CSV triplets; returns the RecordSet for ``fit``."""
        if labels is not None:
            raise ValueError("WALS.record_set takes no labels: the matrix values are what it fits")
        name = jobs.unique_name(f"WALS-{channel}")
        directory = jobs.home() / "record-sets" / name
        entries, n_cols = write_triplets(train, directory / "triplets.csv")
        local = RecordSet(f"file://{directory}/", entries, n_cols, "S3Prefix", channel, "text/csv")
        return self._stage(local)
