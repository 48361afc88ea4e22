"""The hyperparameter tables of each algorithm: the one source of truth for the estimators, train, docs and
the wrapper.

FM names, defaults and allowed values follow SageMaker's built-in Factorization Machines, except the optimizer
a job leaves unset (``algorithm.optimizer_defaults``); WALS names follow TensorFlow's
``WALSMatrixFactorization``. Each table also holds the tuning presets (``Param.tune``, ``TUNING_FIXED``).
Stdlib only.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from algorithm.hyperparameters import HyperparameterError, Param, Schema, make_schema, parse_hyperparameters
from algorithm.optimizer_defaults import (
    BUILTIN_OPTIMIZER,
    BUILTIN_OPTIMIZER_SETTINGS,
    DEFAULT_OPTIMIZER,
    OPTIMIZER_DEFAULTS,
    PREDICTOR_TYPE_DEFAULTS,
    optimizer_choice,
    resolve_optimizer_defaults,
)

log = logging.getLogger(__name__)

ALGORITHMS = ("fm", "wals")
_ALGORITHM = Param(
    "algorithm", str, "Which model to train: fm (Factorization Machines, the default) or wals.",
    default="fm", choices=ALGORITHMS,
)
# Settings the training job reads and the estimators do not take (they describe how the job runs).
DATA_LOADING = ("auto", "memory", "stream")
_DATA_LOADING = Param(
    "data_loading", str, "How the job holds the training data: memory (decoded into memory), stream (read in "
    "bounded chunks, kept in memory-mapped files on the training volume) or auto (memory when the data fits "
    "the memory limit, else stream; the log says which and why).", default="auto", choices=DATA_LOADING,
)
_PROGRESS_INTERVAL = Param(
    "progress_interval_seconds", float, "Seconds between the #progress_metric and #throughput_metric lines "
    "logged within an epoch while streaming (every epoch's end logs them too).", default=60.0, low=0,
    low_open=True,
)
_CHECKPOINT_INTERVAL = Param(
    "checkpoint_interval_minutes", float,
    "With checkpoints on (the job has a CheckpointConfig, i.e. /opt/ml/checkpoints exists), the longest time "
    "between two checkpoints within an epoch (FM) or sweep (WALS); a checkpoint is also written after every "
    "epoch or sweep and when the job is stopped (SIGTERM). 0: at epoch or sweep ends and on SIGTERM only. "
    "On several hosts: FM between two rounds, WALS at sweep ends only.",
    default=10.0, low=0,
)
_SYNC_EVERY = Param(
    "sync_every", int, "Training on several hosts (instance_count > 1): the mini-batches each host trains between "
    "two combinations of the hot features' weights (those a round's rows use at least 10 times) and of a slice of "
    "the other used features' (each once an epoch). Larger values cost fewer rounds but let the hosts' steps "
    "pile up on the frequent features (CTR bench set, two hosts: one host's AUC within 0.001 at 5 and 10, 0.0028 "
    "behind it at 20; docs/distributed.md). 0: once per epoch (unstable there). One host: no effect.",
    default=10, low=0,
)
# Settings of the training job rather than of the estimator (train reads them; the estimators take the rest).
JOB_SETTINGS = ("algorithm", "data_loading", "progress_interval_seconds", "checkpoint_interval_minutes",
                "sync_every")
_INIT_METHODS = ("normal", "uniform", "constant")
# FM's tuning presets (fmwals.preset_ranges): a search space to run as is, log-scaled around AdaGrad's defaults
# for both predictor types, with what matters most on the benchmark sets (docs/benchmarks.md). The ranges are
# AdaGrad's, so the presets also fix the optimizer (TUNING_FIXED): a job that sets a rate but no optimizer
# trains with the built-in's Adam.
_FM_TUNE: dict[str, tuple[float, float, str]] = {
    "epochs": (5, 50, "Logarithmic"),
    "eps": (3e-5, 0.01, "Logarithmic"),
    "factors_lr": (0.02, 1.0, "Logarithmic"),
    "factors_wd": (3e-4, 0.03, "Logarithmic"),
}


def _optimizer_defaults_text(name: str) -> str:
    values = []
    for opt, table in OPTIMIZER_DEFAULTS.items():
        if name in table:
            overrides = [f"{special[name]:g} for {predictor_type}"
                         for (o, predictor_type), special in PREDICTOR_TYPE_DEFAULTS.items()
                         if o == opt and name in special]
            values.append(f"{opt} {table[name]:g}" + (f" ({', '.join(overrides)})" if overrides else ""))
    return "Unset: the optimizer's default (" + ", ".join(values) + ")."


def _group(prefix: str, sigma: float | None) -> tuple[Param, ...]:
    what = {"bias": "the bias w0", "linear": "the linear weights w", "factors": "the factors V"}[prefix]
    return (
        Param(f"{prefix}_lr", float, f"Learning rate of {what}. {_optimizer_defaults_text(f'{prefix}_lr')}",
              low=0, tune=_FM_TUNE.get(f"{prefix}_lr")),
        Param(f"{prefix}_wd", float, f"L2 weight decay of {what}. {_optimizer_defaults_text(f'{prefix}_wd')}",
              low=0, tune=_FM_TUNE.get(f"{prefix}_wd")),
        Param(f"{prefix}_init_method", str, f"Initialization of {what}.", default="normal",
              choices=_INIT_METHODS),
        Param(f"{prefix}_init_sigma", float, f"Standard deviation of {what} when init_method=normal."
              + (f" {_optimizer_defaults_text(f'{prefix}_init_sigma')}" if sigma is None else ""),
              default=sigma, low=0),
        Param(f"{prefix}_init_scale", float, f"Range [-s, s] of {what} when init_method=uniform.", low=0),
        Param(f"{prefix}_init_value", float, f"Value of {what} when init_method=constant."),
    )


_COMMON_RUNTIME = (
    Param("seed", int, "Random seed. A given seed and num_threads give the same model (FM on more than one "
          "thread: only with deterministic=true).", default=0, low=0),
    Param("num_threads", int, "Threads to train with; 0 means the cores usable in the container.",
          default=0, low=0),
    Param("early_stopping_patience", int,
          "Stop after this many epochs without improvement of the test metric (needs a test channel); "
          "0 disables early stopping.", default=0, low=0),
    Param("early_stopping_tolerance", float,
          "Smallest relative improvement of the test metric that counts as improvement.", default=0.0, low=0),
)

FM_SCHEMA: Schema = make_schema(
    _ALGORITHM,
    Param("feature_dim", int, "Number of features (columns) of the input.", required=True, low=0, low_open=True),
    Param("num_factors", int, "Dimension k of the factor vectors.", required=True, low=0, low_open=True),
    Param("predictor_type", str, "binary_classifier (log loss, score is a probability) or regressor.",
          required=True, choices=("binary_classifier", "regressor")),
    Param("epochs", int, "Passes over the training data.", default=1, low=0, low_open=True,
          tune=_FM_TUNE["epochs"]),
    Param("mini_batch_size", int, "Rows per optimizer step.", default=1000, low=0, low_open=True),
    Param("clip_gradient", float, "Clip each gradient element to [-c, c].", low=0, low_open=True),
    Param("eps", float, f"Epsilon of the Adam/AdaGrad denominators. {_optimizer_defaults_text('eps')}",
          low=0, low_open=True, tune=_FM_TUNE["eps"]),
    Param("rescale_grad", float, "Multiply gradients by this (default 1 / rows in the batch).",
          low=0, low_open=True),
    *_group("bias", 0.01),
    *_group("linear", 0.01),
    *_group("factors", None),
    Param("use_bias", bool, "Learn the global bias w0.", default=True),
    Param("use_linear", bool, "Learn the linear weights w.", default=True),
    Param("optimizer", str, f"Optimizer: adam, sgd, adagrad or ftrl. Its default learning rates, weight decays, "
          f"eps and factors_init_sigma apply to those left unset. Unset: {DEFAULT_OPTIMIZER} (unlike the built-in), "
          f"which learns far better models than the built-in's {BUILTIN_OPTIMIZER} at its default rates (after 10 "
          "epochs on the bench sets: clicks AUC 0.783 against 0.726, ratings RMSE 0.795 against 0.949; "
          "docs/benchmarks.md); but "
          f"when any of the built-in's optimizer settings ({', '.join(BUILTIN_OPTIMIZER_SETTINGS)}) is set, "
          f"{BUILTIN_OPTIMIZER}, the built-in's optimizer, so that those values mean what they mean for the "
          f"built-in. optimizer={BUILTIN_OPTIMIZER} trains as the built-in does.",
          choices=("adam", "sgd", "adagrad", "ftrl")),
    Param("adagrad_state", str,
          "AdaGrad's second moment of the factors: element (one per factor of each feature) or row (one shared by "
          "the k factors of a feature, accumulating the mean of their squared gradients, as row-wise AdaGrad "
          "keeps it): the optimizer state takes 2 floats per feature instead of 1 + k (39-47% less memory for "
          "model and state on the bench sets) at the same quality; CTR epochs 6-14% shorter at k=32, not "
          "shown shorter at k=8 (docs/benchmarks.md). Other optimizers ignore it.", default="element",
          choices=("element", "row")),
    Param("positive_class_weight", float, "Loss weight of label 1 rows (binary_classifier only).",
          default=1.0, low=0, low_open=True),
    *_COMMON_RUNTIME,
    Param("deterministic", bool,
          "Train with num_threads > 1 in fixed order (each batch split over the threads, sums in thread "
          "order): the same seed and num_threads give the same model, at lower speed. False: threads run "
          "whole batches and update the weights lock-free (Hogwild), so repeats differ slightly. One thread is "
          "always deterministic.", default=False),
    _DATA_LOADING,
    _PROGRESS_INTERVAL,
    Param("stream_buffer_mb", int,
          "Memory (MiB) for the data in hand when streaming: blocks of a quarter of it are decoded, shuffled "
          "and trained on one after another. Also the block size of shuffle=blocks.",
          default=256, low=4),
    Param("shuffle", str,
          "Row order of each epoch: full (a permutation of every row; in memory only), blocks (the blocks of "
          "stream_buffer_mb / 4 in a shuffled order, the rows within each block shuffled) or runs (as blocks, "
          "but within each block runs of 32 consecutive stored rows in a shuffled order, which trains faster "
          "on rows stored in random order and worse on rows sorted by some key). Streaming uses blocks for "
          "full.", default="full", choices=("full", "blocks", "runs")),
    _CHECKPOINT_INTERVAL,
    _SYNC_EVERY,
)

WALS_SCHEMA: Schema = make_schema(
    _ALGORITHM,
    Param("num_rows", int, "Number of rows of the matrix; inferred from the data when unset.",
          low=0, low_open=True),
    Param("num_cols", int, "Number of columns of the matrix; inferred from the data when unset.",
          low=0, low_open=True),
    Param("embedding_dimension", int, "Dimension of the row and column factors.", required=True,
          low=0, low_open=True, tune=(2, 512, "Logarithmic")),
    Param("unobserved_weight", float, "Weight w0 of every unobserved entry.", default=0.1, low=0,
          tune=(1e-4, 10.0, "Logarithmic")),
    Param("regularization_coeff", float, "L2 coefficient lambda of the factors (lambda*I is always added).",
          default=0.01, low=0, tune=(1e-6, 100.0, "Logarithmic")),
    Param("row_init", str, "Row factor initialization: random, or model (from the model channel).",
          default="random", choices=("random", "model")),
    Param("col_init", str, "Column factor initialization: random, or model (from the model channel).",
          default="random", choices=("random", "model")),
    Param("row_weights", float, "Scalar row weight (per-row vectors come from a row_weights channel).",
          default=1.0, low=0),
    Param("col_weights", float, "Scalar column weight (per-column vectors come from a col_weights channel).",
          default=1.0, low=0),
    Param("max_sweeps", int, "Sweeps (one row pass plus one column pass each).", default=10, low=0,
          low_open=True, tune=(1, 100, "Linear")),
    Param("solver", str, "Per-row solve: cholesky (exact) or cg (conjugate gradient).", default="cholesky",
          choices=("cholesky", "cg")),
    Param("cg_steps", int, "Conjugate-gradient steps per row when solver=cg.", default=3, low=0, low_open=True),
    Param("alpha", float, "Implicit-feedback confidence 1 + alpha*value; unset means TF's explicit objective.",
          low=0, low_open=True, tune=(0.1, 100.0, "Logarithmic")),
    Param("eval_k", int, "Cut-off k of precision@k, MAP@k and NDCG@k on the test channel.", default=10,
          low=0, low_open=True),
    *_COMMON_RUNTIME,
    _DATA_LOADING,
    _CHECKPOINT_INTERVAL,
)

SCHEMAS: dict[str, Schema] = {"fm": FM_SCHEMA, "wals": WALS_SCHEMA}
# Values the tuning presets fix besides their ranges (see _FM_TUNE).
TUNING_FIXED: dict[str, dict[str, str]] = {"fm": {"optimizer": DEFAULT_OPTIMIZER}, "wals": {}}


def combination_problems(values: Mapping[str, Any]) -> list[str]:
    """What is wrong with values that are each valid but do not go together (a setting that would be silently
    ignored is refused)."""
    weight = values.get("positive_class_weight", 1.0)
    if values.get("predictor_type") == "regressor" and weight != 1.0:
        return [f"positive_class_weight={weight} applies to predictor_type=binary_classifier only: leave it out "
                "(or at 1) for predictor_type=regressor"]
    return []


def parse_for_algorithm(raw: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Pick the schema from ``raw['algorithm']`` (default ``fm``) and parse everything against it; FM's optimizer
    and its unset values are resolved (``resolve_optimizer_defaults``), and an unset optimizer's choice logged."""
    try:
        algorithm = _ALGORITHM.parse(raw.get("algorithm", "fm"))
    except (ValueError, TypeError):
        raise HyperparameterError(
            [f"algorithm={raw.get('algorithm')!r} is not valid: expected {_ALGORITHM.allowed()}"]
        ) from None
    hyperparameters = parse_hyperparameters(raw, SCHEMAS[algorithm])
    problems = combination_problems(hyperparameters)
    if problems:
        raise HyperparameterError(problems)
    if algorithm == "fm":
        choice = optimizer_choice(hyperparameters)
        if choice is not None:
            log.info("%s", choice)
        hyperparameters = resolve_optimizer_defaults(hyperparameters)
    return algorithm, hyperparameters
