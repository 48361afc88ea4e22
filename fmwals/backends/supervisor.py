"""Runs one local training job to its end, detached from the client that started it: ``python -m
fmwals.backends.supervisor <job-name>``.

It writes the job's /opt/ml config files (one tree per host when ``InstanceCount > 1``:
``fmwals.backends.hosts``), downloads ``s3://`` channels, feeds Pipe-mode FIFOs, runs ``train`` through the
job's engine, appends its output to the job's ``log.txt``, enforces ``MaxRuntimeInSeconds`` (SIGTERM, then
SIGKILL after a grace period), stops on SIGTERM (a stop request), packs ``model.tar.gz`` and records the final
status in the job's record, the failure file's text included.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import tarfile
import threading
import time
from pathlib import Path
from typing import Any

from fmwals import jobs
from fmwals.backends.engine import HostJob, Running
from fmwals.backends.engines import engine_for
from fmwals.backends.hosts import HostsRun, opt_ml_dir, share, share_files
from fmwals.backends.hosts import failure_reason as hosts_failure_reason
from fmwals.backends.pipe import PipeFeeder
from fmwals.inputs import is_local, local_path
from fmwals.session import Session, download, upload

HOST = "algo-1"
STOP_GRACE_SECONDS = float(os.environ.get("FMWALS_STOP_GRACE_SECONDS", "20"))
FAILURE_TAIL_LINES = 20
STOP_POLL_SECONDS = 0.2


def write_config(
    opt_ml: Path, record: dict[str, Any], host: str = HOST, hosts: tuple[str, ...] = (HOST,), interface: str = "eth0"
) -> None:
    """hyperparameters.json, inputdataconfig.json and resourceconfig.json as SageMaker writes them for
    ``host`` of ``hosts``."""
    config = opt_ml / "input" / "config"
    config.mkdir(parents=True, exist_ok=True)
    default_mode = record["AlgorithmSpecification"].get("TrainingInputMode", "File")
    data_config = {}
    for channel in record.get("InputDataConfig", []):
        entry = {
            "TrainingInputMode": channel.get("InputMode", default_mode),
            "S3DistributionType": channel["DataSource"]["S3DataSource"]["S3DataDistributionType"],
        }
        for key in ("ContentType", "CompressionType", "RecordWrapperType"):
            if key in channel:
                entry[key] = channel[key]
        data_config[channel["ChannelName"]] = entry
    resources = {
        "current_host": host,
        "hosts": list(hosts),
        "network_interface_name": interface,
        "current_instance_type": record["ResourceConfig"]["InstanceType"],
    }
    for name, body in (
        ("hyperparameters.json", record.get("HyperParameters", {})),
        ("inputdataconfig.json", data_config),
        ("resourceconfig.json", resources),
    ):
        (config / name).write_text(json.dumps(body), encoding="utf-8")
    (opt_ml / "model").mkdir(exist_ok=True)
    (opt_ml / "output" / "data").mkdir(parents=True, exist_ok=True)


def channel_sources(job_dir: Path, record: dict[str, Any]) -> dict[str, tuple[Path, str, str | None]]:
    """Channel -> (local file or directory, input mode, S3 distribution type); ``s3://`` channels are
    downloaded first."""
    default_mode = record["AlgorithmSpecification"].get("TrainingInputMode", "File")
    sources = {}
    for channel in record.get("InputDataConfig", []):
        s3_source = channel["DataSource"]["S3DataSource"]
        name, uri = channel["ChannelName"], s3_source["S3Uri"]
        downloads = job_dir / "downloads" / name
        source = local_path(uri) if is_local(uri) else download(Session().s3_client, uri, downloads)
        sources[name] = (source, channel.get("InputMode", default_mode), s3_source.get("S3DataDistributionType"))
    return sources


def checkpoint_dir(record: dict[str, Any]) -> Path | None:
    """The host directory the job's ``CheckpointConfig.S3Uri`` names (a path or file:// URI; created), which the
    engine shows the container as /opt/ml/checkpoints; None without checkpoints."""
    uri = record.get("CheckpointConfig", {}).get("S3Uri")
    if not uri:
        return None
    directory = local_path(uri)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def pack_model(job_dir: Path, record: dict[str, Any]) -> str:
    """``model.tar.gz`` of the model directory, where OutputDataConfig says; returns its URI."""
    archive = job_dir / "model.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted((job_dir / "opt_ml" / "model").iterdir()):
            tar.add(path, arcname=path.name)
    output = record.get("OutputDataConfig", {}).get("S3OutputPath")
    if not output:
        return f"file://{archive}"
    if not is_local(output):
        return upload(
            Session().s3_client, archive, f"{output.rstrip('/')}/{record['TrainingJobName']}/output"
        )
    target = local_path(output) / record["TrainingJobName"] / "output" / "model.tar.gz"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(archive, target)
    return f"file://{target}"


def failure_reason(job_dir: Path, code: int) -> str:
    """The container's ``output/failure`` text, else the exit code and the log's last lines."""
    failure = job_dir / "opt_ml" / "output" / "failure"
    if failure.is_file() and failure.read_text(errors="replace").strip():
        return "AlgorithmError: " + failure.read_text(errors="replace").strip()
    tail = (job_dir / "log.txt").read_text(errors="replace").splitlines()[-FAILURE_TAIL_LINES:]
    return (
        f"AlgorithmError: train exited with code {code} and wrote no output/failure. Last lines:\n"
        + "\n".join(tail)
    )


class _Supervisor:
    def __init__(self, name: str) -> None:
        self.name = name
        self.record = jobs.read("jobs", name)
        self.job_dir = jobs.entity_dir("jobs", name)
        self.engine = engine_for(self.record["ResourceConfig"]["InstanceType"])
        self.running: Running | None = None
        self.hosts: list[HostJob] = []
        self.stop_reason: tuple[str, str] | None = None  # (secondary status, reason)
        self.feeders_stop = threading.Event()
        self.lock = threading.Lock()

    def request_stop(self, secondary: str, reason: str) -> None:
        """Terminate the job now, kill it after the grace period (from a signal handler or the timer)."""
        with self.lock:
            if self.stop_reason is None:
                self.stop_reason = (secondary, reason)
            if self.running is not None:
                self.running.terminate()
                killer = threading.Timer(STOP_GRACE_SECONDS, self.running.kill)
                killer.daemon = True
                killer.start()

    def _watch_stop_marker(self) -> None:
        marker = self.job_dir / jobs.STOP_MARKER
        while not marker.exists():
            time.sleep(STOP_POLL_SECONDS)
        self.request_stop("Stopped", "Stopped by request")

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.request_stop("Stopped", "Stopped by request"))
        threading.Thread(target=self._watch_stop_marker, daemon=True).start()
        count = int(self.record["ResourceConfig"]["InstanceCount"])
        hosts, interface = self.engine.host_names(count)
        jobs.update("jobs", self.name, SecondaryStatus="Downloading")
        sources = channel_sources(self.job_dir, self.record)
        for rank, host in enumerate(hosts):
            opt_ml = opt_ml_dir(self.job_dir, hosts, host)
            write_config(opt_ml, self.record, host, hosts, interface)
            shares = {n: share(src, distribution, rank, count) for n, (src, _, distribution) in sources.items()}
            for n, (_, mode, _) in sources.items():
                if mode == "Pipe":
                    PipeFeeder(opt_ml / "input" / "data", n, share_files(shares[n]), self.feeders_stop).start()
            files = {n: shares[n] for n, (_, mode, _) in sources.items() if mode != "Pipe"}
            self.hosts.append(HostJob(host, opt_ml, files))
        env = {"TRAINING_JOB_NAME": self.name, **self.record.get("Environment", {})}
        image = self.record["AlgorithmSpecification"]["TrainingImage"]
        checkpoints = checkpoint_dir(self.record)
        with self.lock:
            if self.stop_reason is None:
                if count == 1:
                    job = self.hosts[0]
                    self.running = self.engine.start_training(image, job.opt_ml, job.channels, env, self.name,
                                                              checkpoints)
                else:
                    self.running = self.engine.start_hosts(image, self.hosts, env, self.name, checkpoints)
        if self.running is None:
            return self.finish(None)
        jobs.update("jobs", self.name, SecondaryStatus="Training", TrainingStartTime=jobs.now())
        max_run = float(self.record.get("StoppingCondition", {}).get("MaxRuntimeInSeconds", 86400))
        timer = threading.Timer(
            max_run,
            self.request_stop,
            (
                "MaxRuntimeExceeded",
                (f"MaxRuntimeExceeded: training ran longer than max_run={max_run:g} s and was stopped"),
            ),
        )
        timer.daemon = True
        timer.start()
        with open(self.job_dir / "log.txt", "a", encoding="utf-8") as log:
            for line in self.running.lines():
                log.write(line)
                log.flush()
        code = self.running.wait()
        timer.cancel()
        self.finish(code)

    def _failure_reason(self, code: int) -> str:
        if isinstance(self.running, HostsRun):
            return hosts_failure_reason(self.hosts, self.running.codes)
        return failure_reason(self.job_dir, code)

    def finish(self, code: int | None) -> None:
        self.feeders_stop.set()
        end = {"TrainingEndTime": jobs.now()}
        if self.stop_reason is not None:
            secondary, reason = self.stop_reason
            jobs.update(
                "jobs",
                self.name,
                TrainingJobStatus="Stopped",
                SecondaryStatus=secondary,
                FailureReason=reason,
                **end,
            )
        elif code == 0:
            model = pack_model(self.job_dir, self.record)
            jobs.update(
                "jobs",
                self.name,
                TrainingJobStatus="Completed",
                SecondaryStatus="Completed",
                ModelArtifacts={"S3ModelArtifacts": model},
                **end,
            )
        else:
            jobs.update(
                "jobs",
                self.name,
                TrainingJobStatus="Failed",
                SecondaryStatus="Failed",
                FailureReason=self._failure_reason(code if code is not None else -1),
                **end,
            )


def main(argv: list[str]) -> int:
    """Supervise the job named ``argv[0]``; any error of our own fails the job with its reason."""
    supervisor = _Supervisor(argv[0])
    try:
        supervisor.run()
    except Exception as err:
        jobs.update(
            "jobs",
            argv[0],
            TrainingJobStatus="Failed",
            SecondaryStatus="Failed",
            FailureReason=f"ClientError: {type(err).__name__}: {err}",
            TrainingEndTime=jobs.now(),
        )
        supervisor.feeders_stop.set()
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
