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

    The table is written under a temporary name beside ``path`` and renamed into place only
    when every partition is written, so a failed or interrupted job leaves no ``path``. It
    runs on the current scheduler; with ``progress`` and a ``distributed.Client`` active,
    distributed's progress bar shows.

    Raises
    ------
    ArgumentError
        ``path`` has another suffix, or exists and ``overwrite`` is False.
    """
    target = Path(path)
    if target.suffix.lower() not in SUFFIXES:
        raise ArgumentError(
            f"the output {str(target)!r} must end in .parquet or .csv; got {target.suffix!r}."
        )
    if target.exists() and not overwrite:
        raise ArgumentError(f"{str(target)!r} exists; remove it or pass overwrite=True.")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        if target.suffix.lower() == ".parquet":
            pending = table.to_parquet(tmp, engine="pyarrow", write_index=False, compute=False)
        else:
            pending = table.to_csv(tmp, single_file=True, index=False, compute=False)
        _run(pending, progress)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:12]}")
            target.rename(old)
            tmp.rename(target)
            _remove(old)
        else:
            tmp.rename(target)
    except BaseException:
        _remove(tmp)
        raise
    return target


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


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()


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
