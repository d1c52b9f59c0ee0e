"""Writing tables to Parquet or CSV, so that a failed job leaves nothing that looks complete."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask
import dask.dataframe as dd
import xarray as xr

from xr_getregion.errors import ArgumentError
from xr_getregion.extraction import MAX_VALUES

__all__ = ["to_parquet", "write_table"]

SUFFIXES = (".parquet", ".csv")


def write_table(
    table: dd.DataFrame,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Write a lazy table to ``path`` (``.parquet``: a dataset directory; ``.csv``: one file).

    The table is written inside a temporary directory beside ``path`` (``.NAME.tmp-XXXX``)
    and renamed into place only when every partition is written. If the job fails or is
    interrupted (an exception in a task, a worker lost too often, Ctrl-C), ``path`` is as it
    was before the call (absent, or the previous table when ``overwrite``) and the temporary
    directory is removed. It runs on the current scheduler; with ``progress`` and a
    ``distributed.Client`` active, distributed's progress bar shows.

    Raises
    ------
    ArgumentError
        ``path`` has another suffix, holds a ``*``, or exists and ``overwrite`` is False.
    """
    target = Path(path)
    if target.suffix.lower() not in SUFFIXES:
        raise ArgumentError(
            f"the output {str(target)!r} must end in .parquet or .csv; got {target.suffix!r}."
        )
    check_no_wildcard(target)
    if target.exists() and not overwrite:
        raise ArgumentError(f"{str(target)!r} exists; remove it or pass overwrite=True.")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Absolute, so worker processes with another working directory write to the same place.
    work = target.absolute().with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:12]}")
    work.mkdir()
    staged = work / target.name
    # No directory may be created by a write task: after a failure the temporary directory
    # is removed while tasks of the job may still be running, and one that recreated it would
    # leave a partial table behind (fsspec's local filesystem makes parents when asked).
    no_mkdir = {"auto_mkdir": False}
    try:
        if target.suffix.lower() == ".parquet":
            pending = table.to_parquet(
                staged, engine="pyarrow", write_index=False, compute=False,
                storage_options=no_mkdir,
            )  # fmt: skip
        else:
            pending = table.to_csv(
                staged, single_file=True, index=False, compute=False, storage_options=no_mkdir
            )
        _run(pending, progress)
        if target.exists() and not overwrite:
            raise ArgumentError(f"{str(target)!r} appeared while writing; it is left alone.")
        _replace(staged, target, work / "previous")
    finally:
        _discard(work)
    return target


def check_no_wildcard(target: Path) -> None:
    """Refuse a path holding ``*``: dask's writers read it as the place of a partition
    number (``part-*.parquet``), and fail on a single table with an ``AssertionError``.

    Raises
    ------
    ArgumentError
        ``*`` is in the path, in its name or a directory's.
    """
    if "*" in str(target):
        raise ArgumentError(
            f"the output {str(target)!r} holds a '*', which dask's writers read as a "
            "partition-number wildcard; rename it without '*' (e.g. "
            f"{str(target).replace('*', '_')!r})."
        )


def _replace(staged: Path, target: Path, aside: Path) -> None:
    """Move ``staged`` to ``target``; the previous ``target`` is moved to ``aside`` first.

    A file replaces a file in one atomic rename. A directory cannot replace a directory that
    way, so the old one is moved aside first and moved back if the second rename fails: once
    this returns or raises, ``target`` holds the new table or the old one.
    """
    if not target.exists() or (staged.is_file() and target.is_file()):
        os.replace(staged, target)
        return
    os.rename(target, aside)
    try:
        os.rename(staged, target)
    except BaseException:
        os.rename(aside, target)
        raise


def _discard(work: Path) -> None:
    """Remove the temporary directory, even while tasks of a failed job still write to it.

    When one task fails, the scheduler raises at once but tasks already running elsewhere
    (other threads, other workers) go on. The directory is renamed before it is removed: a
    task that opens its file after that finds no parent directory and fails (write_table asks
    the writers not to create directories), so nothing can reappear under the temporary name.
    """
    if not work.exists():
        return
    trash = work.with_name(work.name + ".discard")
    try:
        os.rename(work, trash)
    except OSError:
        trash = work
    shutil.rmtree(trash, ignore_errors=True)


def _run(pending: Any, progress: bool) -> None:
    client = _active_client()
    if client is not None and progress:
        import distributed

        futures = client.compute(pending)
        distributed.progress(futures)
        client.gather(futures)
    else:
        dask.compute(pending)


def _active_client() -> Any:
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def to_parquet(
    cube: xr.DataArray | xr.Dataset,
    geometry: Any,
    path: str | os.PathLike[str],
    scale: float | None = None,
    crs: Any = "native",
    crs_transform: Any = None,
    *,
    max_values: int | None = MAX_VALUES,
    geometry_crs: Any = None,
    id_column: str | None = None,
    properties: Sequence[str] | None = None,
    overwrite: bool = False,
) -> Path:
    """Extract ``geometry`` (one region or many features) and stream the rows to ``path``.

    Takes :func:`~xr_getregion.get_region`'s arguments; the table is built lazily and each
    partition is written as it is computed, on the current dask scheduler (a
    ``distributed.Client`` if one is active). ``path`` ending in ``.csv`` writes one CSV.
    """
    from xr_getregion.api import get_region

    table = get_region(
        cube, geometry, scale, crs, crs_transform,
        max_values=max_values, geometry_crs=geometry_crs,
        id_column=id_column, properties=properties, lazy=True,
    )  # fmt: skip
    return write_table(table, path, overwrite=overwrite)
