"""Where a finished table lands: two jobs to one path, and what ``overwrite`` may replace.

The race tests hold both jobs at the final step (the rename or link that puts the table at its
path) until both are there, so each has passed every check before either moves: the
interleaving a check-then-rename protocol loses to, forced instead of hoped for.
"""

from __future__ import annotations

import io
import os
import signal
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dask
import dask.dataframe as dd
import geopandas as gpd
import pandas as pd
import pyarrow.dataset as pads
import pytest
import shapely

import xr_getregion
from xr_getregion import ArgumentError, errors, output
from xr_getregion.cli import main

UTM = "EPSG:32615"
KEY = ["id", "latitude", "longitude"]
TIMEOUT = 20.0


def ordered(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(KEY, kind="stable").reset_index(drop=True)


def field(cols: int, rows: int):
    """A box over ``cols`` x ``rows`` pixels of the conftest cube."""
    return shapely.box(500_001, 4_000_000 - 30 * rows + 1, 500_000 + 30 * cols - 1, 3_999_999)


def read(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        return pd.read_csv(path, dtype={"id": str})
    return pd.read_parquet(path)


def same_table(path: Path, expected: pd.DataFrame) -> None:
    """The table at ``path`` holds ``expected``'s rows (through CSV text for a CSV file)."""
    if path.suffix == ".csv":
        expected = pd.read_csv(io.StringIO(expected.to_csv(index=False)), dtype={"id": str})
    pd.testing.assert_frame_equal(ordered(read(path)), ordered(expected), check_dtype=False)


def extract_inputs(tmp_path: Path, cube) -> list[str]:
    """A Zarr store of ``cube`` and a one-field GeoJSON, as ``extract``'s input arguments."""
    cube.to_dataset(name="v").to_zarr(tmp_path / "c.zarr")
    gpd.GeoDataFrame(geometry=[field(2, 2)], crs=UTM).to_file(tmp_path / "f.geojson")
    zarr, features = str(tmp_path / "c.zarr"), str(tmp_path / "f.geojson")
    return [zarr, "--variable", "v", "--geometry", features]


def hold_the_final_step(monkeypatch, target: Path, parties: int = 2) -> threading.Barrier:
    """Make every rename, replace or link onto ``target`` wait until ``parties`` are waiting."""
    barrier = threading.Barrier(parties, timeout=TIMEOUT)
    for name in ("link", "rename", "replace"):
        original = getattr(os, name)

        def held(src, dst, *args, _original=original, **kwargs):
            if Path(dst) == target:
                barrier.wait()
            return _original(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, name, held)
    return barrier


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_two_jobs_racing_to_one_path_one_wins_and_the_other_is_refused(
    tmp_path, cube, monkeypatch, suffix
):
    """Both jobs find the path free, write their table and reach the final step together:
    exactly one table lands, the other job raises and leaves nothing behind."""
    target = tmp_path / f"table{suffix}"
    regions = {"small": field(2, 2), "large": field(3, 4)}
    expected = {k: cube.ee.get_region(r, geometry_crs=UTM) for k, r in regions.items()}
    assert len(expected["small"]) == 2 * 2 * 3 and len(expected["large"]) == 3 * 4 * 3
    hold_the_final_step(monkeypatch, target)

    def job(name: str):
        try:
            return xr_getregion.to_parquet(cube, regions[name], target, geometry_crs=UTM)
        except Exception as exc:
            return exc

    with dask.config.set(scheduler="synchronous"), ThreadPoolExecutor(2) as pool:
        outcomes = dict(zip(regions, pool.map(job, regions), strict=True))
    won = [k for k, v in outcomes.items() if v == target]
    lost = [v for v in outcomes.values() if isinstance(v, BaseException)]
    assert len(won) == 1 and len(lost) == 1, outcomes
    exc = lost[0]
    assert type(exc) is errors.OutputExistsError
    assert isinstance(exc, ArgumentError) and isinstance(exc, FileExistsError)
    assert repr(str(target)) in str(exc) and "overwrite=True" in str(exc)
    assert "another job" in str(exc)
    # The winner's table, whole, and no temporary of either job.
    same_table(target, expected[won[0]])
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_two_overwriting_jobs_both_succeed_and_one_table_remains(tmp_path, cube, monkeypatch):
    """With overwrite=True the later table replaces the earlier: both report success, and the
    path holds one of the two tables whole, never a mixture."""
    target = tmp_path / "table.parquet"
    regions = [field(2, 2), field(3, 4)]
    xr_getregion.to_parquet(cube, field(1, 1), target, geometry_crs=UTM)
    expected = [ordered(cube.ee.get_region(r, geometry_crs=UTM)) for r in regions]

    def job(region):
        return xr_getregion.to_parquet(cube, region, target, geometry_crs=UTM, overwrite=True)

    with dask.config.set(scheduler="synchronous"), ThreadPoolExecutor(2) as pool:
        assert list(pool.map(job, regions)) == [target, target]
    got = ordered(read(target))
    assert any(len(got) == len(e) and got.equals(e.astype(got.dtypes)) for e in expected)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_an_overwrite_that_loses_the_race_replaces_the_winner(tmp_path, cube, monkeypatch):
    """Another overwriting job publishes between this job's two renames (CI once hit this):
    overwrite=True replaces that table too, rather than failing."""
    target = tmp_path / "t.parquet"
    xr_getregion.to_parquet(cube, field(1, 1), target, geometry_crs=UTM)
    winner = tmp_path / "winner.parquet"
    xr_getregion.to_parquet(cube, field(3, 4), winner, geometry_crs=UTM)
    real_rename = os.rename
    injected = []

    def rename(src, dst):
        src, dst = Path(src), Path(dst)
        staged = src.name == target.name and src.parent.name.startswith(f".{target.name}.tmp-")
        if staged and dst == target and not injected:
            real_rename(winner, target)  # the other job wins the name first
            injected.append(True)
        return real_rename(src, dst)

    monkeypatch.setattr(output.os, "rename", rename)
    assert (
        xr_getregion.to_parquet(cube, field(2, 2), target, geometry_crs=UTM, overwrite=True)
        == target
    )
    assert injected
    same_table(target, ordered(cube.ee.get_region(field(2, 2), geometry_crs=UTM)))
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


# --- what overwrite=True may replace ---------------------------------------------------------


def _tree(path: Path) -> dict[str, bytes | None]:
    """Every entry under ``path``, with file contents: to prove a directory was left alone."""
    return {
        str(p.relative_to(path)): p.read_bytes() if p.is_file() else None
        for p in sorted(path.rglob("*"))
    }


@pytest.mark.parametrize(
    "name, contents",
    [
        ("x.csv", {"notes.txt": b"my notes"}),
        ("x.csv", {}),
        ("x.parquet", {"notes.txt": b"my notes"}),
        ("x.parquet", {"part.0.parquet": b"PAR1", "thesis.docx": b"chapter 1"}),
        ("x.parquet", {"year=2020/part.0.parquet": b"PAR1"}),
    ],
    ids=["csv-with-a-file", "csv-empty", "parquet-other-file", "parquet-mixed", "parquet-subdir"],
)
def test_overwrite_refuses_a_directory_that_is_not_a_table_of_ours(tmp_path, cube, name, contents):
    target = tmp_path / name
    target.mkdir()
    for rel, data in contents.items():
        (target / rel).parent.mkdir(parents=True, exist_ok=True)
        (target / rel).write_bytes(data)
    before = _tree(target)
    with pytest.raises(ArgumentError) as info:
        xr_getregion.to_parquet(cube, field(2, 2), target, geometry_crs=UTM, overwrite=True)
    assert type(info.value) is errors.OutputExistsError
    message = str(info.value)
    assert repr(str(target)) in message and "left alone" in message
    if name.endswith(".csv"):
        assert "a .csv table is one file" in message
    else:
        assert "not a table" in message
    assert _tree(target) == before
    assert [p.name for p in tmp_path.iterdir()] == [name]


def test_overwrite_replaces_what_a_table_of_ours_is(tmp_path, cube):
    """A Parquet table this package wrote (it carries the marker), a Parquet dataset of dask's
    part files, an empty directory and a file are replaced; the new table carries the marker."""
    expected = cube.ee.get_region(field(2, 2), geometry_crs=UTM)
    ours = tmp_path / "ours.parquet"
    xr_getregion.to_parquet(cube, field(3, 3), ours, geometry_crs=UTM)
    assert (ours / "_xr_getregion").is_file()
    dasks = tmp_path / "dask.parquet"
    dd.from_pandas(pd.DataFrame({"a": range(10)}), npartitions=3).to_parquet(
        dasks, write_index=False, write_metadata_file=True
    )
    empty = tmp_path / "empty.parquet"
    empty.mkdir()
    single = tmp_path / "single.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(single)
    text = tmp_path / "old.csv"
    text.write_text("a\n1\n")
    for target in (ours, dasks, empty, single, text):
        xr_getregion.to_parquet(cube, field(2, 2), target, geometry_crs=UTM, overwrite=True)
        same_table(target, expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in (ours, dasks, empty, single, text)
    )


def test_the_marker_is_ignored_by_parquet_readers(tmp_path, cube):
    path = tmp_path / "t.parquet"
    xr_getregion.to_parquet(cube, field(2, 3), path, geometry_crs=UTM)
    expected = ordered(cube.ee.get_region(field(2, 3), geometry_crs=UTM))
    assert sorted(p.name for p in path.iterdir()) == ["_xr_getregion", "part.0.parquet"]
    for got in (
        pd.read_parquet(path),
        dd.read_parquet(path).compute(),
        pads.dataset(path, format="parquet").to_table().to_pandas(),
    ):
        pd.testing.assert_frame_equal(ordered(got), expected, check_dtype=False)


def test_extract_overwrite_onto_a_folder_it_did_not_write_is_one_line(tmp_path, capfd):
    """The command refuses before it opens any input, and leaves the folder as it was."""
    folder = tmp_path / "x.csv"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    capfd.readouterr()
    missing = [str(tmp_path / "missing.zarr"), "--geometry", str(tmp_path / "missing.geojson")]
    code = main(["extract", *missing, "--out", str(folder), "--overwrite"])
    err = capfd.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("xr-getregion: error: ") and repr(str(folder)) in err
    assert "a .csv table is one file" in err and "left alone" in err
    assert (folder / "notes.txt").read_text() == "keep me"


def test_extract_loser_of_a_race_names_overwrite_flag(tmp_path, cube, monkeypatch, capfd):
    """When the table appears at --out while the command runs, its line names --overwrite."""
    out = tmp_path / "t.csv"
    real_run = output._run

    def another_job_finishes_first(pending, progress):
        real_run(pending, progress)
        out.write_text("another job's table\n")

    monkeypatch.setattr(output, "_run", another_job_finishes_first)
    inputs = extract_inputs(tmp_path, cube)
    capfd.readouterr()
    code = main(["extract", *inputs, "--out", str(out)])
    err = capfd.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "another job" in err and "--overwrite" in err and "overwrite=True" not in err
    assert out.read_text() == "another job's table\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.zarr", "f.geojson", "t.csv"]


# --- signal handlers -------------------------------------------------------------------------


def test_to_parquet_handles_sigterm_and_sighup_only_while_it_runs(tmp_path, cube, monkeypatch):
    """On the main thread, SIGTERM and SIGHUP get a handler while the job runs (so a kill
    unwinds through the cleanup), and the previous handlers are back afterwards. A handler
    the program set itself is left in place, and so is an ignored signal (``nohup``)."""
    seen: list[tuple[object, object]] = []
    real_run = output._run

    def recording_run(pending, progress):
        seen.append((signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGHUP)))
        real_run(pending, progress)

    def own(signum, frame):
        raise RuntimeError("the program's own handler")

    monkeypatch.setattr(output, "_run", recording_run)
    old_term = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    old_hup = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    try:
        xr_getregion.to_parquet(cube, field(1, 1), tmp_path / "a.csv", geometry_crs=UTM)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL
        assert all(callable(h) for h in seen[0]) and seen[0][0] is seen[0][1]
        signal.signal(signal.SIGTERM, own)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        xr_getregion.to_parquet(cube, field(1, 1), tmp_path / "b.csv", geometry_crs=UTM)
        assert seen[1] == (own, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGTERM) is own
        assert signal.getsignal(signal.SIGHUP) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, old_term)
        signal.signal(signal.SIGHUP, old_hup)


@pytest.fixture
def default_ending_signals():
    """SIGTERM and SIGHUP at their default handlers, as in a fresh process."""
    old = {s: signal.signal(s, signal.SIG_DFL) for s in (signal.SIGTERM, signal.SIGHUP)}
    yield
    for s, handler in old.items():
        signal.signal(s, handler)


def test_a_signal_whose_exception_was_wrapped_still_ends_as_the_signal(default_ending_signals):
    """CPython wraps an exception raised during ``__set_name__`` in a RuntimeError, and a
    signal can land there (seen with pyarrow's filesystem wrapper): it must still be the
    signal that ends the job, not a failure of the job."""
    from xr_getregion._signals import Terminated, terminate_as_exit

    with pytest.raises(Terminated) as info, terminate_as_exit():
        try:
            signal.raise_signal(signal.SIGHUP)
        except BaseException as exc:
            raise RuntimeError("Error calling __set_name__") from exc
    assert (info.value.code, info.value.name) == (129, "SIGHUP")
    assert signal.getsignal(signal.SIGHUP) is signal.SIG_DFL


def test_a_signal_during_cleanup_waits_for_the_cleanup(default_ending_signals):
    from xr_getregion._signals import Terminated, signals_deferred, terminate_as_exit

    done = []
    with pytest.raises(Terminated) as info, terminate_as_exit(), signals_deferred():
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGTERM)  # a second one is ignored, not raised twice
        done.append("the rest of the cleanup")
    assert done == ["the rest of the cleanup"] and info.value.code == 143


def test_ctrl_c_wrapped_by_the_code_it_landed_in_is_still_ctrl_c(
    tmp_path, cube, monkeypatch, capfd
):
    """The job's failure handler sees a RuntimeError whose cause is the KeyboardInterrupt:
    the command reports the interrupt (one line, 130), not a failed job (status 1)."""

    def interrupted_inside_a_wrapper(pending, progress):
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as exc:
            raise RuntimeError("Error calling __set_name__") from exc

    monkeypatch.setattr(output, "_run", interrupted_inside_a_wrapper)
    inputs = extract_inputs(tmp_path, cube)
    capfd.readouterr()
    assert main(["extract", *inputs, "--out", str(tmp_path / "t.parquet")]) == 130
    assert capfd.readouterr().err == "xr-getregion: interrupted; no table was written.\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.zarr", "f.geojson"]


def test_a_table_moved_aside_while_it_is_checked_is_nothing_to_refuse(tmp_path, monkeypatch):
    # Another overwriting job renames the old table aside between the check that it is a
    # directory and the listing of its files: that is no error (CI saw this race once).
    target = tmp_path / "table.parquet"
    target.mkdir()
    (target / "part.0.parquet").write_bytes(b"PAR1")
    listing = os.scandir

    def moved_meanwhile(path):
        if Path(path) == target:
            target.rename(tmp_path / "aside")
        return listing(path)

    monkeypatch.setattr(output.os, "scandir", moved_meanwhile)
    output.check_target(target, overwrite=True)
    assert not target.exists() and (tmp_path / "aside" / "part.0.parquet").exists()
