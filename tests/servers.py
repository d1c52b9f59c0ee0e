"""Real servers on 127.0.0.1 for the object-storage tests: moto's S3 server, a Google Cloud
Storage emulator, Azurite (Azure Storage's emulator) and a range server.

All run as subprocesses (nothing is mocked inside the process under test) on a free port of
127.0.0.1, and are stopped when the test session ends. ``s3_server`` points every client of
this process and of the processes it starts (dask workers, the CLI) at its server, through
the standard environment: botocore's ``AWS_ENDPOINT_URL`` and credentials, GDAL's
``AWS_S3_ENDPOINT``, ``AWS_HTTPS`` and ``AWS_VIRTUAL_HOSTING``; ``gcs_server`` likewise through
gcsfs's ``STORAGE_EMULATOR_HOST``; ``azure_server`` through ``AZURE_STORAGE_CONNECTION_STRING``,
which adlfs and GDAL's ``/vsiaz/`` both read.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.processes import (
    AZURITE_ACCOUNT,
    AZURITE_KEY,
    RangeServer,
    azurite_blob,
    free_port,
    serve_azurite,
    serve_ranges,
    stop,
    wait_for,
)

HERE = Path(__file__).parent


@dataclass
class S3Server:
    endpoint: str
    port: int

    def client(self) -> Any:
        import boto3

        return boto3.client("s3")

    def new_bucket(self) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = (
            self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        )
        return sorted(obj["Key"] for page in pages for obj in page.get("Contents", []))


S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_HTTPS": "NO",
    "AWS_VIRTUAL_HOSTING": "FALSE",
    # GDAL: no EC2 metadata probing, no .aws/config, no directory listing per open.
    "AWS_NO_SIGN_REQUEST": "NO",
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "CPL_VSIL_CURL_ALLOWED_EXTENSIONS": "",
}


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on a free port of 127.0.0.1, the environment pointing at it."""
    pytest.importorskip("moto.server")
    pytest.importorskip("s3fs")
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(port, process, "moto's S3 server")
        endpoint = f"http://127.0.0.1:{port}"
        env = {
            **S3_ENV,
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ENDPOINT_URL_S3": endpoint,
            "AWS_S3_ENDPOINT": f"127.0.0.1:{port}",
        }
        env.pop("CPL_VSIL_CURL_ALLOWED_EXTENSIONS")
        with pytest.MonkeyPatch.context() as mp:
            for key, value in env.items():
                mp.setenv(key, value)
            # No stray credentials or profiles of the machine.
            for key in ("AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
                mp.delenv(key, raising=False)
            mp.setenv("AWS_CONFIG_FILE", "/dev/null")
            mp.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
            yield S3Server(endpoint, port)
    finally:
        stop(process)


@pytest.fixture
def s3_bucket(s3_server: S3Server) -> str:
    """A new, empty bucket on the S3 server."""
    return s3_server.new_bucket()


@dataclass
class GCSServer:
    endpoint: str

    def new_bucket(self) -> str:
        import fsspec

        name = f"test-{uuid.uuid4().hex[:12]}"
        fsspec.filesystem("gs", skip_instance_cache=True).mkdir(name)
        return name

    def keys(self, bucket: str) -> list[str]:
        import fsspec

        fs = fsspec.filesystem("gs", skip_instance_cache=True)
        return sorted(key.split("/", 1)[1] for key in fs.find(bucket))

    def upload(self, local: Path, bucket: str, key: str) -> str:
        """Copy a file or a directory tree to gs://bucket/key, one object at a time, each
        checked by its size.

        The emulator mangles what gcsfs sends it in two ways, so ``fs.put`` is not used: a
        multipart upload (gcsfs's way for small objects) loses a trailing ``\r`` of the
        content, as the emulator parses the body with Python's email parser; and a hundred
        concurrent uploads stall it for minutes. Resumable uploads, one after another, are
        stored exactly.
        """
        import fsspec

        fs = fsspec.filesystem("gs", skip_instance_cache=True)
        files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
        for path in files:
            rel = "" if path == local else "/" + path.relative_to(local).as_posix()
            with fs.open(f"{bucket}/{key}{rel}", "wb") as f:
                f.write(path.read_bytes())
                f.flush(force=True)  # a resumable upload, even for a small object
        stored = fs.find(f"{bucket}/{key}", detail=True)
        for path in files:
            rel = "" if path == local else "/" + path.relative_to(local).as_posix()
            assert stored[f"{bucket}/{key}{rel}"]["size"] == path.stat().st_size, path
        return f"gs://{bucket}/{key}"


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GCSServer]:
    """gcp-storage-emulator (in memory) on a free port of 127.0.0.1, gcsfs pointed at it."""
    pytest.importorskip("gcp_storage_emulator")
    port = free_port()
    argv = ["start", "--host", "127.0.0.1", "--port", str(port), "--in-memory", "--quiet"]
    process = subprocess.Popen(
        [sys.executable, "-m", "gcp_storage_emulator", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(port, process, "the GCS emulator")
        endpoint = f"http://127.0.0.1:{port}"
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("STORAGE_EMULATOR_HOST", endpoint)
            # gcsfs (2026.x) asks the gRPC storage-control API each bucket's layout before
            # using it, which the emulator does not serve: the request times out (60 s, and
            # again on every call) before gcsfs falls back. Read at gcsfs's import.
            mp.setenv("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
            gcsfs = pytest.importorskip("gcsfs")
            if gcsfs.GCSFileSystem.__name__ != "GCSFileSystem":
                raise RuntimeError(
                    "gcsfs was imported before the GCS emulator's fixture set "
                    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT=false; each call would wait 60 s"
                )
            yield GCSServer(endpoint)
    finally:
        stop(process)


@pytest.fixture
def gcs_bucket(gcs_server: GCSServer) -> str:
    """A new, empty bucket on the GCS emulator."""
    return gcs_server.new_bucket()


@dataclass
class AzureServer:
    endpoint: str
    connection_string: str

    def container_client(self, container: str) -> Any:
        from azure.storage.blob import ContainerClient

        return ContainerClient.from_connection_string(self.connection_string, container)

    def new_container(self) -> str:
        name = f"test-{uuid.uuid4().hex[:12]}"
        self.container_client(name).create_container()
        return name

    def keys(self, container: str, prefix: str = "") -> list[str]:
        """The blobs under ``prefix``, listed by azure-storage-blob itself (not adlfs)."""
        blobs = self.container_client(container).list_blob_names(name_starts_with=prefix)
        return sorted(blobs)

    def upload(self, local: Path, container: str, key: str) -> str:
        """Copy a file or a directory tree to az://container/key, blob by blob."""
        client = self.container_client(container)
        files = [local] if local.is_file() else sorted(p for p in local.rglob("*") if p.is_file())
        for path in files:
            rel = "" if path == local else "/" + path.relative_to(local).as_posix()
            client.upload_blob(f"{key}{rel}", path.read_bytes())
        return f"az://{container}/{key}"


# Every variable adlfs or GDAL reads for Azure credentials: only the connection string is set.
AZURE_VARIABLES = (
    "AZURE_STORAGE_ACCOUNT_NAME",
    "AZURE_STORAGE_ACCOUNT_KEY",
    "AZURE_STORAGE_SAS_TOKEN",
    "AZURE_STORAGE_CLIENT_ID",
    "AZURE_STORAGE_CLIENT_SECRET",
    "AZURE_STORAGE_TENANT_ID",
    "AZURE_STORAGE_ANON",
    "AZURE_STORAGE_ACCOUNT",
    "AZURE_STORAGE_ACCESS_KEY",
    "AZURE_STORAGE_ACCESS_TOKEN",
    "AZURE_NO_SIGN_REQUEST",
)


@pytest.fixture(scope="session")
def azure_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureServer]:
    """Azurite's blob service (installed with npm on first use) on a free port of 127.0.0.1,
    ``AZURE_STORAGE_CONNECTION_STRING`` pointing at it. No skip: a machine without npm fails
    these tests, with the command to run."""
    import adlfs  # noqa: F401  (in the test extra: a missing one is an error, not a skip)

    try:
        azurite_blob()  # installed once; its failure names the npm command
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    with serve_azurite(tmp_path_factory.mktemp("azurite")) as (endpoint, _):
        connection = (
            f"DefaultEndpointsProtocol=http;AccountName={AZURITE_ACCOUNT};"
            f"AccountKey={AZURITE_KEY};BlobEndpoint={endpoint};"
        )
        with pytest.MonkeyPatch.context() as mp:
            for key in AZURE_VARIABLES:
                mp.delenv(key, raising=False)
            mp.setenv("AZURE_STORAGE_CONNECTION_STRING", connection)
            yield AzureServer(endpoint, connection)


@pytest.fixture
def az_container(azure_server: AzureServer) -> str:
    """A new, empty container on Azurite."""
    return azure_server.new_container()


@pytest.fixture(scope="session")
def range_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RangeServer]:
    """tests/range_server.py serving a fresh directory on a free port of 127.0.0.1."""
    root = tmp_path_factory.mktemp("http-root")
    log = tmp_path_factory.mktemp("http-log") / "requests.jsonl"
    with serve_ranges(root, log) as server:
        yield server
