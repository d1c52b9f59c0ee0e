"""Writing tables to Parquet or CSV, so that a failed job leaves nothing that looks complete.

How a table reaches its path
----------------------------
Every partition is written inside a hidden directory beside the target NAME,
``.NAME.tmp-XXXX``. Only a complete table is moved to NAME, by one operation that publishes
all of it or nothing and, without ``overwrite``, refuses a NAME that exists:

- a CSV file is published with ``os.link(staged, NAME)``, which fails if anything is at NAME
  (a file, a directory, a link). On a filesystem without hard links, NAME is claimed with
  ``os.open(NAME, O_CREAT | O_EXCL)`` (which fails the same way) and filled by ``os.replace``;
  a reader may then see an empty file for that moment.
- a Parquet dataset directory is published with ``os.rename(staged, NAME)``, which fails if
  NAME is a file or a directory that is not empty. The staged directory always holds the
  marker file ``_xr_getregion`` (Parquet readers skip names starting with ``_``), so a
  published table is never empty and a second rename onto it always fails. The rename would
  replace an empty directory, which holds nothing to lose; one there when the job starts or
  ends is refused like any existing NAME.

So of two jobs writing one NAME without ``overwrite``, exactly one publishes its table however
their steps interleave; the other raises :class:`~xr_getregion.errors.OutputExistsError` and
removes its temporary directory. A reader sees no table or a whole one, never part of one.

What ``overwrite`` may replace
------------------------------
A file at NAME is replaced by one ``os.replace``. A directory is first renamed into the
temporary directory, checked there (nothing can be added to it once moved) and the new table
renamed to NAME; if that fails, the old one is moved back. ``overwrite`` replaces only:

- a file (a CSV or single-file Parquet table, or anything else the caller named);
- an empty directory;
- a directory holding nothing but regular files named ``part.<n>.parquet``, ``_metadata``,
  ``_common_metadata`` and the marker ``_xr_getregion``: a Parquet dataset written by this
  package, or by dask under its default file names.

Anything else is left as it is and refused: a ``.csv`` NAME that is a directory (this package
writes a CSV table as one file), or a directory holding any other file or a subdirectory.

Signals
-------
While a table is written on the main thread, SIGTERM and SIGHUP (when their handlers are the
default, which ends the process at once) raise ``Terminated``, a ``SystemExit`` with status
128 + the signal number, so the temporary directory is removed as it is after Ctrl-C.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import sys
import uuid
from pathlib import Path
from typing import Any, Unpack

import dask.dataframe as dd
import xarray as xr

from xr_getregion._signals import signals_deferred, terminate_as_exit
from xr_getregion.errors import ArgumentError, OutputExistsError
from xr_getregion.grid import NATIVE
from xr_getregion.options import FeatureOptions, check_keywords
from xr_getregion.reads import compute
from xr_getregion.types import CRSLike, GeometryLike, TransformLike

__all__ = ["to_parquet", "write_table"]

SUFFIXES = (".parquet", ".csv")
# Written into every Parquet dataset directory this package publishes (see the module doc).
MARKER = "_xr_getregion"
_TABLE_FILE = re.compile(rf"part\.\d+\.parquet|_metadata|_common_metadata|{MARKER}")
# A rename or link that fails because something is already at the target.
_TAKEN = (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR)
# os.link failing because the filesystem has no hard links (FAT, some network shares).
_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.ENOSYS}


def write_table(
    table: dd.DataFrame,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    progress: bool = False,
    storage_options: dict[str, Any] | None = None,
) -> Path | str:
    """Write a lazy table to ``path`` (``.parquet``: a dataset directory; ``.csv``: one file).

    ``path`` may be an object-store URL (``s3://``, ``gs://``, ``az://``), written through
    fsspec with ``storage_options`` by the staging-and-manifest protocol of
    :mod:`xr_getregion.storage` (there is no rename there); the URL is returned.

    The table is written inside a temporary directory beside ``path`` (``.NAME.tmp-XXXX``)
    and moved into place only when every partition is written, in one step that refuses an
    existing ``path`` unless ``overwrite`` (see the module docstring). If the job fails or is
    interrupted (an exception in a task, a worker lost too often, Ctrl-C, SIGTERM or SIGHUP),
    ``path`` is as it was before the call (absent, or the previous table when ``overwrite``)
    and the temporary directory is removed. It runs on the current scheduler; with
    ``progress`` and a ``distributed.Client`` active, distributed's progress bar shows.

    Raises
    ------
    ArgumentError
        ``path`` has another suffix, or holds a ``*``.
    OutputExistsError
        ``path`` exists and ``overwrite`` is False (also when another job published a table
        there while this one ran), or ``path`` is a directory ``overwrite`` may not replace.
    """
    from xr_getregion.storage import is_url, write_remote_table

    if is_url(path):
        url = os.fspath(path)
        if not url.lower().endswith(SUFFIXES):
            raise ArgumentError(f"the output {url!r} must end in .parquet or .csv.")
        check_no_wildcard(Path(url.split("://", 1)[1]))
        return write_remote_table(
            table, url, overwrite=overwrite, progress=progress, storage_options=storage_options
        )
    target = Path(path)
    if target.suffix.lower() not in SUFFIXES:
        raise ArgumentError(
            f"the output {str(target)!r} must end in .parquet or .csv; got {target.suffix!r}."
        )
    check_no_wildcard(target)
    check_target(target, overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Absolute, so worker processes with another working directory write to the same place.
    work = target.absolute().with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:12]}")
    # No directory may be created by a write task: after a failure the temporary directory
    # is removed while tasks of the job may still be running, and one that recreated it would
    # leave a partial table behind (fsspec's local filesystem makes parents when asked).
    no_mkdir = {"auto_mkdir": False}
    with terminate_as_exit():
        staged = work / target.name
        try:
            # Inside the try: a SIGTERM right after the directory is made removes it too.
            work.mkdir()
            if target.suffix.lower() == ".parquet":
                pending = table.to_parquet(
                    staged,
                    engine="pyarrow",
                    write_index=False,
                    compute=False,
                    storage_options=no_mkdir,
                )
            else:
                pending = table.to_csv(
                    staged,
                    single_file=True,
                    index=False,
                    compute=False,
                    storage_options=no_mkdir,
                )
            _run(pending, progress)
            if target.suffix.lower() == ".parquet":
                staged.mkdir(exist_ok=True)
                (staged / MARKER).write_text(
                    "A table written by xr_getregion; `overwrite` may replace this directory "
                    "only while it holds nothing but part.<n>.parquet files and this one.\n"
                )
            _publish(staged, target, work / "previous", overwrite)
        finally:
            with signals_deferred():
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


def check_target(target: Path, overwrite: bool) -> None:
    """Refuse a ``target`` that exists (unless ``overwrite``) or that ``overwrite`` may not
    replace: a directory that is not a table this package wrote (see the module docstring)."""
    if not os.path.lexists(target):
        return
    if not overwrite:
        raise OutputExistsError(f"{str(target)!r} exists; remove it or pass overwrite=True.")
    if target.is_dir() and not target.is_symlink():
        try:
            _refuse_foreign_directory(target, target)
        except FileNotFoundError:
            # Another overwriting job moved it aside meanwhile: nothing is left to refuse
            # (what a swap moves aside is checked there again).
            return


def _refuse_foreign_directory(directory: Path, target: Path) -> None:
    """Raise unless ``directory`` (the target, or the target moved aside) may be replaced."""
    if target.suffix.lower() == ".csv":
        raise OutputExistsError(
            f"{str(target)!r} is a directory, and a .csv table is one file: it is left alone. "
            "Remove it yourself or write to another path."
        )
    with os.scandir(directory) as entries:
        foreign = sorted(
            entry.name + ("/" if entry.is_dir(follow_symlinks=False) else "")
            for entry in entries
            if not (entry.is_file(follow_symlinks=False) and _TABLE_FILE.fullmatch(entry.name))
        )
    if foreign:
        raise OutputExistsError(
            f"{str(target)!r} is not a table this package wrote (it holds {foreign[0]!r}"
            + (f" and {len(foreign) - 1} other entries" if len(foreign) > 1 else "")
            + "), so it is left alone: overwrite=True replaces only a file, an empty directory "
            "or a directory of part.<n>.parquet files. Remove it yourself or write elsewhere."
        )


def _published_meanwhile(target: Path, exc: OSError | None = None) -> OutputExistsError:
    error = OutputExistsError(
        f"{str(target)!r} was written by another job while this one ran; this job's table is "
        "discarded and that one left as it is. Remove it or pass overwrite=True to replace it."
    )
    error.__cause__ = exc
    return error


def _publish(staged: Path, target: Path, aside: Path, overwrite: bool) -> None:
    """Move the complete table ``staged`` to ``target`` in one step (see the module doc)."""
    if overwrite:
        _replace(staged, target, aside)
    elif staged.is_dir():
        # The rename would replace an empty directory; one that is there now is refused.
        if os.path.lexists(target):
            raise _published_meanwhile(target)
        try:
            os.rename(staged, target)
        except OSError as exc:
            if exc.errno in _TAKEN:
                raise _published_meanwhile(target, exc) from exc
            raise
    else:
        _link_new(staged, target)


def _link_new(staged: Path, target: Path) -> None:
    """Publish the file ``staged`` as ``target``, failing if anything is at ``target``."""
    try:
        os.link(staged, target)
    except FileExistsError as exc:
        raise _published_meanwhile(target, exc) from exc
    except OSError as exc:
        if exc.errno not in _NO_HARD_LINKS:
            raise
        try:
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError as claimed:
            raise _published_meanwhile(target, claimed) from claimed
        os.replace(staged, target)
    else:
        os.unlink(staged)


# How often an overwrite tries again when other overwriting jobs keep publishing between
# its two renames; each try only moves tables of this package aside.
_OVERWRITE_TRIES = 5


def _replace(staged: Path, target: Path, aside: Path) -> None:
    """Move ``staged`` to ``target``; a previous ``target`` directory is moved to ``aside``.

    A file replaces a file in one atomic rename. A directory cannot replace a directory that
    way, so the old one is moved aside first, checked there (so nothing this package may not
    replace is lost, whatever was added to it meanwhile) and moved back if the second rename
    fails: once this returns or raises, ``target`` holds the new table or the old one.
    """
    check_target(target, overwrite=True)
    for attempt in range(_OVERWRITE_TRIES):
        # A fresh place aside each time: a failed swap may have left the old table there.
        spot = aside if attempt == 0 else aside.with_name(f"{aside.name}-{attempt}")
        try:
            # A signal between the two renames waits for the second: no table is lost.
            with signals_deferred():
                _swap(staged, target, spot)
            return
        except OutputExistsError as exc:
            # Another overwriting job published between our two renames: replace its table
            # too, as overwrite asks (a foreign folder, with no OSError behind it, is not).
            cause = exc.__cause__
            raced = isinstance(cause, OSError) and cause.errno in _TAKEN and staged.is_dir()
            if not raced or attempt == _OVERWRITE_TRIES - 1:
                raise


def _swap(staged: Path, target: Path, aside: Path) -> None:
    if staged.is_file():
        try:
            os.replace(staged, target)
        except IsADirectoryError as exc:  # a directory appeared since the check
            raise _published_meanwhile(target, exc) from exc
        return
    try:
        os.rename(target, aside)
    except FileNotFoundError:
        moved = False
    else:
        moved = True
        if aside.is_dir() and not aside.is_symlink():
            try:
                _refuse_foreign_directory(aside, target)
            except OutputExistsError:
                os.rename(aside, target)
                raise
    try:
        os.rename(staged, target)
    except BaseException as exc:
        if moved:
            # Fails only if another job's table took the name meanwhile: it stays.
            with contextlib.suppress(OSError):
                os.rename(aside, target)
        if isinstance(exc, OSError) and exc.errno in _TAKEN:
            raise _published_meanwhile(target, exc) from exc
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
    client = active_client()
    if client is not None and progress:
        import distributed

        futures = client.compute(pending)
        distributed.progress(futures)
        client.gather(futures)
    else:
        compute(pending)


def active_client() -> Any:
    """The distributed client jobs run on, or ``None``; ``distributed`` is not imported to
    find out (without it imported there is no client)."""
    if "distributed" not in sys.modules:
        return None
    try:
        from distributed import default_client

        return default_client()
    except (ImportError, ValueError):
        return None


def to_parquet(
    cube: xr.DataArray | xr.Dataset,
    geometry: GeometryLike,
    path: str | os.PathLike[str],
    scale: float | None = None,
    crs: CRSLike | None = NATIVE,
    crs_transform: TransformLike | None = None,
    *,
    overwrite: bool = False,
    storage_options: dict[str, Any] | None = None,
    **options: Unpack[FeatureOptions],
) -> Path | str:
    """Extract ``geometry`` (one region or many features) and stream the rows to ``path``.

    Takes :func:`~xr_getregion.get_region`'s arguments; the table is built lazily and each
    partition is written as it is computed, on the current dask scheduler (a
    ``distributed.Client`` if one is active). ``path`` ending in ``.csv`` writes one CSV.
    ``path`` may be an ``s3://``, ``gs://`` or ``az://`` URL (see :func:`write_table`), with
    ``storage_options`` for fsspec.

    Parameters
    ----------
    cube, geometry, scale, crs, crs_transform, **options
        As for :func:`~xr_getregion.get_region` (``max_values``, ``geometry_crs``,
        ``id_column``, ``properties``, ``pyramiding``), which always runs lazily here.
    path, overwrite, storage_options
        As for :func:`write_table`.
    """
    from xr_getregion.api import get_region

    check_keywords("to_parquet", FeatureOptions, options)
    table = get_region(cube, geometry, scale, crs, crs_transform, lazy=True, **options)
    return write_table(table, path, overwrite=overwrite, storage_options=storage_options)
