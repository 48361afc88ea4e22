"""AWS clients for the SageMaker back end (and S3 downloads of the local ones), created lazily with boto3.

An official ``sagemaker.Session`` works wherever this one does: both expose ``sagemaker_client``,
``sagemaker_runtime_client``, ``s3_client`` and ``default_bucket()``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class Session:
    """boto3 clients, each created on first use from ``boto_session`` unless passed in."""

    def __init__(
        self,
        boto_session: Any = None,
        sagemaker_client: Any = None,
        sagemaker_runtime_client: Any = None,
        s3_client: Any = None,
        logs_client: Any = None,
        default_bucket: str | None = None,
    ) -> None:
        self._boto_session = boto_session
        self._clients = {
            "sagemaker": sagemaker_client,
            "sagemaker-runtime": sagemaker_runtime_client,
            "s3": s3_client,
            "logs": logs_client,
        }
        self._default_bucket = default_bucket

    @property
    def boto_session(self) -> Any:
        if self._boto_session is None:
            import boto3

            self._boto_session = boto3.Session()
        return self._boto_session

    def _client(self, service: str) -> Any:
        if self._clients[service] is None:
            self._clients[service] = self.boto_session.client(service)
        return self._clients[service]

    @property
    def sagemaker_client(self) -> Any:
        return self._client("sagemaker")

    @property
    def sagemaker_runtime_client(self) -> Any:
        return self._client("sagemaker-runtime")

    @property
    def s3_client(self) -> Any:
        return self._client("s3")

    @property
    def logs_client(self) -> Any:
        return self._client("logs")

    def default_bucket(self) -> str:
        """``sagemaker-<region>-<account>`` as the SDK names it (created if missing), unless one was given."""
        if self._default_bucket is None:
            region = self.boto_session.region_name
            account = self.boto_session.client("sts").get_caller_identity()["Account"]
            bucket = f"sagemaker-{region}-{account}"
            try:
                self.s3_client.head_bucket(Bucket=bucket)
            except Exception:
                config = (
                    {}
                    if region == "us-east-1"
                    else {"CreateBucketConfiguration": {"LocationConstraint": region}}
                )
                self.s3_client.create_bucket(Bucket=bucket, **config)
            self._default_bucket = bucket
        return self._default_bucket


def split_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key/prefix`` -> (``bucket``, ``key/prefix``)."""
    if not uri.startswith("s3://"):
        raise ValueError(f"expected an s3:// URI, got {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    return bucket, key


def upload(s3_client: Any, local: Path, uri: str) -> str:
    """Upload a file, or a directory's files (recursively), under ``uri``; returns the prefix URI."""
    bucket, prefix = split_s3_uri(uri)
    prefix = prefix.rstrip("/")
    if local.is_dir():
        for path in sorted(p for p in local.rglob("*") if p.is_file()):
            s3_client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(local).as_posix()}")
        return f"s3://{bucket}/{prefix}/"
    key = f"{prefix}/{local.name}"
    s3_client.upload_file(str(local), bucket, key)
    return f"s3://{bucket}/{key}"


def download(s3_client: Any, uri: str, directory: Path) -> Path:
    """Every object under ``uri`` (a key or a prefix) into ``directory``, keeping relative paths."""
    bucket, prefix = split_s3_uri(uri)
    directory.mkdir(parents=True, exist_ok=True)
    paginator = s3_client.get_paginator("list_objects_v2")
    found = False
    for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            if key.endswith("/"):
                continue
            relative = key[len(prefix) :].lstrip("/") or Path(key).name
            target = directory / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            s3_client.download_file(bucket, key, str(target))
            found = True
    if not found:
        raise FileNotFoundError(f"nothing found under {uri}")
    return directory
