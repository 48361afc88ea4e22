"""The ``train`` entry point: contract -> hyperparameters -> channels -> fit -> artifact, or a failure file.

A user error (``ClientError``: bad hyperparameter, bad data, missing channel, diverged training, a model that
cannot fit in memory, a checkpoint that cannot be resumed) writes its one-line reason first in
``output/failure`` and exits 1. Any other exception is our bug: ``output/failure`` gets the reason and the
traceback, exit 2. SIGTERM stops the job (``container.checkpointing``): ``output/failure`` says where it stopped
and which checkpoint a restarted job resumes, exit 143 (128 + SIGTERM, as a process the signal ended). Success
exits 0.
"""

from __future__ import annotations

import logging
import signal
import sys
import time
import traceback
from typing import TYPE_CHECKING, Any

from algorithm.checkpoint import Checkpoints, StopFlag, TrainingStopped
from algorithm.hyperparameters import HyperparameterError
from algorithm.schemas import parse_for_algorithm
from container.checkpointing import job_checkpoints, stop_on_sigterm
from container.config import ChannelConfig, read_hyperparameters, read_input_data_config, read_resource_config
from container.errors import ClientError
from container.numba_cache import writable_cache
from container.paths import SageMakerPaths

if TYPE_CHECKING:
    from container.cluster import ClusterSpec

log = logging.getLogger("train")

EXIT_OK, EXIT_CLIENT_ERROR, EXIT_INTERNAL_ERROR = 0, 1, 2
EXIT_STOPPED = 128 + signal.SIGTERM


def configure_logging() -> None:
    """Log lines like the built-in: ``[MM/DD/YYYY HH:MM:SS INFO <thread>] message`` on stdout."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("[%(asctime)s %(levelname)s %(thread)d] %(message)s",
                                           datefmt="%m/%d/%Y %H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


def write_failure(paths: SageMakerPaths, text: str) -> None:
    """Write ``output/failure`` unless an earlier writer already explained the failure."""
    paths.output_dir.mkdir(parents=True, exist_ok=True)
    if not paths.failure_file.exists():
        paths.failure_file.write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")


def run(paths: SageMakerPaths, stop: StopFlag) -> None:
    """Train the algorithm the hyperparameters select, honouring ``stop``; raises ClientError for anything the
    user must fix, TrainingStopped when stopped."""
    started = time.monotonic()
    writable_cache()  # before numba is imported
    raw = read_hyperparameters(paths)
    log.info("Hyperparameters from %s: %s", paths.hyperparameters_file, raw)
    try:
        algorithm, hyperparameters = parse_for_algorithm(raw)
    except HyperparameterError as err:
        raise ClientError(f"{err} (in {paths.hyperparameters_file})") from None
    log.info("Final configuration (%s): %s", algorithm, hyperparameters)
    channels = read_input_data_config(paths)
    resources = read_resource_config(paths)
    checkpoints = job_checkpoints(paths, hyperparameters, stop)
    if len(resources.hosts) > 1:
        _train_on_hosts(paths, algorithm, hyperparameters, channels, checkpoints)
        log.info("Training finished in %.1f s", time.monotonic() - started)
        return
    from container.kernel_compilation import logged_compilation  # imports numba: only once the job is valid

    with logged_compilation(log):
        if algorithm == "fm":
            from container.fm_training import train_fm

            train_fm(paths, hyperparameters, channels, resources.current_host, checkpoints)
        else:
            from container.wals_training import train_wals

            train_wals(paths, hyperparameters, channels, resources.current_host, checkpoints)
    log.info("Training finished in %.1f s; model written to %s", time.monotonic() - started, paths.model_dir)


def _train_on_hosts(paths: SageMakerPaths, algorithm: str, hyperparameters: dict[str, Any],
                    channels: dict[str, ChannelConfig], checkpoints: Checkpoints) -> None:
    """Several hosts train one model (docs/distributed.md): the first drives the cluster and writes ``model/``,
    the others serve as its workers until it ends the job."""
    from container import cluster
    from container.kernel_compilation import logged_compilation

    spec = cluster.read_cluster_spec(paths)
    log.info("Host %s (%d of %d: %s) on %s, address %s", spec.current_host, spec.rank + 1, len(spec.hosts),
             "drives the job" if spec.is_driver else f"a worker of {spec.hosts[0]}", spec.interface, spec.address)
    with logged_compilation(log):
        if not spec.is_driver:
            _serve_as_worker(spec, checkpoints)
            return
        with cluster.driver(spec) as hosts:
            if algorithm == "fm":
                from container.fm_distributed import train_fm_distributed

                train_fm_distributed(hosts, paths, hyperparameters, channels, checkpoints)
            else:
                from container.wals_distributed import train_wals_distributed

                train_wals_distributed(hosts, paths, hyperparameters, channels, checkpoints)
    log.info("Model written to %s", paths.model_dir)




def _serve_as_worker(spec: ClusterSpec, checkpoints: Checkpoints) -> None:
    """Serve the first host's job (``cluster.serve_as_worker``). SIGTERM (SageMaker sends it to every host) is
    deferred: the host serves on until the first host, stopping between two rounds or sweeps and writing the
    job's checkpoint, ends the job; the host then ends with ``TrainingStopped``."""
    from container import cluster

    with checkpoints.stop.deferred():
        try:
            cluster.serve_as_worker(spec)
        except ClientError as err:
            if not checkpoints.stop_requested:
                raise
            where = f"on host {spec.current_host} ({' '.join(str(err).split())})"
            raise TrainingStopped(where, None, f"the first host {spec.hosts[0]} writes the job's checkpoints (when "
                                  "checkpoints are on): a job started again on every host resumes its last one"
                                  ) from None


def main(argv: list[str] | None = None) -> int:
    """Run training under ``$SAGEMAKER_BASE_DIR`` and return the process exit code."""
    del argv  # SageMaker passes "train"; there are no options.
    configure_logging()
    paths = SageMakerPaths.from_env()
    stop = StopFlag()
    stop_on_sigterm(stop)
    try:
        run(paths, stop)
    except TrainingStopped as stopped:
        saved = (f"checkpoint {stopped.checkpoint} written: a job started with the same checkpoint directory "
                 "resumes from it" if stopped.checkpoint is not None else stopped.resumes or
                 f"no checkpoint written ({paths.checkpoint_dir} does not exist, or training had not started): a "
                 "job started again trains from the beginning")
        reason = f"Training stopped by SIGTERM {stopped.where}; {saved}"
        log.warning(reason)
        write_failure(paths, reason)
        return EXIT_STOPPED
    except ClientError as err:
        reason = " ".join(str(err).split())
        log.error("Training failed: %s", reason)
        write_failure(paths, reason)
        return EXIT_CLIENT_ERROR
    except MemoryError:
        reason = ("Out of memory while training: use fewer num_factors, a smaller feature_dim or an instance "
                  "with more memory.")
        log.error(reason)
        write_failure(paths, reason)
        return EXIT_CLIENT_ERROR
    except Exception as err:  # our bug: keep the traceback for whoever reads the failure reason
        trace = traceback.format_exc()
        log.error("Internal error: %s\n%s", err, trace)
        write_failure(paths, f"Internal error: {type(err).__name__}: {err}\n{trace}")
        return EXIT_INTERNAL_ERROR
    return EXIT_OK
