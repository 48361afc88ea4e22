"""Batch transform on the local back ends: a temporary endpoint, each input file split and batched as
SageMaker does, one ``<file>.out`` per input file under the output path.

- ``SplitType`` None sends a file whole; ``Line`` splits at newlines; ``RecordIO`` at RecordIO records.
- ``MultiRecord`` (the default) packs records into requests of at most ``MaxPayloadInMB`` (default 6);
  ``SingleRecord`` sends one record per request.
- ``AssembleWith=Line`` appends a newline to each response; otherwise responses are concatenated.
- The endpoint runs with ``SAGEMAKER_BATCH=true``, as SageMaker's transform containers do.
"""

from __future__ import annotations

import dataclasses
import gzip
from collections.abc import Iterator
from typing import Any

from container.channel_files import channel_files
from container.formats.recordio_framing import frame_records, iter_payloads
from fmwals import jobs
from fmwals.backends.backend import Backend, ModelSpec
from fmwals.inputs import is_local, local_path
from fmwals.session import Session, download

DEFAULT_MAX_PAYLOAD_MB = 6


def split_records(body: bytes, split_type: str | None, source: str) -> Iterator[bytes]:
    """The records of one input file (``source``), each with its own framing (newline, or RecordIO header
    and padding)."""
    if split_type in (None, "None"):
        yield body
    elif split_type == "Line":
        yield from (line for line in body.splitlines(keepends=True) if line.strip())
    elif split_type == "RecordIO":
        yield from (frame_records([payload]) for payload in iter_payloads(body, source=source))
    else:
        raise ValueError(f"split_type={split_type!r}: expected None, 'Line' or 'RecordIO'")


def batches(records: Iterator[bytes], strategy: str, max_payload_bytes: int) -> Iterator[bytes]:
    """Requests: one record each (SingleRecord), or as many as fit in ``max_payload_bytes`` (MultiRecord)."""
    pending: list[bytes] = []
    size = 0
    for record in records:
        if strategy == "SingleRecord":
            yield record
            continue
        if pending and size + len(record) > max_payload_bytes:
            yield b"".join(pending)
            pending, size = [], 0
        pending.append(record)
        size += len(record)
    if pending:
        yield b"".join(pending)


def run(backend: Backend, request: dict[str, Any], model: ModelSpec) -> None:
    """Run the transform job ``request`` (CreateTransformJob's shape) of ``model`` to its end on ``backend``'s
    endpoints, recording its status."""
    name = request["TransformJobName"]
    job_dir = jobs.entity_dir("transform", name)
    transform_input, output = request["TransformInput"], request["TransformOutput"]
    out_dir = local_path(output["S3OutputPath"]) if output.get("S3OutputPath") else job_dir / "output"
    jobs.update("transform", name, TransformOutput={**output, "S3OutputPath": f"file://{out_dir}"})
    uri = transform_input["DataSource"]["S3DataSource"]["S3Uri"]
    source = local_path(uri) if is_local(uri) else download(Session().s3_client, uri, job_dir / "input")
    endpoint = f"{name[:50]}-transform"
    batch_model = dataclasses.replace(model, env={**model.env, "SAGEMAKER_BATCH": "true"})
    backend.create_endpoint(endpoint, batch_model, request["TransformResources"]["InstanceType"], 1, None)
    try:
        content_type = transform_input.get("ContentType", "application/x-recordio-protobuf")
        accept = output.get("Accept", content_type)
        max_payload = int(request.get("MaxPayloadInMB", DEFAULT_MAX_PAYLOAD_MB)) << 20
        for path in channel_files(source):
            body = path.read_bytes()
            if transform_input.get("CompressionType") == "Gzip":
                body = gzip.decompress(body)
            records = split_records(body, transform_input.get("SplitType"), str(path))
            relative = path.name if source.is_file() else str(path.relative_to(source))
            target = out_dir / f"{relative}.out"
            target.parent.mkdir(parents=True, exist_ok=True)
            with open(target, "wb") as out:
                for payload in batches(records, request.get("BatchStrategy", "MultiRecord"), max_payload):
                    response, _ = backend.invoke_endpoint(endpoint, payload, content_type, accept)
                    out.write(response + (b"\n" if output.get("AssembleWith") == "Line" else b""))
    finally:
        backend.delete_endpoint(endpoint)
