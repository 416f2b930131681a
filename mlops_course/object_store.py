"""An S3-compatible object store for a lesson: moto's server on 127.0.0.1, fake credentials, buckets on demand.

:class:`ObjectStore` runs ``moto_server`` (from ``moto[server]``) on a free loopback port as a
:class:`mlops_course.process.ManagedServer`, so it stops with the lesson. Its objects live in memory: the
store is empty at every start, like a fresh bucket. The settings every S3 client here reads are the standard
ones, so pointing at real S3 or MinIO changes values, not code:

- ``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY``: fake ones here (:data:`FAKE_CREDENTIALS`); never put
  real keys in a notebook;
- ``MLFLOW_S3_ENDPOINT_URL`` (MLflow) and DVC's remote ``endpointurl``: the store's URL here, left out for AWS.

:func:`check_bucket` turns the errors a client meets (no such bucket, refused credentials, nothing listening)
into one sentence that names the setting to fix.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from mlops_course import process

FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "course-fake-key", "AWS_SECRET_ACCESS_KEY": "course-fake-secret",
                    "AWS_DEFAULT_REGION": "us-east-1"}
CREDENTIAL_ERRORS = ("InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "InvalidClientTokenId")


class ObjectStoreError(RuntimeError):
    """The object store cannot be used as configured; the message names the setting to fix."""


def moto_command() -> list[str]:
    """``moto_server`` of this Python environment, with ``{port}`` where the port goes."""
    script = Path(sys.executable).parent / "moto_server"
    head = [str(script)] if script.is_file() else [sys.executable, "-m", "moto.server"]
    return [*head, "-H", process.HOST, "-p", "{port}"]


class ObjectStore(process.ManagedServer):
    """moto's S3 server for one lesson (see the module docstring); ``url`` is the endpoint URL
    (``MLFLOW_S3_ENDPOINT_URL``, DVC's ``endpointurl``).

    >>> store = ObjectStore(lesson.workspace).start()
    >>> store.create_bucket("mlflow-artifacts")
    's3://mlflow-artifacts'
    >>> store.stop()
    """

    def __init__(self, workspace: os.PathLike | str, *, port: int | None = None, startup_timeout: float = 60.0):
        self.workspace = Path(workspace).resolve()
        self.folder = self.workspace / "object-store"
        super().__init__(process.BackgroundServer(
            moto_command(), log_file=self.folder / "moto.log", port=port, health_path="/moto-api/data.json",
            env={**FAKE_CREDENTIALS, "MOTO_ENABLE_ISO_REGIONS": "false"}, cwd=self.workspace,
            startup_timeout=startup_timeout, name="moto_server (S3)"))

    def env(self) -> dict[str, str]:
        """The environment an S3 client needs for this store: endpoint and the fake credentials."""
        return {**FAKE_CREDENTIALS, "MLFLOW_S3_ENDPOINT_URL": self.url, "AWS_ENDPOINT_URL_S3": self.url}

    def apply_env(self) -> dict[str, str]:
        """Set :meth:`env` in this process (its children, e.g. ``mlflow server`` and ``dvc``, inherit it)."""
        values = self.env()
        os.environ.update(values)
        return values

    def client(self, **credentials: str):
        """A boto3 S3 client for the store (``credentials`` override the fake ones, e.g. to show an error)."""
        import boto3

        keys = {"aws_access_key_id": FAKE_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                "aws_secret_access_key": FAKE_CREDENTIALS["AWS_SECRET_ACCESS_KEY"], **credentials}
        return boto3.client("s3", endpoint_url=self.url, region_name=FAKE_CREDENTIALS["AWS_DEFAULT_REGION"], **keys)

    def create_bucket(self, name: str) -> str:
        """Create bucket ``name`` (no error if it exists); returns ``s3://name``."""
        client = self.client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if name not in existing:
            client.create_bucket(Bucket=name)
        return f"s3://{name}"

    def buckets(self) -> list[str]:
        return sorted(b["Name"] for b in self.client().list_buckets().get("Buckets", []))

    def objects(self, bucket: str, prefix: str = "") -> list[tuple[str, int]]:
        """``(key, size)`` of every object under ``prefix``, sorted by key."""
        paginator = self.client().get_paginator("list_objects_v2")
        found = [(o["Key"], o["Size"]) for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
                 for o in page.get("Contents", [])]
        return sorted(found)

    def describe(self) -> str:
        return "S3-compatible store (moto) on 127.0.0.1, a free port, fake credentials, objects in memory"


def explain(exc: BaseException, *, bucket: str, endpoint: str | None) -> str:
    """One sentence for an S3 error: which setting to fix (bucket name, credentials or endpoint)."""
    code = ""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
    where = endpoint or "AWS S3"
    if code in ("NoSuchBucket", "404", "NotFound"):
        return (f"bucket {bucket!r} does not exist at {where}: create it (ObjectStore.create_bucket) or fix the "
                f"bucket in the s3:// URL (MLflow's --artifacts-destination, DVC's remote url)")
    if code in CREDENTIAL_ERRORS or code == "403":
        return (f"the store at {where} refused the credentials ({code}): check AWS_ACCESS_KEY_ID and "
                f"AWS_SECRET_ACCESS_KEY (DVC: access_key_id / secret_access_key of the remote)")
    if type(exc).__name__ in ("EndpointConnectionError", "ConnectTimeoutError", "ConnectionClosedError"):
        return (f"nothing answers at {where}: check MLFLOW_S3_ENDPOINT_URL (DVC: the remote's endpointurl) "
                f"and that the store is running")
    if type(exc).__name__ in ("NoCredentialsError", "PartialCredentialsError"):
        return "no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    return f"S3 error at {where}: {exc}"


def check_bucket(bucket: str, *, endpoint: str | None = None, client=None) -> str:
    """Raise :class:`ObjectStoreError` naming the setting to fix unless ``bucket`` is reachable; ``s3://bucket``.

    ``endpoint`` defaults to ``MLFLOW_S3_ENDPOINT_URL``; credentials come from the environment, as for MLflow.
    """
    endpoint = endpoint or os.environ.get("MLFLOW_S3_ENDPOINT_URL")
    if client is None:
        import boto3
        from botocore.config import Config

        # A fresh session: boto3's default one keeps the credentials it found first, even after a fix.
        client = boto3.session.Session().client("s3", endpoint_url=endpoint, region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
                              config=Config(retries={"max_attempts": 1}, connect_timeout=3, read_timeout=10))
    try:
        client.head_bucket(Bucket=bucket)
    except Exception as exc:  # noqa: BLE001 - botocore's errors have no common useful base: explain() sorts them
        raise ObjectStoreError(explain(exc, bucket=bucket, endpoint=endpoint)) from None
    return f"s3://{bucket}"
