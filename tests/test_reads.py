"""The reads take only the chunks holding covered pixels, once, in one dask computation."""

from __future__ import annotations

import dask
import dask.array as da
import numpy as np
import pandas as pd
import pytest
import shapely
import xarray as xr
from dask.delayed import Delayed

import xr_getregion
from tests.helpers import counting_dask, cube_values, make_cube, raise_if_dask_computes
from xr_getregion import CubeError
from xr_getregion.cube import read_cube
from xr_getregion.geometry import read_geometry
from xr_getregion.reads import Source, optimized_reads

UTM = "EPSG:32615"


def counted(chunks, ny=100, nx=100, nt=2, nb=2):
    data, source = counting_dask(cube_values(nt, nb, ny, nx), chunks)
    return make_cube(ny, nx, nt, [f"b{i}" for i in range(nb)], data=data), source


def box(col0, row0, col1, row1):
    """A polygon covering the pixel centres of cols col0..col1-1, rows row0..row1-1."""
    return shapely.box(
        500_000 + 30 * col0 + 1,
        4_000_000 - 30 * row1 + 1,
        500_000 + 30 * col1 - 1,
        4_000_000 - 30 * row0 - 1,
    )


def test_a_polygon_inside_one_chunk_reads_its_window_of_that_chunk_per_image_and_band_only():
    cube, source = counted((1, 1, 10, 10))  # 2 x 2 x 10 x 10 = 400 chunks
    table = cube.ee.getRegion(box(21, 33, 25, 36), crs="native", geometry_crs=UTM)
    assert len(table) - 1 == 4 * 3 * 2
    assert len(source.reads) == 2 * 2
    # The 3 x 4 pixels' bounding window, folded into the chunk's read: not the whole chunk.
    assert source.windows() == {(33, 36, 21, 25)}


def test_a_polygon_across_chunks_reads_only_those_it_covers():
    cube, source = counted((1, 1, 10, 10))
    # An L-shape: covers chunks (0,0), (0,1) and (1,0) of the 10 x 10 block grid, not (1,1).
    poly = shapely.union(box(5, 5, 15, 9), box(5, 9, 9, 15))
    cube.ee.get_region(poly, geometry_crs=UTM)
    # A quarter of each chunk or less: each chunk's window is read, once per image and band.
    assert source.windows() == {(5, 10, 5, 10), (5, 9, 10, 15), (10, 15, 5, 9)}
    assert len(source.reads) == 3 * 2 * 2


def test_pixels_spread_over_a_chunk_read_it_whole_and_compact_ones_read_a_window():
    cube, source = counted((1, 1, 20, 20), ny=40, nx=40, nt=1, nb=1)
    # Chunk (0, 0): two pixels at opposite corners, a window as big as the chunk. Chunk
    # (1, 1): a 10 x 10 block, exactly the largest window read (a quarter of the chunk).
    # Chunk (0, 1): an 11 x 10 block, just over it.
    iy = np.r_[0, 19, np.repeat(np.arange(25, 35), 10), np.repeat(np.arange(2, 13), 10)]
    ix = np.r_[0, 19, np.tile(np.arange(22, 32), 10), np.tile(np.arange(25, 35), 11)]
    source_ = Source.of(read_cube(cube))[0]
    data = source_.as_dask_4d()
    reads = source_.read_tasks([(iy, ix)], "t")
    graph = optimized_reads([reads])
    (blocks,) = dask.compute(Delayed("blocks", {**graph, "blocks": reads.keys[0]}))
    assert source.windows() == {(0, 20, 0, 20), (0, 20, 20, 40), (25, 35, 22, 32)}
    result = reads.placements[0].place(blocks)
    np.testing.assert_array_equal(result[0, 0], np.asarray(data)[0, 0, iy, ix])


def test_window_reads_do_not_depend_on_dask_fusion():
    # The window is written into the chunk's getter, not left to dask's low-level fusion:
    # with fusion off, the same windows are read and the same table comes back.
    cube, source = counted((1, 1, 10, 10))
    poly = shapely.union(box(5, 5, 15, 9), box(5, 9, 9, 15))
    fused = cube.ee.get_region(poly, geometry_crs=UTM)
    windows = source.windows()
    with dask.config.set({"optimization.fuse.active": False}):
        source.reads.clear()
        unfused = cube.ee.get_region(poly, geometry_crs=UTM)
    assert source.windows() == windows == {(5, 10, 5, 10), (5, 9, 10, 15), (10, 15, 5, 9)}
    pd.testing.assert_frame_equal(unfused, fused)


def test_bands_in_one_chunk_are_read_once_for_all_bands():
    cube, source = counted((2, 2, 50, 50))
    cube.ee.get_region(box(1, 1, 3, 3), geometry_crs=UTM)
    assert len(source.reads) == 1


def test_graph_has_one_task_per_covered_chunk_and_no_full_grid_arrays():
    cube, source = counted((1, 1, 10, 10))
    info = read_cube(cube)
    iy = np.array([3, 4, 55, 56, 99])
    ix = np.array([3, 3, 71, 72, 0])
    source_ = Source.of(info)[0]
    data = source_.as_dask_4d()
    reads = source_.read_tasks([(iy, ix)], "getregion-read-test")
    # 3 covered spatial chunks x 2 images x 2 bands; nothing else is read.
    layer = dict(reads.graph.layers["getregion-read-test"])
    takes = {k: v for k, v in layer.items() if k[0] == "getregion-read-test"}
    assert len(takes) == len(reads.keys[0]) == 3 * 2 * 2
    # Each of these chunks' pixels fit a window of at most a quarter of it: a task for that.
    assert len(layer) == 2 * len(takes)
    for task in takes.values():
        args = [getattr(a, "value", a) for a in getattr(task, "args", task[1:])]
        arrays = [a for a in args if isinstance(a, np.ndarray)]
        assert len(arrays) == 2  # the chunk's own row and column indices, nothing else
        assert all(a.size <= 2 for a in arrays)
    graph = optimized_reads([reads])
    # Optimized, each read (the chunk's window) and its take are one task.
    runnable = [v for v in graph.values() if getattr(v, "func", None) is not None]
    assert len(runnable) == 3 * 2 * 2
    (blocks,) = dask.compute(Delayed("blocks", {**graph, "blocks": reads.keys[0]}))
    assert len(source.reads) == 3 * 2 * 2
    result = reads.placements[0].place(blocks)  # (band, image, pixel), pixels in the order asked
    assert result.shape == (2, 2, 5)
    assert result[0, 1, 2] == 1_000_000 + 55 * 300 + 71
    np.testing.assert_array_equal(result, np.asarray(data)[:, :, iy, ix].transpose(1, 0, 2))


def test_pixels_of_one_chunk_in_raster_order_are_placed_as_a_slice():
    cube, _ = counted((1, 1, 10, 10))
    source_ = Source.of(read_cube(cube))[0]
    reads = source_.read_tasks([(np.array([3, 3, 4, 12]), np.array([3, 4, 3, 5]))], "t")
    assert {str(target[2]) for target in reads.placements[0].targets} == {
        "slice(0, 3, None)",
        "slice(3, 4, None)",
    }
    # Across chunks in raster order, each chunk's pixels are scattered, not contiguous.
    reads = source_.read_tasks([(np.array([3, 3, 4]), np.array([9, 10, 9]))], "t")
    first, second = (t[2] for t in reads.placements[0].targets[:2])
    assert isinstance(first, np.ndarray) and first.tolist() == [0, 2]
    assert second == slice(1, 2)


def test_one_compute_for_all_bands_of_a_dataset():
    cube, _ = counted((1, 1, 10, 10))
    ds = cube.to_dataset("band")
    with raise_if_dask_computes(max_computes=1) as scheduler:
        df = ds.ee.get_region(box(2, 2, 30, 30), geometry_crs=UTM)
    assert scheduler.total_computes == 1
    assert len(df) == 28 * 28 * 2


def test_planning_never_computes():
    cube = xr_getregion.sample_cube()
    shape, crs = read_geometry(xr_getregion.Geometry.Rectangle([-90.6, 34.75, -90.55, 34.8]))
    with raise_if_dask_computes():
        plan = cube.ee.plan(shape, scale=30, geometry_crs=crs)
    assert plan.n_pixels > 10_000


def test_threaded_scheduler_gives_the_same_table():
    cube, _ = counted((1, 1, 7, 13))
    poly = box(3, 4, 60, 80)
    sync = cube.ee.getRegion(poly, crs="native", geometry_crs=UTM)
    with dask.config.set(scheduler="threads"):
        assert cube.ee.getRegion(poly, crs="native", geometry_crs=UTM) == sync


def test_several_pixel_sets_number_their_blocks_apart_and_read_what_each_asks():
    cube, _ = counted((1, 1, 10, 10))
    source_ = Source.of(read_cube(cube))[0]
    data = source_.as_dask_4d()
    sets = [(np.array([3, 55]), np.array([3, 71])), (np.array([4, 56]), np.array([3, 72]))]
    reads = source_.read_tasks(sets, "t", (7,))
    keys = [k for set_keys in reads.keys for k in set_keys]
    assert len(set(keys)) == len(keys) == 2 * (2 * 2 * 2)
    assert {k[-1] for k in reads.keys[0]} == {0, 1} and {k[-1] for k in reads.keys[1]} == {2, 3}
    assert all(k[:2] == ("t", 7) for k in keys)
    graph = optimized_reads([reads])
    for (iy, ix), set_keys, placement in zip(sets, reads.keys, reads.placements, strict=True):
        (blocks,) = dask.compute(Delayed("b", {**graph, "b": set_keys}))
        expected = np.asarray(data)[:, :, iy, ix].transpose(1, 0, 2)
        np.testing.assert_array_equal(placement.place(blocks), expected)


def test_a_chunk_holding_another_dtype_than_declared_is_refused():
    lying = da.from_array(np.zeros((1, 1, 4, 4), np.float32) + 0.5, chunks=2).astype(np.int32)
    lying = lying.map_blocks(lambda b: b + 0.5, dtype=np.int32)  # declares int32, holds float
    cube = make_cube(4, 4, 1, ["a"], data=lying)
    with pytest.raises(CubeError, match="holds float64 values, but its dask array declares"):
        cube.ee.get_region(box(0, 0, 2, 2), geometry_crs=UTM)


def test_dataset_variables_sharing_one_dask_array_each_get_their_values():
    cube, _ = counted((1, 1, 10, 10))
    band = cube.isel(band=0, drop=True)
    ds = xr.Dataset({"a": band, "b": band, "c": cube.isel(band=1, drop=True)})
    poly = box(8, 8, 12, 12)  # across four chunks
    for lazy in (False, True):
        df = ds.ee.get_region(poly, geometry_crs=UTM, lazy=lazy)
        df = df.compute() if lazy else df
        assert len(df) == 4 * 4 * 2
        np.testing.assert_array_equal(df["a"].to_numpy(), df["b"].to_numpy())
        np.testing.assert_array_equal(df["c"].to_numpy() - df["a"].to_numpy(), 100_000)


@pytest.mark.parametrize("threads", [1, 3, 64])
def test_any_number_of_reads_in_flight_gives_the_same_table(threads):
    cube, _ = counted((1, 1, 7, 13))
    poly = box(3, 4, 60, 80)
    expected = cube.ee.get_region(poly, geometry_crs=UTM)
    with dask.config.set({"xr_getregion.io_threads": threads}):
        pd.testing.assert_frame_equal(cube.ee.get_region(poly, geometry_crs=UTM), expected)


@pytest.mark.parametrize("threads", [1, 3, 64])
def test_reads_run_on_the_pools_threads_started_before_the_reads(threads):
    # The pool's first threads are started before dask fires a read (a start waits for the
    # new thread to take the GIL, which stalled the scheduler mid-read); reads run on them,
    # named as the loaders' per-thread handles expect, and never on more than set.
    import threading

    from xr_getregion.iopool import first_threads
    from xr_getregion.loaders import IO_THREAD_PREFIX

    cube, _ = counted((1, 1, 7, 13))
    seen: set[str] = set()
    start = threading.Thread.start
    started: list[str] = []
    before_first_read: list[int] = []

    def record(block: np.ndarray) -> np.ndarray:
        if not before_first_read:
            before_first_read.append(len([n for n in started if n.startswith(IO_THREAD_PREFIX)]))
        seen.add(threading.current_thread().name)
        return block

    def counting_start(thread: threading.Thread) -> None:
        started.append(thread.name)
        start(thread)

    cube = cube.copy(data=cube.data.map_blocks(record, dtype=cube.dtype))
    seen.clear()  # map_blocks called it on an empty block, to learn its output
    before_first_read.clear()
    with dask.config.set({"xr_getregion.io_threads": threads}):
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(threading.Thread, "start", counting_start)
            cube.ee.get_region(box(3, 4, 60, 80), geometry_crs=UTM)
    io = [name for name in started if name.startswith(IO_THREAD_PREFIX)]
    assert first_threads(threads) <= len(io) <= threads
    assert before_first_read == [first_threads(threads)]
    assert seen <= set(io) and seen


@pytest.fixture
def machine_idle(monkeypatch):
    """The process's CPU time as the pool sees it: none used (``True``), or every core's."""
    import time

    from xr_getregion import iopool

    state = {"idle": True}
    start = time.process_time()

    def cpu_seconds() -> float:
        if state["idle"]:
            return start
        return time.perf_counter() * 64  # more than any pool of these tests has cores

    monkeypatch.setattr(iopool, "_cpu_seconds", cpu_seconds)
    return state


def test_the_pool_adds_threads_while_reads_wait_and_not_past_its_most(machine_idle):
    # Reads that wait without using a core (here: sleep) on a machine with idle cores show
    # room for more in flight: the pool grows from its first threads to its most, doubling
    # at most, and runs every task once.
    import threading
    import time

    from xr_getregion.iopool import IOPool

    running = 0
    peak = 0
    lock = threading.Lock()

    def wait(i: int) -> int:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
        return i

    with IOPool(12, "test-pool", cores=2) as pool:
        assert pool.threads == 4
        first = [pool.submit(wait, i) for i in range(4)]
        assert [f.result() for f in first] == list(range(4))
        later = [pool.submit(wait, i) for i in range(48)]
        assert [f.result() for f in later] == list(range(48))
        assert pool.threads == 12
    assert peak == 12
    assert not [t for t in threading.enumerate() if t.name.startswith("test-pool")]


def test_the_pool_adds_no_thread_while_the_process_keeps_the_cores_busy(machine_idle):
    # The same waiting reads while the process uses the cores: waiting for a core (or for a
    # server on the same machine) is not waiting for the network.
    import time

    from xr_getregion.iopool import IOPool

    machine_idle["idle"] = False
    with IOPool(12, "busy-pool", cores=2) as pool:
        done = [pool.submit(lambda i: time.sleep(0.02) or i, i) for i in range(60)]
        assert [f.result() for f in done] == list(range(60))
        assert pool.threads == 4


def test_the_threads_wanted_are_the_cores_worth_of_waiting_reads():
    from xr_getregion.iopool import first_threads, wanted_threads

    assert first_threads(16, cores=2) == 4
    assert first_threads(3, cores=2) == 3
    assert first_threads(16, cores=32) == 16
    # Reads busy on a core half the time: two per core.
    assert wanted_threads(wall=4.0, cpu=2.0, current=1, most=16, cores=2) == 4
    # Reads waiting on the network 9 parts in 10: ten per core, up to the most.
    assert wanted_threads(wall=10.0, cpu=1.0, current=4, most=16, cores=1) == 10
    assert wanted_threads(wall=10.0, cpu=1.0, current=4, most=16, cores=2) == 16
    # Never fewer than running, whatever the times; no CPU time at all wants the most.
    assert wanted_threads(wall=1.0, cpu=1.0, current=6, most=16, cores=2) == 6
    assert wanted_threads(wall=1.0, cpu=0.0, current=4, most=16, cores=2) == 16
    assert wanted_threads(wall=0.0, cpu=0.0, current=4, most=16, cores=2) == 4


def test_a_thread_that_fails_to_start_leaves_no_thread_of_the_pool_waiting():
    # The pool's first threads wait at a barrier until all have started: when a start fails
    # (no more threads allowed), those started must not wait forever (the interpreter would
    # hang at exit joining them).
    import threading
    import time

    from xr_getregion.iopool import IOPool

    start = threading.Thread.start
    calls = []

    def failing_start(thread: threading.Thread) -> None:
        calls.append(thread.name)
        if len(calls) == 3:
            raise RuntimeError("can't start new thread")
        start(thread)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(threading.Thread, "start", failing_start)
        with pytest.raises(RuntimeError, match="can't start new thread"):
            IOPool(5, "failing-pool", cores=2)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not any(t.name.startswith("failing-pool") for t in threading.enumerate()):
            break
        time.sleep(0.01)
    assert not [t.name for t in threading.enumerate() if t.name.startswith("failing-pool")]


def test_a_pool_that_cannot_grow_goes_on_with_the_threads_it_has(machine_idle):
    import threading
    import time

    from xr_getregion.iopool import IOPool

    start = threading.Thread.start

    def no_more(thread: threading.Thread) -> None:
        if thread.name.startswith("capped-pool") and int(thread.name.rsplit("_")[-1]) >= 2:
            raise RuntimeError("can't start new thread")
        start(thread)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(threading.Thread, "start", no_more)
        with IOPool(8, "capped-pool", cores=1) as pool:
            assert pool.threads == 2
            results = [pool.submit(lambda i: time.sleep(0.01) or i, i) for i in range(20)]
            assert [f.result() for f in results] == list(range(20))
            assert pool.threads == 2
    assert not [t for t in threading.enumerate() if t.name.startswith("capped-pool")]


def test_a_failure_counting_the_pools_times_ends_no_thread(monkeypatch):
    # The growth's bookkeeping (the process's CPU time) failing must stop the growth, not
    # the thread that finished a task: dask would wait forever for the tasks queued.
    import time

    from xr_getregion import iopool

    def fails() -> float:
        raise OSError(24, "Too many open files")

    with iopool.IOPool(8, "counting-pool", cores=1) as pool:
        monkeypatch.setattr(iopool, "_cpu_seconds", fails)
        done = [pool.submit(lambda i: time.sleep(0.01) or i, i) for i in range(30)]
        assert [f.result(timeout=10) for f in done] == list(range(30))
        assert pool.threads == 2


POOL_LEFT_OPEN = """
import sys, threading, time
from xr_getregion.iopool import IOPool

if sys.argv[1] == "kept":
    pool = IOPool(4, "open-pool")
    assert pool.submit(sum, [1, 2]).result() == 3
elif sys.argv[1] == "dropped":
    assert IOPool(4, "open-pool").submit(sum, [1, 2]).result() == 3
elif sys.argv[1] == "interrupted":  # Ctrl-C after the first threads passed their barrier

    class Interrupted(threading.Barrier):
        def wait(self, timeout=None):
            index = super().wait(timeout)
            if threading.current_thread() is threading.main_thread():
                time.sleep(0.1)  # the released threads run on meanwhile
                raise KeyboardInterrupt
            return index

    threading.Barrier = Interrupted
    try:
        IOPool(4, "open-pool")
    except KeyboardInterrupt:
        pass
if sys.argv[1] == "shutdown-interrupted":  # Ctrl-C as shutdown marks the pool shut

    class Flag:
        armed = False

        def __get__(self, pool, owner=None):
            return pool.__dict__["_flag"]

        def __set__(self, pool, value):
            pool.__dict__["_flag"] = value
            if value and Flag.armed:
                Flag.armed = False
                raise KeyboardInterrupt

    IOPool._closed = Flag()
    kept = IOPool(4, "open-pool")  # kept alive, as a traceback a REPL holds would
    kept.submit(time.sleep, 0.01)
    Flag.armed = True
    try:
        kept.shutdown()
    except KeyboardInterrupt:
        pass
print("done")
"""


@pytest.mark.parametrize("how", ["kept", "dropped", "interrupted", "shutdown-interrupted"])
def test_a_pool_left_without_shutdown_does_not_keep_the_interpreter_from_exiting(how):
    # Its threads are told to end at exit, or when the pool is collected, as the standard
    # library's pool's are; a review found each of these hanging the interpreter for ever.
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", POOL_LEFT_OPEN, how],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout == "done\n"


def test_a_second_shutdown_cancels_what_waits_as_the_standard_librarys_pool_does():
    import threading
    import time

    from xr_getregion.iopool import IOPool

    pool = IOPool(1, "cancel-pool", cores=1)
    release = threading.Event()
    pool.submit(release.wait, 10)
    waiting = [pool.submit(time.sleep, 0.01) for _ in range(20)]
    pool.shutdown(wait=False)
    pool.shutdown(wait=False, cancel_futures=True)
    release.set()
    pool.shutdown(wait=True)
    assert all(f.cancelled() for f in waiting)
    assert not [t for t in threading.enumerate() if t.name.startswith("cancel-pool")]


def test_a_shutdown_during_a_growth_waits_for_the_threads_it_starts(machine_idle, monkeypatch):
    # A growth runs on a thread that finished a task; a shutdown meanwhile must still wait
    # for every thread the growth starts, and leave no task of the queue unrun.
    import threading
    import time

    from xr_getregion.iopool import IOPool

    start = threading.Thread.start
    growing = threading.Event()

    def slow_start(thread: threading.Thread) -> None:
        if threading.current_thread().name.startswith("grow-pool"):
            growing.set()
            time.sleep(0.1)
        start(thread)

    def task() -> None:
        grown = int(threading.current_thread().name.rsplit("_", 1)[1]) >= 2
        time.sleep(0.5 if grown else 0.06)  # a grown thread is still busy when others end

    monkeypatch.setattr(threading.Thread, "start", slow_start)
    pool = IOPool(8, "grow-pool", cores=1)
    done = [pool.submit(task) for _ in range(30)]
    assert growing.wait(10)
    pool.shutdown(wait=True)
    assert all(f.done() and not f.cancelled() for f in done)
    assert not [t for t in threading.enumerate() if t.name.startswith("grow-pool")]


def test_leaving_the_pool_on_an_error_runs_nothing_more():
    import threading

    from xr_getregion.iopool import IOPool

    release = threading.Event()
    ran: list[int] = []

    def job(i: int) -> None:
        release.wait(10)
        ran.append(i)

    futures = []
    with pytest.raises(KeyboardInterrupt), IOPool(1, "stopped-pool") as pool:
        futures = [pool.submit(job, i) for i in range(5)]
        release.set()
        raise KeyboardInterrupt
    assert len(ran) <= 1
    assert sum(f.cancelled() for f in futures) >= 4
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(job, 9)


def test_a_task_runs_in_a_copy_of_the_context_that_submitted_it():
    # As asyncio.to_thread runs a function: the reads see what the extraction set in its
    # context (its spare handles), and what a task sets stays in the task.
    import contextvars

    from xr_getregion.iopool import IOPool

    seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="unset")

    def job() -> str:
        value = seen.get()
        seen.set("changed by the task")
        return value

    with IOPool(2, "context-pool", cores=1) as pool:
        assert pool.submit(job).result() == "unset"
        token = seen.set("the caller's")
        try:
            assert [pool.submit(job).result() for _ in range(3)] == ["the caller's"] * 3
        finally:
            seen.reset(token)
        assert pool.submit(job).result() == "unset"
    assert seen.get() == "unset"


@pytest.mark.parametrize("threads", [0, -2, "many"])
def test_a_bad_number_of_reads_in_flight_is_refused_naming_the_setting(threads):
    cube, _ = counted((1, 1, 7, 13))
    with dask.config.set({"xr_getregion.io_threads": threads}):
        with pytest.raises(xr_getregion.ArgumentError, match=r"xr_getregion\.io_threads"):
            cube.ee.get_region(box(3, 4, 6, 8), geometry_crs=UTM)


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("limits", [(1, 1), (2, 2), (1, 3), (3, 2)])
def test_rectangles_with_limits_tile_the_blocks_holding_pixels_exactly(seed, limits):
    # Brute force: every block holding a pixel in one rectangle, no other block in any, no
    # rectangle more blocks high or wide than the limits.
    from xr_getregion.reads import _rectangles

    rng = np.random.default_rng(seed)
    ty = rng.integers(0, 6, 40)
    tx = rng.integers(0, 6, 40)
    if seed % 2:  # also dense, compact sets (a polygon's), where merging has most to do
        ty, tx = ty // 2, tx // 2
    groups = _rectangles(ty, tx, limits)
    assert sorted(np.concatenate(groups).tolist()) == list(range(len(ty)))
    held = set(zip(ty.tolist(), tx.tolist(), strict=True))
    covered: set[tuple[int, int]] = set()
    for group in groups:
        r0, r1, c0, c1 = ty[group].min(), ty[group].max(), tx[group].min(), tx[group].max()
        assert r1 - r0 < limits[0] and c1 - c0 < limits[1]
        span = {(r, c) for r in range(r0, r1 + 1) for c in range(c0, c1 + 1)}
        assert span <= held
        assert not span & covered
        covered |= span
    assert covered == held


def test_variables_with_other_chunks_or_storage_blocks_are_grouped_each_on_its_own():
    # The grouping of pixels into reads is shared between arrays of one layout only: here
    # two variables with the same chunks share it, a third with other chunks and a fourth
    # with other storage blocks (encoding) do not, and every value is the array's own.
    values = cube_values(2, 1, 100, 100)[:, 0]
    cube = make_cube(100, 100, 2, ["b0"])
    band = cube.isel(band=0, drop=True)
    ds = xr.Dataset(
        {
            "a": band.copy(data=da.from_array(values, chunks=(1, 10, 10))),
            "b": band.copy(data=da.from_array(values + 1, chunks=(1, 10, 10))),
            "c": band.copy(data=da.from_array(values + 2, chunks=(1, 7, 13))),
            "d": band.copy(data=da.from_array(values + 3, chunks=(1, 50, 50))),
        }
    )
    ds["d"].encoding["preferred_chunks"] = {"y": 25, "x": 25}
    poly = box(8, 3, 47, 31)
    # The reference: the same variables as numpy arrays, read by xarray's indexing.
    expected = ds.compute().ee.get_region(poly, geometry_crs=UTM)
    assert len(expected) == 2 * 39 * 28
    for offset, name in enumerate("abcd"):
        assert set(expected[name] - expected["a"]) == {offset}
    pd.testing.assert_frame_equal(ds.ee.get_region(poly, geometry_crs=UTM), expected)
    # A lazy table's partitions hold rows in their own order: compare the rows as a set.
    order = ["time", "latitude", "longitude"]
    lazy = ds.ee.get_region(poly, geometry_crs=UTM, lazy=True).compute()
    pd.testing.assert_frame_equal(
        lazy.sort_values(order).reset_index(drop=True),
        expected.sort_values(order).reset_index(drop=True),
    )
