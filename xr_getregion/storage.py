"""Object storage: URLs as inputs, and tables published to a bucket so that a failed job
leaves nothing a reader takes for a complete table.

Inputs
------
``s3://``, ``gs://``/``gcs://``, ``az://``/``abfs://``/``abfss://`` and ``http(s)://`` URLs are
read through fsspec (credentials and endpoints from each library's usual environment, e.g.
``AWS_*`` with ``AWS_ENDPOINT_URL``, plus ``storage_options``) and, for GeoTIFFs, through GDAL's
``/vsis3/``, ``/vsigs/``, ``/vsiaz/`` and ``/vsicurl/`` readers. :class:`RemotePath` gives the
format checks the few ``pathlib.Path`` operations they use, so the checks of a local file
(its first bytes, a Zarr store's metadata) run on a URL as ranged reads, never a download.

How a table reaches a bucket
----------------------------
An object store has no rename, and a listing may show part of a prefix while it is written.
So a table at the URL NAME is published by this protocol:

1. Every partition is written under a staging prefix beside NAME, ``.NAME.tmp-JOB/``, where
   JOB is a random id of this job. Nothing is written under NAME yet.
2. When every partition is written (and only then), the client copies them, inside the
   store, to ``NAME/part.<n>.JOB.parquet`` (names no other job uses), then writes the
   manifest ``NAME/_xr_getregion`` **last**: JSON listing each part with its size and the
   job's id. Without ``overwrite`` the manifest is written with a conditional PUT
   (``If-None-Match: *``, s3fs's ``mode="create"``), so of two jobs racing for NAME exactly
   one publishes; the other deletes its parts and raises
   :class:`~xr_getregion.errors.OutputExistsError`. With ``overwrite`` the new manifest
   replaces the old one in one PUT, and the parts it does not list are deleted after it.
3. The staging prefix is deleted, on success and on failure (best effort).

A reader trusts a Parquet table at NAME only when ``NAME/_xr_getregion`` exists, and reads
exactly the parts it lists (sizes match): :func:`read_table` does this. A job that fails or
is interrupted (an exception in a task, a worker lost, Ctrl-C, SIGTERM or SIGHUP) never writes
the manifest, so a reader sees no table (or, with ``overwrite``, the previous one). Parts of
a job killed (SIGKILL, power loss) during step 2 may remain under NAME, unlisted, and the stage
of one killed before step 3 may remain: both are ignored by readers; the parts are removed
by the next ``overwrite``, stages by a lifecycle rule on ``.*.tmp-*`` prefixes. A generic
reader of the prefix (``pandas.read_parquet("s3://.../NAME")``) reads the right table only
while no job writes NAME.

A CSV table is one object: its partitions are staged the same way, then streamed in order
into one upload to NAME that becomes visible only when complete (a single PUT or a completed
multipart upload is atomic on S3), conditional on NAME being absent unless ``overwrite``.
An interrupted upload is aborted, never completed. On filesystems whose fsspec
implementation has no conditional write (fsspec's default is to check, then write), two
jobs racing for one NAME without ``overwrite`` may both succeed, the later one's table
winning; S3 (s3fs) and Azure (adlfs: ``If-None-Match: *`` on the manifest's PUT and on the
CSV blob's block-list commit) are conditional, and GCS (gcsfs) for the manifest. ``s3://`` is
tested against a local S3 server (moto), ``gs://`` against a local GCS emulator (which
ignores conditional writes, so the race for NAME is tested on S3 and Azure only),
``az://``/``abfs://`` against Azurite, ``http(s)://`` inputs against a local range server.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

from xr_getregion._signals import signals_deferred, terminate_as_exit
from xr_getregion.errors import ArgumentError, OutputExistsError

__all__ = ["RemotePath", "is_url", "read_table", "write_remote_table"]

# The URL schemes read through fsspec; gcs/az name gcsfs and adlfs, installed separately.
REMOTE_PROTOCOLS = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "http", "https")
# Schemes a table may be written to (no writes over plain HTTP).
WRITABLE_PROTOCOLS = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")
MANIFEST = "_xr_getregion"
# A Zarr store's root metadata objects (v3, v2, v2 consolidated).
_ZARR_ROOTS = ("zarr.json", ".zgroup", ".zmetadata")
MANIFEST_FORMAT = "xr_getregion table manifest"
# What `overwrite` may delete under NAME: parts written by this package or dask, and metadata.
_TABLE_OBJECT = re.compile(
    rf"part\.\d+(\.[0-9a-f]+)?\.parquet|_metadata|_common_metadata|{MANIFEST}"
)
_PACKAGE_OF = {
    **dict.fromkeys(("s3", "s3a"), "s3fs"),
    **dict.fromkeys(("gs", "gcs"), "gcsfs"),
    **dict.fromkeys(("az", "abfs", "abfss"), "adlfs"),
    **dict.fromkeys(("http", "https"), "aiohttp"),
}


def protocol(path: str | os.PathLike[str]) -> str | None:
    """The URL scheme of ``path`` if it is one this package reads remotely, else None."""
    text = os.fspath(path)
    if not isinstance(text, str) or "://" not in text:
        return None
    scheme = text.split("://", 1)[0].lower()
    return scheme if scheme in REMOTE_PROTOCOLS else None


def is_url(path: Any) -> bool:
    """Whether ``path`` is an object-storage or HTTP URL (not a local path)."""
    return isinstance(path, str | os.PathLike) and protocol(path) is not None


def filesystem(url: str, storage_options: dict[str, Any] | None = None) -> tuple[Any, str]:
    """fsspec's filesystem for ``url`` and the path inside it; ArgumentError if the library
    for the scheme is not installed."""
    import fsspec

    try:
        return fsspec.core.url_to_fs(url, **(storage_options or {}))
    except ImportError as exc:
        scheme = protocol(url) or "?"
        raise ArgumentError(
            f"{url!r}: reading {scheme}:// needs the package {_PACKAGE_OF.get(scheme, '?')!r}; "
            f"install it (pip install {_PACKAGE_OF.get(scheme, '?')})."
        ) from exc


def close_azure_clients_at_exit() -> None:
    """Close adlfs's clients before zarr closes its event loop at exit (once per process).

    zarr (3.x) opens a store's filesystem on its own event loop and closes that loop at
    exit. adlfs (2026.x) closes each filesystem's client at exit too, by a ``weakref.finalize``
    that runs on the filesystem's loop; finding it closed, each prints a traceback on stderr
    (fsspec/adlfs#495). atexit runs the handler registered last first: registered here, after
    zarr is imported, it runs adlfs's finalizers while zarr's loop still runs.
    """
    global _AZURE_CLEANUP
    if _AZURE_CLEANUP:
        return
    import atexit

    import zarr.core.sync  # noqa: F401  (registers zarr's exit handler before this one)

    atexit.register(_close_azure_clients)
    _AZURE_CLEANUP = True


_AZURE_CLEANUP = False


def _close_azure_clients() -> None:
    import weakref

    # weakref keeps its live finalizers in a private registry: read defensively.
    registry = getattr(weakref.finalize, "_registry", {})
    for finalizer in list(registry):
        with contextlib.suppress(Exception):
            found = finalizer.peek()
            if found and type(found[0]).__module__.split(".")[0] == "adlfs":
                finalizer()


def gdal_path(url: str) -> str:
    """GDAL's virtual file system path for ``url``: ``/vsis3/``, ``/vsigs/``, ``/vsiaz/``,
    ``/vsicurl/``."""
    scheme = protocol(url)
    rest = url.split("://", 1)[1] if scheme else url
    if scheme in ("s3", "s3a"):
        return f"/vsis3/{rest}"
    if scheme in ("gs", "gcs"):
        return f"/vsigs/{rest}"
    if scheme in ("az", "abfs", "abfss"):
        # abfs[s]://container@account.dfs.core.windows.net/key: GDAL takes the account from
        # its environment, the path is container/key. An account named in the URL must be
        # that one: else GDAL would read the same container and key of another account.
        container, _, key = rest.partition("/")
        name, _, host = container.partition("@")
        named = host.split(".", 1)[0] if host else None
        used = _gdal_azure_account()
        if named and used and named != used:
            raise ArgumentError(
                f"{url} names the Azure account {named!r}, but GDAL reads COGs with the "
                f"account {used!r} from the environment (AZURE_STORAGE_ACCOUNT, "
                "AZURE_STORAGE_ACCOUNT_NAME or the connection string's AccountName). Set the "
                f"environment for account {named!r}, or drop the account from the URL."
            )
        return f"/vsiaz/{name}/{key}"
    if scheme in ("http", "https"):
        return f"/vsicurl/{url}"
    return url


def _gdal_azure_account() -> str | None:
    """The Azure account GDAL's ``/vsiaz/`` reads with, from the environment (with
    :func:`gdal_options`), or ``None`` when none is set."""
    env = {**os.environ, **gdal_options()}
    if env.get("AZURE_STORAGE_ACCOUNT"):
        return env["AZURE_STORAGE_ACCOUNT"]
    fields = dict(
        part.split("=", 1)
        for part in env.get("AZURE_STORAGE_CONNECTION_STRING", "").split(";")
        if "=" in part
    )
    return fields.get("AccountName") or None


def read_options(url: str, storage_options: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """fsspec options for reading small objects whole at ``url`` (a Zarr store's chunks and
    metadata, the first bytes the checks read): the caller's, and on S3 one request per read.

    s3fs (2026.x) asks a whole object's size (a HEAD) before reading it whenever
    ``max_concurrency > 1`` (its default is 10), to split objects larger than its block size
    (50 MB) into concurrent ranged reads. Zarr reads each chunk whole, and chunks are far
    smaller: the HEAD doubles the requests, and the round trips, per chunk
    (fsspec/s3fs#1027). ``max_concurrency=1`` is set unless the caller sets it.
    """
    if protocol(url) not in ("s3", "s3a"):
        return storage_options
    return {"max_concurrency": 1, **(storage_options or {})}


def gdal_options() -> dict[str, str]:
    """GDAL configuration derived from the fsspec libraries' environment where GDAL's own is
    not set, so that one setting reaches both.

    ``/vsis3/``: ``AWS_S3_ENDPOINT`` (with ``AWS_HTTPS``, ``AWS_VIRTUAL_HOSTING``) from
    botocore's ``AWS_ENDPOINT_URL``, for an S3-compatible server (MinIO, Ceph, a local test
    server). ``/vsiaz/``: ``AZURE_STORAGE_ACCOUNT`` and ``AZURE_STORAGE_ACCESS_KEY`` from
    adlfs's ``AZURE_STORAGE_ACCOUNT_NAME`` and ``AZURE_STORAGE_ACCOUNT_KEY``, unless a
    connection string (which both read) is set.
    """
    env = os.environ
    out: dict[str, str] = {}
    endpoint = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
    if endpoint and not env.get("AWS_S3_ENDPOINT"):
        parsed = urlparse(endpoint)
        out["AWS_S3_ENDPOINT"] = parsed.netloc or parsed.path
        out["AWS_HTTPS"] = "NO" if parsed.scheme == "http" else "YES"
        out["AWS_VIRTUAL_HOSTING"] = "FALSE"
    account = env.get("AZURE_STORAGE_ACCOUNT_NAME")
    gdal_set = env.get("AZURE_STORAGE_CONNECTION_STRING") or env.get("AZURE_STORAGE_ACCOUNT")
    if account and not gdal_set:
        out["AZURE_STORAGE_ACCOUNT"] = account
        key = env.get("AZURE_STORAGE_ACCOUNT_KEY")
        if key and not env.get("AZURE_STORAGE_ACCESS_KEY"):
            out["AZURE_STORAGE_ACCESS_KEY"] = key
    return out


def export_gdal_options() -> None:
    """Put :func:`gdal_options` into the environment, so worker processes started from here
    (a ``LocalCluster``) read COGs from the same endpoint, with the same account."""
    for key, value in gdal_options().items():
        os.environ.setdefault(key, value)


@dataclass(frozen=True)
class _Stat:
    st_size: int


class RemotePath:
    """The part of ``pathlib.Path`` the input checks use, on an fsspec URL.

    ``open("rb")`` gives a file with no read-ahead cache: ``f.seek(k); f.read(n)`` is one
    ranged GET of ``n`` bytes, so checking a file's first bytes does not download it.
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        self.storage_options = storage_options or {}
        self.fs, self.path = filesystem(self.url, read_options(self.url, storage_options))
        # fsspec keeps one filesystem per set of options, with its listings: a store written
        # since (by this process or another) must not look absent.
        self.fs.invalidate_cache()

    def _child(self, url: str) -> RemotePath:
        child = object.__new__(RemotePath)
        child.url, child.storage_options, child.fs = url, self.storage_options, self.fs
        child.path = self.fs._strip_protocol(url)
        return child

    def __truediv__(self, name: str) -> RemotePath:
        return self._child(f"{self.url}/{name}")

    def __str__(self) -> str:
        return self.url

    def __repr__(self) -> str:
        return f"RemotePath({self.url!r})"

    @property
    def name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def suffix(self) -> str:
        name = self.name
        return name[name.rindex(".") :] if "." in name.lstrip(".") else ""

    @property
    def parent(self) -> RemotePath:
        return self._child(self.url.rsplit("/", 1)[0])

    def relative_to(self, other: RemotePath) -> str:
        return self.url[len(other.url) :].lstrip("/")

    @property
    def _http(self) -> bool:
        return protocol(self.url) in ("http", "https")

    def exists(self) -> bool:
        if self._http:
            # fsspec's HTTP exists() and isdir() GET the whole resource: a HEAD (info) per
            # file instead, and a "directory" exists when it holds Zarr root metadata.
            return self.is_file() or self.is_dir()
        try:
            return bool(self.fs.exists(self.path))
        except (FileNotFoundError, PermissionError):
            return False

    def is_dir(self) -> bool:
        if self._http:
            return any((self / name).is_file() for name in _ZARR_ROOTS)
        try:
            return bool(self.fs.isdir(self.path))
        except (FileNotFoundError, PermissionError):
            return False

    def is_file(self) -> bool:
        try:
            if self._http:
                return self.fs.info(self.path).get("type") == "file"
            return bool(self.fs.isfile(self.path))
        except (FileNotFoundError, PermissionError, OSError):
            return False

    def stat(self) -> _Stat:
        return _Stat(int(self.fs.size(self.path)))

    def iterdir(self) -> Iterator[RemotePath]:
        if self._http:
            return  # HTTP has no listing: a Zarr store is read from its root metadata
        for entry in self.fs.ls(self.path, detail=False):
            name = str(entry).rstrip("/").rsplit("/", 1)[-1]
            yield self / name

    def open(self, mode: str = "rb") -> Any:
        if mode != "rb":
            raise ValueError("RemotePath opens for reading only")
        return self.fs.open(self.path, "rb", cache_type="none")

    def read_bytes(self) -> bytes:
        return bytes(self.fs.cat_file(self.path))


# --- writing tables ------------------------------------------------------------------------


def _split(url: str) -> tuple[str, str]:
    parent, _, name = url.rstrip("/").rpartition("/")
    return parent, name


def _listing(fs: Any, prefix: str) -> dict[str, int]:
    """The objects under ``prefix/`` (name relative to it -> size); empty if none."""
    try:
        found = fs.find(prefix, detail=True, withdirs=False)
    except FileNotFoundError:
        return {}
    fs.invalidate_cache(prefix)
    out = {}
    for key, info in found.items():
        rel = key[len(prefix) :].lstrip("/")
        if rel:
            out[rel] = int(info.get("size") or 0)
    return out


def check_remote_target(
    url: str, overwrite: bool, storage_options: dict[str, Any] | None = None
) -> None:
    """Refuse a table URL that exists (unless ``overwrite``), or one ``overwrite`` may not
    replace: a prefix holding objects this package would not have written."""
    scheme = protocol(url)
    if scheme not in WRITABLE_PROTOCOLS:
        raise ArgumentError(
            f"the output {url!r} cannot be written: tables go to a local path or to "
            f"{', '.join(p + '://' for p in WRITABLE_PROTOCOLS)}."
        )
    fs, path = filesystem(url, storage_options)
    fs.invalidate_cache()
    below = _listing(fs, path)
    is_file = fs.isfile(path)
    if not below and not is_file:
        return
    if not overwrite:
        raise OutputExistsError(f"{url!r} exists; remove it or pass overwrite=True.")
    if url.lower().endswith(".csv"):
        if below:
            raise OutputExistsError(
                f"{url!r} is a prefix holding {len(below)} objects, and a .csv table is one "
                "object: it is left alone. Remove it yourself or write to another path."
            )
        return
    if is_file:
        raise OutputExistsError(
            f"{url!r} is one object, not a table this package wrote (a prefix with a "
            f"{MANIFEST} manifest), so it is left alone. Remove it or write elsewhere."
        )
    foreign = sorted(name for name in below if not _TABLE_OBJECT.fullmatch(name))
    if foreign:
        raise OutputExistsError(
            f"{url!r} is not a table this package wrote (it holds {foreign[0]!r}"
            + (f" and {len(foreign) - 1} other objects" if len(foreign) > 1 else "")
            + "), so it is left alone: overwrite=True replaces only a prefix of "
            "part.<n>.parquet objects and their manifest. Remove it yourself or write elsewhere."
        )


def write_remote_table(
    table: Any,
    url: str,
    *,
    overwrite: bool = False,
    progress: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> str:
    """Write a lazy table to the object-store URL ``url`` by the protocol of the module doc.

    Raises
    ------
    ArgumentError
        The URL cannot be written (``http://``, another suffix).
    OutputExistsError
        ``url`` exists and ``overwrite`` is False (also when another job published there while
        this one ran), or it holds objects ``overwrite`` may not replace.
    """
    url = url.rstrip("/")
    csv = url.lower().endswith(".csv")
    check_remote_target(url, overwrite, storage_options)
    fs, path = filesystem(url, storage_options)
    job = uuid.uuid4().hex[:12]
    parent, name = _split(url)
    stage_url = f"{parent}/.{name}.tmp-{job}"
    stage = fs._strip_protocol(stage_url)
    options = storage_options or {}
    published: list[str] = []
    again = False
    with terminate_as_exit():
        try:
            if csv:
                pending = table.to_csv(
                    f"{stage_url}/part.*.csv",
                    name_function=lambda i: f"{i:06d}",
                    index=False,
                    header_first_partition_only=True,
                    compute=False,
                    storage_options=options,
                )
            else:
                pending = table.to_parquet(
                    stage_url,
                    engine="pyarrow",
                    write_index=False,
                    compute=False,
                    name_function=lambda i: f"part.{i:06d}.parquet",
                    storage_options=options,
                    write_metadata_file=False,
                )
            _run(pending, progress)
            staged = _listing(fs, stage)
            if len(staged) != table.npartitions:
                raise RuntimeError(
                    f"the job wrote {len(staged)} of {table.npartitions} partitions to "
                    f"{stage_url!r}; the table is not published"
                )
            with signals_deferred():
                if csv:
                    _publish_csv(fs, stage, sorted(staged), path, url, overwrite)
                else:
                    _publish_parquet(fs, stage, staged, path, url, job, overwrite, published)
        except BaseException as exc:
            again = _ON_CLUSTER in getattr(exc, "__notes__", ())
            # Parts copied under NAME before the manifest was written: no reader trusts them,
            # and they are removed here.
            with signals_deferred(), contextlib.suppress(Exception):
                if published:
                    copied = {f"{path}/{rel}" for rel in _listing(fs, path)}
                    if gone := [key for key in published if key in copied]:
                        fs.rm(gone)
            raise
        finally:
            with signals_deferred(), contextlib.suppress(Exception):
                _remove_stage(fs, stage, again)
    return url


def _remove_stage(fs: Any, stage: str, again: bool) -> None:
    """Delete the staging prefix; ``again`` (a failure on a cluster) a moment later too, for a
    part that a task still running then wrote (see :func:`_run`)."""
    with contextlib.suppress(FileNotFoundError):
        fs.rm(stage, recursive=True)
    if again:
        time.sleep(2)
        fs.invalidate_cache()
        if fs.find(stage):
            fs.rm(stage, recursive=True)


def _publish_parquet(
    fs: Any,
    stage: str,
    staged: dict[str, int],
    path: str,
    url: str,
    job: str,
    overwrite: bool,
    published: list[str],
) -> None:
    names = sorted(staged)
    parts = [
        {"path": f"part.{i:06d}.{job}.parquet", "size": staged[rel]} for i, rel in enumerate(names)
    ]
    targets = [f"{path}/{part['path']}" for part in parts]
    # Named before they are copied: a copy that fails part-way leaves parts to remove.
    published.extend(targets)
    # One call with both lists: fsspec runs the server-side copies concurrently (in batches)
    # and lists nothing; a copy per part would cost two listings and a round trip each, in turn.
    fs.copy([f"{stage}/{rel}" for rel in names], targets)
    manifest = {
        "format": MANIFEST_FORMAT,
        "version": 1,
        "job": job,
        "written": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "parts": parts,
    }
    data = json.dumps(manifest, indent=1).encode()
    if overwrite:
        fs.pipe_file(f"{path}/{MANIFEST}", data)
        published.clear()  # the table is published: nothing of it may be removed now
        keep = {part["path"] for part in parts} | {MANIFEST}
        old = [f"{path}/{rel}" for rel in _listing(fs, path) if rel not in keep]
        with contextlib.suppress(Exception):
            if old:
                fs.rm(old)
        return
    try:
        fs.pipe_file(f"{path}/{MANIFEST}", data, mode="create")
    except FileExistsError as exc:
        raise _published_meanwhile(url) from exc
    published.clear()


def _publish_csv(
    fs: Any, stage: str, staged: list[str], path: str, url: str, overwrite: bool
) -> None:
    # s3fs's and adlfs's "xb" complete the upload with If-None-Match: * (a completed multipart
    # upload on S3, a committed block list on Azure); other filesystems check, then write.
    conditional = not overwrite and protocol(url) in ("s3", "s3a", "az", "abfs", "abfss")
    if not overwrite and not conditional and fs.exists(path):
        raise _published_meanwhile(url)
    out = fs.open(path, "xb" if conditional else "wb", block_size=64 * 2**20)
    try:
        for rel in staged:
            with fs.open(f"{stage}/{rel}", "rb", block_size=16 * 2**20) as part:
                while chunk := part.read(16 * 2**20):
                    out.write(chunk)
    except BaseException:
        # Abort the upload: closing would complete it and publish a partial table.
        out.discard()
        out.closed = True
        raise
    try:
        out.close()
    except FileExistsError as exc:
        raise _published_meanwhile(url) from exc
    except OSError as exc:
        if "precondition" in str(exc).lower():
            raise _published_meanwhile(url) from exc
        raise


def _published_meanwhile(url: str) -> OutputExistsError:
    return OutputExistsError(
        f"{url!r} was written by another job while this one ran; this job's table is "
        "discarded and that one left as it is. Remove it or pass overwrite=True to replace it."
    )


def _run(pending: Any, progress: bool) -> None:
    """Compute ``pending`` so that no task of it still runs once this raises.

    When one task fails, dask raises at once while other tasks go on; one that finished
    after the stage was removed would leave a part there. On the threaded scheduler the job
    gets its own pool, and leaving it waits for the running tasks. On a distributed client the
    job's other tasks are cancelled (a task already running on a worker still finishes: the
    caller removes the stage again after a pause).
    """
    from xr_getregion.output import active_client

    client = active_client()
    if client is None:
        import dask

        if dask.config.get("scheduler", None) in (None, "threads", "threading"):
            # Reads wait on the network: as many in flight as reads.compute keeps.
            from xr_getregion.reads import io_pool, io_threads

            with io_pool(io_threads()) as pool:
                dask.compute(pending, scheduler=pool)
        else:
            dask.compute(pending)
        return
    futures = client.compute(pending)
    try:
        if progress:
            import distributed

            distributed.progress(futures)
        client.gather(futures)
    except BaseException as exc:
        with contextlib.suppress(Exception):
            client.cancel(futures, force=True)
        exc.add_note(_ON_CLUSTER)
        raise


# A marker on the exception: the stage is removed twice, the second time after running tasks
# had a moment to finish.
_ON_CLUSTER = "(xr_getregion: the job ran on a dask cluster)"


# --- reading tables ------------------------------------------------------------------------


def read_table(path: str | os.PathLike[str], storage_options: dict[str, Any] | None = None) -> Any:
    """Read a table this package wrote, as a pandas DataFrame, trusting only a complete one.

    On object storage a Parquet table is read from the parts its ``_xr_getregion`` manifest
    lists, in order, each checked against its listed size; a prefix without the manifest is
    no table (an interrupted job's) and raises FileNotFoundError. A CSV object, or a local
    path, is read as it is (it exists only when complete).
    """
    import pandas as pd

    text = os.fspath(path)
    if not is_url(text):
        if text.lower().endswith(".csv"):
            return pd.read_csv(text)
        return pd.read_parquet(text)
    fs, root = filesystem(text, storage_options)
    if text.lower().endswith(".csv"):
        with fs.open(root, "rb") as f:
            return pd.read_csv(f)
    try:
        manifest = json.loads(fs.cat_file(f"{root}/{MANIFEST}"))
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"{text!r} holds no complete table: its manifest {MANIFEST} is missing "
            "(no job finished writing it)."
        ) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        raise ValueError(f"{text}/{MANIFEST} is not a table manifest of this package.")
    frames = []
    for part in manifest["parts"]:
        key = f"{root}/{part['path']}"
        size = int(fs.size(key))
        if size != part["size"]:
            raise ValueError(f"{key}: {size} bytes, its manifest says {part['size']}.")
        with fs.open(key, "rb") as f:
            frames.append(pd.read_parquet(f))
    if not frames:
        raise ValueError(f"{text}/{MANIFEST} lists no part.")
    return pd.concat(frames, ignore_index=True)
