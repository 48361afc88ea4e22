"""The local back ends (``local_process`` and ``local``): one implementation over two engines.

Training jobs run under a detached supervisor process (``fmwals.backends.supervisor``), one container or
process per host (``instance_count``), and are described by their record on disk, so ``wait``, ``attach`` and
``model_data`` work from any process. Endpoints are servers on 127.0.0.1 whose record holds their URL and
handle (pid or container id).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from fmwals import jobs
from fmwals.backends import local_transform, processes
from fmwals.backends.backend import ModelSpec
from fmwals.backends.engine import Engine
from fmwals.errors import BackendUnavailableError, EndpointError
from fmwals.inputs import RecordSet, TrainingInput, is_local, local_path
from fmwals.session import Session, download

READY_TIMEOUT_SECONDS = 120.0
POLL_SECONDS = 0.2
LOG_TAIL_LINES = 30
MAX_LOCAL_HOSTS = 16


def _tail(text: str, lines: int = LOG_TAIL_LINES) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _extract_model(model_data: str, target: Path) -> None:
    """Put the model (a ``model.tar.gz`` or a directory, local or on S3) into ``target``."""
    target.mkdir(parents=True, exist_ok=True)
    if not is_local(model_data):
        model_data = str(download(Session().s3_client, model_data, target.parent / "download"))
        archives = list(Path(model_data).glob("*.tar.gz"))
        model_data = str(archives[0]) if archives else model_data
    source = local_path(model_data)
    if source.is_dir():
        shutil.copytree(source, target, dirs_exist_ok=True)
    elif tarfile.is_tarfile(source):
        with tarfile.open(source) as tar:
            tar.extractall(target, filter="data")
    else:
        raise FileNotFoundError(f"model_data {model_data} is neither a directory nor a model.tar.gz")


class LocalBackend:
    """Jobs and endpoints on this machine, run by ``engine``."""

    local = True

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._transforms: dict[str, threading.Thread] = {}

    # --- training ------------------------------------------------------------------------------------

    def stage_inputs(self, channels: dict[str, TrainingInput], job_name: str) -> dict[str, TrainingInput]:
        staged = {}
        for name, channel in channels.items():
            uri = channel.s3_data
            if is_local(uri):
                path = local_path(uri)
                if not path.exists():
                    raise FileNotFoundError(f"channel {name!r}: {path} does not exist")
                uri = f"file://{path}"
            staged[name] = dataclasses.replace(channel, s3_data=uri, s3_data_type="S3Prefix")
        return staged

    def stage_record_set(self, record_set: RecordSet, name: str, data_location: str | None) -> RecordSet:
        return record_set

    def create_training_job(self, request: dict[str, Any]) -> None:
        name = jobs.check_name(request["TrainingJobName"])
        count = request["ResourceConfig"]["InstanceCount"]
        if not 1 <= count <= MAX_LOCAL_HOSTS:
            raise ValueError(f"instance_count={count}: the local back ends run 1 to {MAX_LOCAL_HOSTS} hosts "
                             "(one container or process per host) on this machine")
        self.engine.check(request["AlgorithmSpecification"]["TrainingImage"])
        if jobs.exists("jobs", name):
            raise ValueError(f"a training job named {name!r} already exists: choose another job_name")
        checkpoint_uri = request.get("CheckpointConfig", {}).get("S3Uri")
        if checkpoint_uri and not is_local(checkpoint_uri):
            raise ValueError(f"checkpoint_s3_uri={checkpoint_uri!r}: the local back ends keep checkpoints in a "
                             "local directory (a path or file:// URI), which a job started again with the same "
                             "checkpoint_s3_uri resumes from")
        job_dir = jobs.entity_dir("jobs", name)
        (job_dir / "opt_ml").mkdir(parents=True)
        (job_dir / "log.txt").touch()
        jobs.write(
            "jobs",
            name,
            {
                **request,
                "TrainingJobStatus": "InProgress",
                "SecondaryStatus": "Starting",
                "CreationTime": jobs.now(),
            },
        )
        package_root = str(Path(__file__).resolve().parents[2])
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p),
            "FMWALS_HOME": str(jobs.home()),
        }
        with open(job_dir / "supervisor.log", "ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "fmwals.backends.supervisor", name],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        processes.CHILDREN[process.pid] = process
        jobs.update("jobs", name, SupervisorPid=process.pid)

    def describe_training_job(self, name: str) -> dict[str, Any]:
        try:
            record = jobs.read("jobs", name)
        except KeyError:
            raise ValueError(f"no local training job named {name!r} (under {jobs.home()})") from None
        pid = record.get("SupervisorPid")
        if record["TrainingJobStatus"] == "InProgress" and pid and not processes.alive(int(pid)):
            record = jobs.read("jobs", name)  # it may have finished between the two reads
            if record["TrainingJobStatus"] == "InProgress":
                log = (jobs.entity_dir("jobs", name) / "supervisor.log").read_text(errors="replace")
                record = jobs.update(
                    "jobs",
                    name,
                    TrainingJobStatus="Failed",
                    SecondaryStatus="Failed",
                    FailureReason=f"the local job supervisor (pid {pid}) died: {_tail(log)}",
                )
        return record

    def wait_for_training_job(self, name: str, logs: bool) -> dict[str, Any]:
        log_path = jobs.entity_dir("jobs", name) / "log.txt"
        position = 0
        try:
            while True:
                record = self.describe_training_job(name)
                done = record["TrainingJobStatus"] != "InProgress"
                if logs:
                    position = _print_new_lines(log_path, position)
                if done:
                    return record
                time.sleep(POLL_SECONDS)
        except KeyboardInterrupt:
            self.stop_training_job(name)
            raise

    def stop_training_job(self, name: str) -> None:
        """Ask the job's supervisor to stop it (a marker file it watches: safe at any stage)."""
        (jobs.entity_dir("jobs", name) / jobs.STOP_MARKER).touch()

    def training_log(self, name: str) -> str:
        return (jobs.entity_dir("jobs", name) / "log.txt").read_text(errors="replace")

    # --- endpoints -----------------------------------------------------------------------------------

    def create_endpoint(
        self, name: str, model: ModelSpec, instance_type: str, instance_count: int, port: int | None
    ) -> None:
        jobs.check_name(name)
        if jobs.exists("endpoints", name):
            if self.engine.serving_problem(jobs.read("endpoints", name)) is None:
                raise ValueError(
                    f"endpoint {name!r} already exists: delete it first "
                    "(predictor.delete_endpoint()) or pass another endpoint_name"
                )
            self.delete_endpoint(name)
        self.engine.check(model.image_uri)
        if port is not None:
            processes.check_port_free(port)
        port = port or processes.free_port()
        endpoint_dir = jobs.entity_dir("endpoints", name)
        _extract_model(model.model_data, endpoint_dir / "opt_ml" / "model")
        handle = self.engine.start_serving(
            model.image_uri, endpoint_dir / "opt_ml", port, model.env, name, endpoint_dir / "log.txt"
        )
        record = {
            "EndpointName": name,
            "EndpointStatus": "Creating",
            "InstanceType": instance_type,
            "Image": model.image_uri,
            "ModelData": model.model_data,
            "Port": port,
            "Url": f"http://127.0.0.1:{port}",
            "CreationTime": jobs.now(),
            **handle,
        }
        jobs.write("endpoints", name, record)
        try:
            self._wait_ready(record)
        except BaseException:
            self.delete_endpoint(name)
            raise
        jobs.update("endpoints", name, EndpointStatus="InService")

    def _wait_ready(self, record: dict[str, Any]) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            problem = self.engine.serving_problem(record)
            if problem is not None:
                log = _tail(self.engine.serving_log(record))
                if "in use" in log:
                    raise BackendUnavailableError(
                        f"Endpoint {record['EndpointName']}: port {record['Port']} is "
                        "already in use; deploy without port= to use a free one"
                    )
                raise BackendUnavailableError(
                    f"Endpoint {record['EndpointName']} failed to start: {problem}:\n{log}"
                )
            try:
                with urllib.request.urlopen(record["Url"] + "/ping", timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(POLL_SECONDS)
        raise BackendUnavailableError(
            f"Endpoint {record['EndpointName']} did not answer /ping within "
            f"{READY_TIMEOUT_SECONDS:g} s:\n{_tail(self.engine.serving_log(record))}"
        )

    def invoke_endpoint(self, name: str, body: bytes, content_type: str, accept: str) -> tuple[bytes, str]:
        try:
            record = jobs.read("endpoints", name)
        except KeyError:
            raise EndpointError(f"Endpoint {name!r} does not exist: deploy a model first") from None
        request = urllib.request.Request(
            record["Url"] + "/invocations",
            data=body,
            method="POST",
            headers={"Content-Type": content_type, "Accept": accept},
        )
        try:
            with urllib.request.urlopen(request, timeout=600) as response:
                return response.read(), response.headers.get("Content-Type", accept)
        except urllib.error.HTTPError as err:
            text = err.read().decode(errors="replace")
            raise EndpointError(f"Endpoint {name} answered {err.code}: {text}", err.code, text) from None
        except (urllib.error.URLError, ConnectionError) as err:
            problem = self.engine.serving_problem(record)
            if problem is None:
                raise EndpointError(f"Endpoint {name} at {record['Url']} did not answer: {err}") from None
            raise EndpointError(
                f"Endpoint {name} is not running: {problem}. Delete it and deploy again."
            ) from None

    def delete_endpoint(self, name: str) -> None:
        try:
            record = jobs.read("endpoints", name)
        except KeyError:
            raise EndpointError(f"Endpoint {name!r} does not exist") from None
        if "Pid" in record or "ContainerId" in record:
            self.engine.stop_serving(record)
        shutil.rmtree(jobs.entity_dir("endpoints", name), ignore_errors=True)

    # --- batch transform -----------------------------------------------------------------------------

    def create_transform_job(self, request: dict[str, Any], model: ModelSpec) -> None:
        name = jobs.check_name(request["TransformJobName"])
        if jobs.exists("transform", name):
            raise ValueError(f"a transform job named {name!r} already exists: choose another job_name")
        jobs.write(
            "transform", name, {**request, "TransformJobStatus": "InProgress", "CreationTime": jobs.now()}
        )
        thread = threading.Thread(target=self._transform, args=(request, model), daemon=True)
        self._transforms[name] = thread
        thread.start()

    def _transform(self, request: dict[str, Any], model: ModelSpec) -> None:
        name = request["TransformJobName"]
        try:
            local_transform.run(self, request, model)
        except Exception as err:
            jobs.update(
                "transform",
                name,
                TransformJobStatus="Failed",
                FailureReason=f"{err}",
                TransformEndTime=jobs.now(),
            )
        else:
            jobs.update("transform", name, TransformJobStatus="Completed", TransformEndTime=jobs.now())

    def wait_for_transform_job(self, name: str) -> dict[str, Any]:
        thread = self._transforms.get(name)
        if thread is not None:
            thread.join()
        return jobs.read("transform", name)


def _print_new_lines(path: Path, position: int) -> int:
    """Print the complete lines appended to ``path`` since byte ``position``; returns the new position."""
    with open(path, "rb") as f:
        f.seek(position)
        chunk = f.read()
    complete = chunk[: chunk.rfind(b"\n") + 1]
    if complete:
        sys.stdout.write(complete.decode(errors="replace"))
        sys.stdout.flush()
    return position + len(complete)
