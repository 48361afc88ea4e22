"""``HyperparameterTuner`` with the SageMaker SDK's interface: local tuning (``fmwals.tuning_local``) on the
local back ends, a CreateHyperParameterTuningJob on SageMaker. The objective may be any metric the container
prints (``test:rmse``, ``test:binary_classification_accuracy``, ...): the metric definitions come from the
container's own regexes unless given."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from fmwals import hyperparams, jobs
from fmwals.algorithms import WALS, FactorizationMachines
from fmwals.backends import backend_for_endpoint
from fmwals.backends.engines import is_local
from fmwals.backends.sagemaker import SageMakerBackend
from fmwals.estimator import Estimator
from fmwals.inputs import Inputs, feature_dim_of, normalize
from fmwals.parameter import CategoricalParameter, IntegerParameter, Range, parse_range
from fmwals.predictor import Predictor
from fmwals.tuning_local import LocalTuningJob

STRATEGIES = ("Bayesian", "Random", "Grid", "Hyperband")
TUNING_JOB_NAME_MAX_LENGTH = 32


class WarmStartTypes(Enum):
    IDENTICAL_DATA_AND_ALGORITHM = "IdenticalDataAndAlgorithm"
    TRANSFER_LEARNING = "TransferLearning"


@dataclass
class WarmStartConfig:
    """Start a tuning job from what ``parents`` (earlier tuning jobs) learnt."""

    warm_start_type: WarmStartTypes | str = WarmStartTypes.IDENTICAL_DATA_AND_ALGORITHM
    parents: set[str] = field(default_factory=set)

    def to_input_req(self) -> dict[str, Any]:
        kind = WarmStartTypes(self.warm_start_type).value
        return {
            "WarmStartType": kind,
            "ParentHyperParameterTuningJobs": [
                {"HyperParameterTuningJobName": p} for p in sorted(self.parents)
            ],
        }


class HyperparameterTuner:
    """Runs up to ``max_jobs`` training jobs of ``estimator``, ``max_parallel_jobs`` at a time, searching
    ``hyperparameter_ranges`` for the best ``objective_metric_name``."""

    def __init__(
        self,
        estimator: Estimator,
        objective_metric_name: str,
        hyperparameter_ranges: dict[str, Range],
        metric_definitions: list[dict[str, str]] | None = None,
        strategy: str = "Bayesian",
        objective_type: str = "Maximize",
        max_jobs: int | None = None,
        max_parallel_jobs: int = 1,
        tags: list[dict[str, str]] | None = None,
        base_tuning_job_name: str | None = None,
        warm_start_config: WarmStartConfig | None = None,
        early_stopping_type: str = "Off",
        estimator_name: str | None = None,
        random_seed: int | None = None,
    ) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"strategy={strategy!r}: expected one of {', '.join(STRATEGIES)}")
        if objective_type not in ("Maximize", "Minimize"):
            raise ValueError(f"objective_type={objective_type!r}: expected 'Maximize' or 'Minimize'")
        if early_stopping_type not in ("Off", "Auto"):
            raise ValueError(f"early_stopping_type={early_stopping_type!r}: expected 'Off' or 'Auto'")
        if strategy == "Hyperband" and early_stopping_type == "Auto":
            raise ValueError("the Hyperband strategy stops jobs itself: leave early_stopping_type='Off'")
        if max_parallel_jobs < 1:
            raise ValueError("max_parallel_jobs must be at least 1")
        self.estimator = estimator
        self.objective_metric_name = objective_metric_name
        self.hyperparameter_ranges_ = dict(hyperparameter_ranges)
        self.metric_definitions = metric_definitions or estimator._metric_definitions()
        self.strategy = strategy
        self.objective_type = objective_type
        self.max_jobs = max_jobs if max_jobs is not None else (0 if strategy == "Grid" else 1)
        self.max_parallel_jobs = max_parallel_jobs
        self.tags = tags
        self.base_tuning_job_name = base_tuning_job_name
        self.warm_start_config = warm_start_config
        self.early_stopping_type = early_stopping_type
        self.estimator_name = estimator_name
        self.random_seed = random_seed
        self.latest_tuning_job: str | None = None
        self._local_job: LocalTuningJob | None = None
        self._check()

    def _check(self) -> None:
        names = [d["Name"] for d in self.metric_definitions]
        if self.objective_metric_name not in names:
            raise ValueError(
                f"objective_metric_name={self.objective_metric_name!r} is not a metric the "
                f"training jobs report; the metric definitions name: {', '.join(names)}"
            )
        for name, parameter in self.hyperparameter_ranges_.items():
            bounds = (
                parameter.values
                if isinstance(parameter, CategoricalParameter)
                else [parameter.min_value, parameter.max_value]
            )
            for bound in bounds:
                hyperparams.check_partial({**self.estimator._hyperparameters, name: bound})

    # --- request shapes ------------------------------------------------------------------------------

    def hyperparameter_ranges(self) -> dict[str, list[dict[str, Any]]]:
        """The ranges as CreateHyperParameterTuningJob's ParameterRanges."""
        groups: dict[str, list[dict[str, Any]]] = {
            "ContinuousParameterRanges": [],
            "IntegerParameterRanges": [],
            "CategoricalParameterRanges": [],
        }
        for name, parameter in self.hyperparameter_ranges_.items():
            kind = (
                "Categorical"
                if isinstance(parameter, CategoricalParameter)
                else "Integer"
                if isinstance(parameter, IntegerParameter)
                else "Continuous"
            )
            groups[f"{kind}ParameterRanges"].append(parameter.as_tuning_range(name))
        return groups

    def describe_request(
        self, name: str, training_definition: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The CreateHyperParameterTuningJob request (its TrainingJobDefinition from the estimator)."""
        config: dict[str, Any] = {
            "Strategy": self.strategy,
            "HyperParameterTuningJobObjective": {
                "Type": self.objective_type,
                "MetricName": self.objective_metric_name,
            },
            "ResourceLimits": {"MaxParallelTrainingJobs": self.max_parallel_jobs},
            "ParameterRanges": self.hyperparameter_ranges(),
            "TrainingJobEarlyStoppingType": self.early_stopping_type,
        }
        if self.max_jobs:
            config["ResourceLimits"]["MaxNumberOfTrainingJobs"] = self.max_jobs
        if self.random_seed is not None:
            config["RandomSeed"] = self.random_seed
        request: dict[str, Any] = {
            "HyperParameterTuningJobName": name,
            "HyperParameterTuningJobConfig": config,
        }
        if training_definition is not None:
            request["TrainingJobDefinition"] = training_definition
        if self.warm_start_config is not None:
            request["WarmStartConfig"] = self.warm_start_config.to_input_req()
        if self.tags:
            request["Tags"] = list(self.tags)
        return request

    def training_definition(self, name: str, inputs: Inputs) -> dict[str, Any]:
        backend = self.estimator.backend
        request = self.estimator.training_request(name, backend.stage_inputs(normalize(inputs), name))
        static = {
            k: v for k, v in request.pop("HyperParameters").items() if k not in self.hyperparameter_ranges_
        }
        for key in ("TrainingJobName", "Tags"):
            request.pop(key, None)
        return {"StaticHyperParameters": static, **request}

    # --- running -------------------------------------------------------------------------------------

    @property
    def _local(self) -> bool:
        return is_local(self.estimator.instance_type)

    def _sagemaker(self) -> SageMakerBackend:
        return SageMakerBackend(self.estimator.sagemaker_session)

    def fit(
        self,
        inputs: Inputs = None,
        job_name: str | None = None,
        include_cls_metadata: bool = False,
        wait: bool = True,
        **kwargs: Any,
    ) -> None:
        """Start the tuning job on ``inputs`` (anything ``Estimator.fit`` takes); with ``wait``, block until
        every training job has ended."""
        if kwargs.get("mini_batch_size") is not None:
            self.estimator.set_hyperparameters(mini_batch_size=kwargs["mini_batch_size"])
        feature_dim = feature_dim_of(inputs)
        if feature_dim is not None and self.estimator.algorithm == "fm":
            self.estimator.set_hyperparameters(feature_dim=feature_dim)
        hyperparams.check_complete(
            {
                **self.estimator._hyperparameters,
                **{
                    n: (r.values[0] if isinstance(r, CategoricalParameter) else r.min_value)
                    for n, r in self.hyperparameter_ranges_.items()
                },
            }
        )
        base = self.base_tuning_job_name or self.estimator.algorithm
        name = jobs.check_name(job_name) if job_name else jobs.unique_name(base, TUNING_JOB_NAME_MAX_LENGTH)
        if self._local and jobs.exists("tuning", name):
            raise ValueError(f"a tuning job named {name!r} already exists: choose another job_name")
        request = self.describe_request(name, self.training_definition(name, inputs))
        if self._local:
            self._local_job = LocalTuningJob(
                request, self.estimator, self.hyperparameter_ranges_, self.metric_definitions, inputs
            )
        else:
            self._sagemaker().create_tuning_job(request)
        self.latest_tuning_job = name
        if wait:
            self.wait()

    def _name(self) -> str:
        if self.latest_tuning_job is None:
            raise ValueError("no tuning job yet: call fit() (or attach()) first")
        return self.latest_tuning_job

    def wait(self) -> None:
        """Block until the latest tuning job ends."""
        if self._local_job is not None:
            self._local_job.wait()
        elif not self._local:
            self._sagemaker().wait_for_tuning_job(self._name())

    def stop_tuning_job(self) -> None:
        """Stop the latest tuning job (running training jobs are stopped too)."""
        if self._local_job is not None:
            self._local_job.stop()
        elif not self._local:
            self._sagemaker().stop_tuning_job(self._name())

    def describe(self) -> dict[str, Any]:
        """DescribeHyperParameterTuningJob's response (the local record, with ``TrainingJobs``)."""
        if self._local:
            return jobs.read("tuning", self._name())
        return dict(self._sagemaker().describe_tuning_job(self._name()))

    def training_job_summaries(self) -> list[dict[str, Any]]:
        """One HyperParameterTrainingJobSummary per training job of the latest tuning job."""
        if self._local:
            return list(jobs.read("tuning", self._name())["TrainingJobs"])
        return list(self._sagemaker().tuning_training_jobs(self._name()))

    def best_training_job(self) -> str:
        """The name of the best completed training job."""
        best = self.describe().get("BestTrainingJob")
        if not best:
            raise ValueError(
                f"tuning job {self._name()} has no completed training job with an objective value"
            )
        return str(best["TrainingJobName"])

    def best_estimator(self, best_training_job: str | None = None) -> Estimator:
        """An estimator attached to the best training job (ready to ``deploy``)."""
        name = best_training_job or self.best_training_job()
        return type(self.estimator).attach(name, self.estimator.sagemaker_session)

    def deploy(
        self, initial_instance_count: int, instance_type: str, endpoint_name: str | None = None, **kwargs: Any
    ) -> Predictor:
        """Deploy the best training job's model."""
        return self.best_estimator().deploy(
            initial_instance_count, instance_type, endpoint_name=endpoint_name, **kwargs
        )

    def delete_endpoint(self, endpoint_name: str | None = None) -> None:
        name = endpoint_name or self.best_training_job()
        backend_for_endpoint(name, self.estimator.sagemaker_session).delete_endpoint(name)

    def analytics(self) -> Any:
        """One row per training job: its tuned hyperparameters, status and final objective value
        (``FinalObjectiveValue``); a pandas DataFrame when pandas is installed, else a list of dicts."""
        rows = []
        for summary in self.training_job_summaries():
            row: dict[str, Any] = dict(summary.get("TunedHyperParameters", {}))
            row.update(
                TrainingJobName=summary["TrainingJobName"],
                TrainingJobStatus=summary["TrainingJobStatus"],
                FinalObjectiveValue=summary.get("FinalHyperParameterTuningJobObjectiveMetric", {}).get(
                    "Value"
                ),
                TrainingStartTime=summary.get("TrainingStartTime"),
                TrainingEndTime=summary.get("TrainingEndTime"),
            )
            rows.append(row)
        try:
            import pandas as pd
        except ImportError:
            return rows
        return pd.DataFrame(rows)

    # --- attach and warm start -----------------------------------------------------------------------

    @classmethod
    def attach(
        cls,
        tuning_job_name: str,
        sagemaker_session: Any = None,
        job_details: dict[str, Any] | None = None,
        estimator_cls: type[Estimator] | None = None,
    ) -> HyperparameterTuner:
        """A tuner bound to an existing tuning job (a local record, or a SageMaker tuning job)."""
        if job_details is None:
            if jobs.exists("tuning", tuning_job_name):
                job_details = jobs.read("tuning", tuning_job_name)
            else:
                job_details = SageMakerBackend(sagemaker_session).describe_tuning_job(tuning_job_name)
        config, definition = (
            job_details["HyperParameterTuningJobConfig"],
            job_details["TrainingJobDefinition"],
        )
        description = {**definition, "HyperParameters": definition.get("StaticHyperParameters", {})}
        estimator = (estimator_cls or _estimator_class(description["HyperParameters"])).from_description(
            description, sagemaker_session
        )
        ranges = dict(
            parse_range(entry, kind[: -len("ParameterRanges")])
            for kind, entries in config["ParameterRanges"].items()
            for entry in entries
        )
        objective = config["HyperParameterTuningJobObjective"]
        limits = config["ResourceLimits"]
        warm = job_details.get("WarmStartConfig")
        tuner = cls(
            estimator,
            objective["MetricName"],
            ranges,
            metric_definitions=estimator._metric_definitions(),
            strategy=config["Strategy"],
            objective_type=objective["Type"],
            max_jobs=limits.get("MaxNumberOfTrainingJobs"),
            max_parallel_jobs=limits["MaxParallelTrainingJobs"],
            early_stopping_type=config.get("TrainingJobEarlyStoppingType", "Off"),
            random_seed=config.get("RandomSeed"),
            warm_start_config=None
            if not warm
            else WarmStartConfig(
                warm["WarmStartType"],
                {p["HyperParameterTuningJobName"] for p in warm["ParentHyperParameterTuningJobs"]},
            ),
        )
        tuner.latest_tuning_job = tuning_job_name
        return tuner

    def _warm_started(
        self, kind: WarmStartTypes, parents: set[str] | None, estimator: Estimator | None
    ) -> HyperparameterTuner:
        return HyperparameterTuner(
            estimator or self.estimator,
            self.objective_metric_name,
            self.hyperparameter_ranges_,
            self.metric_definitions,
            self.strategy,
            self.objective_type,
            self.max_jobs,
            self.max_parallel_jobs,
            self.tags,
            self.base_tuning_job_name,
            WarmStartConfig(kind, {self._name(), *(parents or set())}),
            self.early_stopping_type,
            random_seed=self.random_seed,
        )

    def identical_dataset_and_algorithm_tuner(
        self, additional_parents: set[str] | None = None
    ) -> HyperparameterTuner:
        """A new tuner warm-started from this one (and ``additional_parents``) on the same data."""
        return self._warm_started(WarmStartTypes.IDENTICAL_DATA_AND_ALGORITHM, additional_parents, None)

    def transfer_learning_tuner(
        self, additional_parents: set[str] | None = None, estimator: Estimator | None = None
    ) -> HyperparameterTuner:
        """A new tuner warm-started from this one, for other data or another estimator configuration."""
        return self._warm_started(WarmStartTypes.TRANSFER_LEARNING, additional_parents, estimator)


def _estimator_class(hyperparameters: dict[str, str]) -> type[Estimator]:
    return WALS if hyperparams.algorithm_of(hyperparameters) == "wals" else FactorizationMachines
