"""Faults while a job runs: a worker process killed mid-job on a ``distributed.LocalCluster``,
and a table job that fails or is interrupted part-way.

The cube is a dask array whose chunk-read function (a closure, so cloudpickle ships it by
value to the worker processes) computes pixel ``(t, b, y, x)`` as ``t*1e6 + b*1e5 + y*300 + x``
and leaves a marker file per read. Markers and a gate file make the faults deterministic: the
test kills a worker only while that worker is inside a read, and only then lets reads go on.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import dask
import dask.array as da
import distributed
import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from dask.dataframe.io.parquet.arrow import ArrowDatasetEngine

import xr_getregion
from tests.helpers import make_cube, write_slow_job
from xr_getregion import GetRegionWarning

NT, NB, NY, NX = 4, 2, 60, 80
CHUNKS = (1, NB, 20, 20)  # 4 x 3 x 4 = 48 chunk reads
KEY = ["feature", "id", "latitude", "longitude"]
TIMEOUT = 20.0  # no wait in these tests should come near this; it only stops a hang


def ordered(df: pd.DataFrame) -> pd.DataFrame:
    return df.sort_values(KEY, kind="stable").reset_index(drop=True)


def slow_cube(
    markers: Path,
    *,
    hold_after: int | None = None,
    fail_at: tuple[int, int, int] | None = None,
    die_at: tuple[int, int, int] | None = None,
):
    """A (time, band, y, x) cube read chunk by chunk through a function that leaves markers.

    ``hold_after``: once that many reads have started, each further read writes
    ``waiting-<pid>`` and waits for the file ``go``. ``fail_at`` / ``die_at``: the read of
    chunk ``(t, y, x)`` waits until 6 other reads have started (so the job is under way
    whatever order the scheduler picks), then raises, or kills its own worker process.
    """

    def count() -> int:
        return len(list(markers.glob("read-*")))

    def read(block_info=None):
        info = block_info[None]
        ct, _, cy, cx = info["chunk-location"]
        pid = os.getpid()
        (markers / f"read-{ct}-{cy}-{cx}-{pid}-{time.monotonic_ns()}").touch()
        if (ct, cy, cx) in (fail_at, die_at):
            deadline = time.monotonic() + TIMEOUT
            while count() < 7 and time.monotonic() < deadline:
                time.sleep(0.005)
            if (ct, cy, cx) == fail_at:
                raise RuntimeError(f"chunk {fail_at} cannot be read")
            os.kill(pid, signal.SIGKILL)
        if hold_after is not None and count() > hold_after:
            (markers / f"waiting-{pid}").touch()
            deadline = time.monotonic() + TIMEOUT
            while not (markers / "go").exists() and time.monotonic() < deadline:
                time.sleep(0.005)
        t, b, y, x = np.meshgrid(
            *(np.arange(lo, hi) for lo, hi in info["array-location"]), indexing="ij"
        )
        return (t * 1_000_000 + b * 100_000 + y * 300 + x).astype(np.float32)

    chunks = tuple((c,) * (n // c) for c, n in zip(CHUNKS, (NT, NB, NY, NX), strict=True))
    data = da.map_blocks(
        read,
        chunks=chunks,
        dtype=np.float32,
        meta=np.empty((0,) * 4, np.float32),
        name=f"slow-read-{markers.name}-{time.monotonic_ns()}",
    )
    return make_cube(NY, NX, NT, ("a", "b"), data=data)


@pytest.fixture(scope="module")
def features():
    """A box over most of the cube (every chunk), an overlapping field, and points."""
    x0, y0 = 500_000.0, 4_000_000.0
    shapes = [
        shapely.box(x0 + 20, y0 - 1790, x0 + 2390, y0 - 10),
        shapely.box(x0 + 600, y0 - 900, x0 + 1500, y0 - 300),
        shapely.Point(x0 + 45, y0 - 45),
        shapely.Point(x0 + 2385, y0 - 1785),
    ]
    return gpd.GeoDataFrame({"name": ["all", "field", "p1", "p2"]}, geometry=shapes, crs=32615)


@pytest.fixture(scope="module")
def expected(features):
    """The single-machine table, from the same values held in numpy."""
    return ordered(xr_getregion.get_region(make_cube(NY, NX, NT, ("a", "b")), features))


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        yield cluster


@pytest.fixture
def client(cluster):
    with distributed.Client(cluster) as client:
        # A worker killed by the previous test may still be restarting.
        client.wait_for_workers(2, timeout=TIMEOUT)
        yield client


def worker_pids(client) -> set[int]:
    return set(client.run(os.getpid).values())


def wait_until_idle(client) -> None:
    """Wait until no worker runs a task, cancelled ones included (they finish in their
    thread after the job has failed, and could still write). A cancelled fetch of data from
    the killed worker runs no task code, so it is not waited for: it only ends when its
    connection times out."""

    def busy(dask_worker) -> int:
        running = ("executing", "long-running")
        return sum(
            ts.state in running or (ts.state in ("cancelled", "resumed") and ts.previous in running)
            for ts in dask_worker.state.tasks.values()
        )

    deadline = time.monotonic() + TIMEOUT
    while any(client.run(busy).values()):
        assert time.monotonic() < deadline, "the workers never went idle"
        time.sleep(0.02)


class Killer(threading.Thread):
    """Kills the first worker seen waiting inside a read, then opens the gate."""

    def __init__(self, markers: Path, pids: set[int]) -> None:
        super().__init__(daemon=True)
        self.markers, self.pids = markers, pids
        self.killed: int | None = None
        self.reads_before_kill = 0

    def run(self) -> None:
        deadline = time.monotonic() + TIMEOUT
        try:
            while self.killed is None and time.monotonic() < deadline:
                for marker in self.markers.glob("waiting-*"):
                    pid = int(marker.name.split("-")[1])
                    if pid in self.pids:
                        self.reads_before_kill = len(list(self.markers.glob("read-*")))
                        os.kill(pid, signal.SIGKILL)
                        self.killed = pid
                        break
                time.sleep(0.005)
        finally:
            (self.markers / "go").touch()


def reads(markers: Path) -> list[tuple[str, int]]:
    """(chunk, pid) of every read, in no particular order."""
    out = []
    for marker in markers.glob("read-*"):
        _, t, y, x, pid, _ = marker.name.split("-")
        out.append((f"{t}-{y}-{x}", int(pid)))
    return out


def run_with_a_worker_killed(client, markers: Path, job: Callable[[], object]) -> object:
    pids = worker_pids(client)
    killer = Killer(markers, pids)
    killer.start()
    result = job()
    killer.join(TIMEOUT)
    # The kill happened inside a read, with reads still to come: the job was in flight.
    assert killer.killed in pids
    assert 0 < killer.reads_before_kill < len(reads(markers))
    # The read the dead worker was running was run again by a live worker.
    by_chunk: dict[str, set[int]] = {}
    for chunk, pid in reads(markers):
        by_chunk.setdefault(chunk, set()).add(pid)
    assert any(killer.killed in p and len(p) > 1 for p in by_chunk.values())
    # The nanny started a new worker process in place of the dead one.
    client.wait_for_workers(2, timeout=TIMEOUT)
    assert killer.killed not in worker_pids(client)
    return result


def test_worker_killed_mid_job_eager_table_is_complete(client, tmp_path, features, expected):
    markers = tmp_path / "markers"
    markers.mkdir()
    cube = slow_cube(markers, hold_after=6)
    got = run_with_a_worker_killed(
        client, markers, lambda: xr_getregion.get_region(cube, features, lazy=False)
    )
    assert len(got) == len(expected) and not got.duplicated().any()
    pd.testing.assert_frame_equal(ordered(got), expected)


def test_worker_killed_mid_job_parquet_table_is_complete(client, tmp_path, features, expected):
    markers = tmp_path / "markers"
    markers.mkdir()
    out = tmp_path / "out" / "table.parquet"
    cube = slow_cube(markers, hold_after=10)
    run_with_a_worker_killed(client, markers, lambda: xr_getregion.to_parquet(cube, features, out))
    got = pd.read_parquet(out)
    assert len(got) == len(expected) and not got.duplicated().any()
    pd.testing.assert_frame_equal(ordered(got), expected, check_dtype=False)
    assert [p.name for p in out.parent.iterdir()] == ["table.parquet"]


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_read_failing_mid_job_leaves_no_table_and_no_temporary(
    client, tmp_path, features, suffix
):
    markers = tmp_path / "markers"
    markers.mkdir()
    out_dir = tmp_path / "out"
    cube = slow_cube(markers, fail_at=(2, 1, 3))
    with pytest.raises(RuntimeError, match=r"chunk \(2, 1, 3\) cannot be read"):
        xr_getregion.to_parquet(cube, features, out_dir / f"table{suffix}")
    assert len(reads(markers)) >= 7  # other reads ran first: the job was under way
    wait_until_idle(client)
    assert list(out_dir.iterdir()) == []


def test_a_failed_overwrite_keeps_the_previous_table(client, tmp_path, features, expected):
    markers = tmp_path / "markers"
    markers.mkdir()
    out = tmp_path / "out" / "table.parquet"
    xr_getregion.to_parquet(slow_cube(markers), features, out)
    before = pd.read_parquet(out)
    cube = slow_cube(markers, fail_at=(3, 2, 0))
    with pytest.raises(RuntimeError, match="cannot be read"):
        xr_getregion.to_parquet(cube, features, out, overwrite=True)
    wait_until_idle(client)
    assert [p.name for p in out.parent.iterdir()] == ["table.parquet"]
    pd.testing.assert_frame_equal(pd.read_parquet(out), before)
    pd.testing.assert_frame_equal(ordered(before), expected, check_dtype=False)


def test_a_worker_lost_beyond_the_allowed_failures_leaves_no_table(
    client, cluster, tmp_path, features
):
    markers = tmp_path / "markers"
    markers.mkdir()
    out = tmp_path / "out" / "table.parquet"
    cube = slow_cube(markers, die_at=(1, 2, 2))
    # One death is already too many, so one worker restart instead of four.
    allowed = cluster.scheduler.allowed_failures
    cluster.scheduler.allowed_failures = 0
    try:
        with pytest.raises(distributed.KilledWorker):
            xr_getregion.to_parquet(cube, features, out)
    finally:
        cluster.scheduler.allowed_failures = allowed
    client.wait_for_workers(2, timeout=TIMEOUT)
    wait_until_idle(client)
    assert list(out.parent.iterdir()) == []


# --- on this machine's threads --------------------------------------------------------------


def test_an_interrupt_in_a_task_leaves_no_table_and_no_temporary(tmp_path, features):
    """Ctrl-C is a KeyboardInterrupt; dask's threaded scheduler re-raises it from the task."""
    markers = tmp_path / "markers"
    markers.mkdir()
    data = slow_cube(markers).data

    def interrupted(block, block_info=None):
        if block_info[None]["chunk-location"] == (2, 0, 1, 1):
            raise KeyboardInterrupt
        return block

    cube = make_cube(NY, NX, NT, ("a", "b"), data=data.map_blocks(interrupted, dtype=data.dtype))
    out_dir = tmp_path / "out"
    with dask.config.set(scheduler="threads", num_workers=2), pytest.raises(KeyboardInterrupt):
        xr_getregion.to_parquet(cube, features, out_dir / "table.parquet")
    assert list(out_dir.iterdir()) == []


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_write_still_running_when_the_job_fails_cannot_recreate_the_temporary(
    tmp_path, features, monkeypatch, suffix
):
    """When one task fails, dask raises while other tasks still run. Here a partition's write
    starts before the failure and opens its file only after write_table has cleaned up: it
    must fail, not recreate the temporary directory with a partial table in it."""
    import dask.dataframe.io.csv as dask_csv

    started = threading.Event()
    writes: list[str] = []  # one entry per write that started
    late: list[BaseException] = []  # what each of them raised

    def hold_until_cleaned_up(directory: str) -> None:
        writes.append(directory)
        started.set()
        deadline = time.monotonic() + TIMEOUT
        while os.path.exists(directory) and time.monotonic() < deadline:
            time.sleep(0.005)

    def guarded(write, *args, **kwargs):
        try:
            return write(*args, **kwargs)
        except BaseException as exc:
            late.append(exc)
            raise

    if suffix == ".parquet":
        original = ArrowDatasetEngine.write_partition.__func__

        def slow_write(cls, df, path, *args, **kwargs):
            hold_until_cleaned_up(path)
            return guarded(original, cls, df, path, *args, **kwargs)

        monkeypatch.setattr(ArrowDatasetEngine, "write_partition", classmethod(slow_write))
        failing = 0  # partition 0 fails; partition 1's write is the late one
    else:
        original_csv = dask_csv._write_csv

        def slow_csv(df, fil, **kwargs):
            hold_until_cleaned_up(os.path.dirname(fil.path))
            return guarded(original_csv, df, fil, **kwargs)

        monkeypatch.setattr(dask_csv, "_write_csv", slow_csv)
        failing = 1  # one CSV file is written in partition order: partition 0's is late
    # Two partitions (y chunks), so exactly one write can be running when the other fails.
    chunked = da.from_array(make_cube(40, NX, 1, ("a", "b")).data, chunks=(1, NB, 20, NX))

    def fail_once_a_write_started(block, block_info=None):
        if block_info[None]["chunk-location"][2] == failing:  # the y chunk: one partition
            started.wait(TIMEOUT)
            raise RuntimeError("chunk cannot be read")
        return block

    failing_data = chunked.map_blocks(fail_once_a_write_started, dtype=chunked.dtype)
    cube = make_cube(40, NX, 1, ("a", "b"), data=failing_data)
    out_dir = tmp_path / "out"
    with (
        dask.config.set(scheduler="threads", num_workers=2),
        pytest.raises(RuntimeError),
        pytest.warns(GetRegionWarning, match="1 of 4 features miss the cube"),  # p2: row 59
    ):
        xr_getregion.to_parquet(cube, features, out_dir / f"table{suffix}")
    deadline = time.monotonic() + TIMEOUT
    while not late and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(writes) == 1 and [type(e) for e in late] == [FileNotFoundError]
    assert list(out_dir.iterdir()) == []


# --- signals: kill, timeout, batch schedulers, a closed terminal, Ctrl-C at start-up ----------

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def start(argv: list[str], **kwargs) -> subprocess.Popen:
    """A child process with this worktree's package first on its path."""
    return subprocess.Popen(
        argv, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs
    )


def wait_for(condition: Callable[[], object], proc: subprocess.Popen, what: str) -> None:
    """Poll until ``condition()`` holds, failing if the child exits first."""
    deadline = time.monotonic() + 3 * TIMEOUT
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"the child exited ({proc.returncode}) before {what}:\n{out}\n{err}")
        assert time.monotonic() < deadline, f"never saw {what}"
        time.sleep(0.005)


def temporaries(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if ".tmp-" in p.name]


@pytest.fixture(scope="module")
def slow_job_files(tmp_path_factory):
    """A Zarr cube and 2,000 points over it: a real extract that takes a few seconds on 2
    cores (100 partitions), long enough to be signalled while its partitions are written."""
    return write_slow_job(tmp_path_factory.mktemp("slow-job"))


@pytest.mark.skipif(
    signal.getsignal(signal.SIGHUP) is signal.SIG_IGN,
    reason="SIGHUP is ignored here (nohup), and a child inherits that",
)
@pytest.mark.parametrize(
    "signum, suffix", [(signal.SIGTERM, ".parquet"), (signal.SIGHUP, ".csv")], ids=["TERM", "HUP"]
)
def test_extract_killed_mid_job_removes_its_temporary(slow_job_files, tmp_path, signum, suffix):
    """``kill``/``timeout`` (SIGTERM) or a closed terminal (SIGHUP) while the partitions are
    written: exit status 128 + signal, one line, no table and no temporary directory."""
    out = tmp_path / f"t{suffix}"
    proc = start(
        [
            sys.executable,
            "-m",
            "xr_getregion",
            "extract",
            str(slow_job_files / "cube.zarr"),
            "--variable",
            "r",
            "--geometry",
            str(slow_job_files / "points.geojson"),
            "--out",
            str(out),
        ]
    )
    wait_for(lambda: temporaries(tmp_path), proc, "the temporary directory")
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=3 * TIMEOUT)
    assert proc.returncode == 128 + signum, err
    assert err == f"xr-getregion: stopped by {signum.name}; no table was written.\n"
    assert list(tmp_path.iterdir()) == []


API_JOB = """
import sys
from pathlib import Path

import dask
import shapely

import xr_getregion
from tests.test_faults import slow_cube

markers, out = Path(sys.argv[1]), Path(sys.argv[2])
box = shapely.box(500_020, 3_998_210, 502_390, 3_999_990)
with dask.config.set(scheduler="threads", num_workers=2):
    xr_getregion.to_parquet(slow_cube(markers, hold_after=4), box, out, geometry_crs=32615)
print("finished")
"""


MKDIR_THEN_TERM = """
import os, pathlib, signal, sys
import shapely, xr_getregion

real_mkdir = pathlib.Path.mkdir


def mkdir_then_term(self, *args, **kwargs):
    real_mkdir(self, *args, **kwargs)
    if ".tmp-" in self.name:
        os.kill(os.getpid(), signal.SIGTERM)  # as `kill` would, right after the mkdir


pathlib.Path.mkdir = mkdir_then_term
cube = xr_getregion.sample_cube()
x0, y0 = float(cube.x[0]), float(cube.y[0])
box = shapely.box(x0, y0 - 500, x0 + 500, y0)
xr_getregion.to_parquet(cube, box, sys.argv[1], geometry_crs=cube.rio.crs)
"""


def test_a_job_killed_as_its_temporary_is_made_removes_it(tmp_path):
    # SIGTERM right after the temporary directory is made, before the writing starts: the
    # directory is removed on the way out (it was made outside the cleanup's reach; one run
    # of the CLI test in sixty left it behind).
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", MKDIR_THEN_TERM, str(out / "t.parquet")],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=3 * TIMEOUT,
        check=False,
    )
    assert done.returncode == 128 + signal.SIGTERM, done.stderr[-2000:]
    assert list(out.iterdir()) == []


def test_a_python_job_killed_in_to_parquet_removes_its_temporary(tmp_path):
    """A program calling to_parquet, sent SIGTERM while reads are held mid-job: the
    temporary is removed and the process ends with status 143 (128 + 15), quietly, as an
    uncaught signal would have ended it. (SIGHUP takes the same handler: see the CLI test.)"""
    signum = signal.SIGTERM
    markers = tmp_path / "markers"
    markers.mkdir()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    proc = start([sys.executable, "-c", API_JOB, str(markers), str(out_dir / "t.parquet")])
    wait_for(lambda: list(markers.glob("waiting-*")), proc, "a held read")
    assert temporaries(out_dir)
    proc.send_signal(signum)
    time.sleep(0.2)
    (markers / "go").touch()  # let the held reads end, so the threads can be joined
    out, err = proc.communicate(timeout=3 * TIMEOUT)
    assert proc.returncode == 128 + signum, err
    assert (out, err) == ("", "")
    assert list(out_dir.iterdir()) == []


def _sigint_as_a_terminal_gives_it() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _mapped(pid: int, library: str) -> bool:
    try:
        return library in Path(f"/proc/{pid}/maps").read_text()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("how", ["-m", "script"])
def test_ctrl_c_during_start_up_is_one_line_and_status_130(tmp_path, how):
    """SIGINT while the command is still importing numpy (xarray, dask, pandas follow): one
    line, exit status 130, no traceback. The moment is the import of numpy's C core, which
    the child is seen to have mapped, so the signal lands mid-import every time."""
    if how == "-m":
        argv = [sys.executable, "-m", "xr_getregion"]
    else:
        script = Path(sys.executable).parent / "xr-getregion"
        if not script.exists():
            pytest.skip("the xr-getregion console script is not installed beside python")
        argv = [str(script)]
    proc = start(
        [
            *argv,
            "extract",
            str(tmp_path / "c.zarr"),
            "--geometry",
            str(tmp_path / "f.geojson"),
            "--out",
            str(tmp_path / "t.csv"),
        ],
        # A shell's background job inherits SIGINT ignored (POSIX, without job control), and
        # so would the child: Ctrl-C is the terminal's, given here as a terminal would.
        preexec_fn=_sigint_as_a_terminal_gives_it,
    )
    wait_for(lambda: _mapped(proc.pid, "_multiarray_umath"), proc, "numpy's import")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=3 * TIMEOUT)
    assert proc.returncode == 130, err
    assert (out, err) == ("", "xr-getregion: interrupted; no table was written.\n")
    assert list(tmp_path.iterdir()) == []
