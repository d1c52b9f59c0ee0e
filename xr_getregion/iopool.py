"""A pool of threads for reads that starts few threads and adds more while reads wait.

How many reads should be in flight depends on how long a read waits for its bytes, which is
not known before the first reads. Each thread that reads through GDAL also costs a fixed
~10 ms of CPU on its first read (its own PROJ context, its own rasterio environment, its own
connections): on 2 cores, starting 16 threads for the 36 reads of the ~1 km2 polygon of
``benchmarks.cogs`` made a read at 0 ms latency 0.10 s slower (0.41 s against 0.29 s with
4), while at 30 ms latency 16 threads were twice as fast as 4 (0.61 s against 1.10 s). So
the pool starts :func:`first_threads` threads and, as reads finish, adds threads while the
process used under :data:`BUSY_SHARE` of the cores, doubling at most per :data:`WINDOW_S`,
up to the cores' worth of reads the finished ones show to be waiting (:func:`wanted_threads`).

The share is the process's CPU time, not the reads' own wall and CPU times: a read waiting
for a core (or for a server on the same machine) is not waiting for the network, and its
thread cannot tell the two apart (at 0 ms latency the reads above spent 2-3 times their CPU
time waiting with 4 threads, 6 times with 16, the cores busy). Nor the machine's idle time:
another program keeping the cores busy would stop the pool from growing while its reads
wait on the network (50 points at 30 ms took 7.1 s instead of 3.2 s so, during a test run).

Written by hand because the standard library's and dask's pools have a fixed size (dask's
threaded scheduler keeps ``_max_workers`` tasks submitted, whatever runs them).
"""

from __future__ import annotations

import atexit
import contextvars
import math
import queue
import threading
import time
import weakref
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

from dask.system import CPU_COUNT

__all__ = ["IOPool", "first_threads", "wanted_threads"]

#: Threads started before the first read, per core. On 2 cores, 4 threads were the fastest
#: read at 0 ms latency: ``python -m benchmarks.cogs`` ~1 km2 polygon, odc-stac / rioxarray /
#: stackstac, 0.27-0.34 / 0.28-0.31 / 0.24-0.28 s with 4, 0.30-0.36 / 0.32-0.36 / 0.27-0.30 s
#: with 8 and 0.41-0.52 / 0.34-0.42 / 0.34-0.36 s with 16 (three runs each).
THREADS_PER_CORE = 2


#: The share of the cores' time the process used, below which the pool adds threads.
#: Measured on 2 cores with 4 threads (``benchmarks.cogs``, odc-stac, while the reads ran;
#: 50 points / ~1 km2 / ~100 km2): at 0 ms latency 0.77 / 0.64 / 0.64, at 30 ms 0.32 / 0.19
#: / 0.26.
BUSY_SHARE = 0.4

#: The shortest time over which that share is measured.
WINDOW_S = 0.05


def first_threads(most: int, cores: int = CPU_COUNT) -> int:
    """The threads a pool of at most ``most`` threads starts with."""
    return max(1, min(most, THREADS_PER_CORE * cores))


def wanted_threads(wall: float, cpu: float, current: int, most: int, cores: int) -> int:
    """The threads that keep ``cores`` busy when tasks that ran took ``wall`` seconds in all
    and used ``cpu`` seconds of a core: ``cores x wall / cpu`` (a read using a fifth of its
    time on a core leaves room for five on each core), never fewer than ``current`` nor more
    than ``most``."""
    if wall <= 0:
        return current
    # A task that used no measurable CPU (a sleep, a wait on the network) wants all.
    ratio = wall / cpu if cpu > 0 else math.inf
    want = most if math.isinf(ratio) else math.ceil(cores * ratio)
    return max(current, min(most, want))


def _cpu_seconds() -> float:
    """The CPU time of the process so far, all its threads."""
    return time.process_time()


# Pools not shut down yet. At the interpreter's exit their threads are told to end, as the
# standard library does for ThreadPoolExecutor: otherwise a pool left without ``shutdown``
# (or a Ctrl-C between a thread's start and its record) would keep the interpreter waiting
# for its threads forever. ``threading._register_atexit`` runs before the interpreter joins
# its threads, where ``atexit`` runs after; both exist on every Python this package supports.
_LIVE: weakref.WeakSet[IOPool] = weakref.WeakSet()


def _end_all() -> None:
    for pool in list(_LIVE):
        pool.shutdown(wait=False)


getattr(threading, "_register_atexit", atexit.register)(_end_all)


def _work(
    pool_ref: weakref.ref[IOPool], work: queue.SimpleQueue, barrier: threading.Barrier
) -> None:
    """A thread of a pool: run tasks until the queue gives ``None`` (handed on to the next
    thread). Only a weak reference to the pool is held, so a pool dropped without
    ``shutdown`` is collected, which ends its threads."""
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass  # a start failed or was interrupted: the pool is ending; the queue says when
    while True:
        item = work.get()
        if item is None:
            work.put(None)
            return
        future, fn, args, kwargs = item
        if not future.set_running_or_notify_cancel():
            continue
        wall, cpu = time.perf_counter(), time.thread_time()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:  # handed to the caller, as ThreadPoolExecutor does
            future.set_exception(exc)
        else:
            future.set_result(result)
        del future, fn, args, kwargs, item
        pool = pool_ref()
        if pool is not None:
            pool._finished(time.perf_counter() - wall, time.thread_time() - cpu)
        del pool


class IOPool(Executor):
    """An executor running tasks on between :func:`first_threads` and ``most`` threads,
    named ``prefix_N``; threads are added while the process leaves the cores partly unused
    and the tasks that finished show that more would keep them busy (:func:`wanted_threads`),
    never removed before :meth:`shutdown`.

    ``_max_workers`` is ``most``: dask's threaded scheduler keeps that many tasks submitted,
    and those beyond the running threads wait in the queue.
    """

    def __init__(self, most: int, prefix: str, cores: int = CPU_COUNT) -> None:
        if most < 1:
            raise ValueError(f"an IOPool needs at least 1 thread; got {most}")
        self._max_workers = most
        self._most = most
        self._prefix = prefix
        self._cores = cores
        work: queue.SimpleQueue[tuple[Future, Callable, tuple, dict] | None] = queue.SimpleQueue()
        self._queue = work
        # Collected without shutdown: its threads are told to end.
        self._ref = weakref.ref(self, lambda _: work.put(None))
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._growing = False
        self._wall = 0.0
        self._cpu = 0.0
        self._closed = False
        self._since = time.perf_counter()
        self._used = _cpu_seconds()
        _LIVE.add(self)
        try:
            self._start(first_threads(most, cores))
        except BaseException:
            self.shutdown(wait=False)
            raise

    @property
    def threads(self) -> int:
        """The threads started so far."""
        return len(self._threads)

    def _start(self, n: int) -> None:
        """Start ``n`` more threads, and return once each runs: a start waits for the new
        thread to take the GIL, which the caller (the scheduler, or a thread that just read)
        would otherwise wait for when it next submits. Each thread is recorded as soon as it
        started; if a start fails (or Ctrl-C comes), the error is raised and the threads
        started go on (``shutdown`` ends them)."""
        barrier = threading.Barrier(n + 1)
        try:
            for _ in range(n):
                with self._lock:
                    if self._closed:  # shut down during a growth: start no more
                        barrier.abort()
                        return
                    name = f"{self._prefix}_{len(self._threads)}"
                thread = threading.Thread(
                    target=_work, args=(self._ref, self._queue, barrier), name=name
                )
                thread.start()
                with self._lock:
                    self._threads.append(thread)
            barrier.wait()
        except BaseException:
            barrier.abort()
            raise

    def _finished(self, wall: float, cpu: float) -> None:
        """Count a finished task's times; if the process used under :data:`BUSY_SHARE` of
        the cores since the last look, at least :data:`WINDOW_S` ago, and tasks wait, start
        the threads the times show are wanted, at most as many as run. Nothing here may end
        the thread that called it: a failure stops the growth, not the pool."""
        with self._lock:
            self._wall += wall
            self._cpu += cpu
            current = len(self._threads)
            now = time.perf_counter()
            if self._closed or self._growing or current >= self._most:
                return
            if now - self._since < WINDOW_S:
                return
            try:
                used = _cpu_seconds()
            except Exception:
                self._most = current
                return
            share = (used - self._used) / ((now - self._since) * self._cores)
            self._since, self._used = now, used
            if share >= BUSY_SHARE or self._queue.empty():
                return
            want = wanted_threads(self._wall, self._cpu, current, self._most, self._cores)
            more = min(want, 2 * current) - current
            if more <= 0:
                return
            self._growing = True
        # Started outside the lock: the scheduler's submits and the other threads' counts
        # do not wait for the new threads to take the GIL.
        try:
            self._start(more)
        except Exception:  # no more threads allowed: go on with those running
            with self._lock:
                self._most = len(self._threads)
        finally:
            with self._lock:
                self._growing = False

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` on a thread of the pool, in a copy of the caller's
        context (its :mod:`contextvars`), as :func:`asyncio.to_thread` runs a function."""
        future: Future = Future()
        run = contextvars.copy_context().run
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to an IOPool after shutdown")
            self._queue.put((future, run, (fn, *args), kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the threads once the queue is done (or, with ``cancel_futures``, cancel what
        has not started); with ``wait``, return when they have ended."""
        try:
            with self._lock:
                self._closed = True
            while cancel_futures:  # on a second call too, as the standard library's pool
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is not None:
                    item[0].cancel()
        finally:
            # A None ends every thread (each hands it on), put on every call and whatever
            # interrupted this one (a second Ctrl-C): one more is harmless, one missing
            # would leave the threads waiting for ever. Under the lock with the flag, so no
            # task is queued behind it.
            with self._lock:
                self._closed = True
                self._queue.put(None)
        if wait:
            # Until no thread is left to join and no growth is under way: a growth that had
            # begun may still record a thread it started.
            joined: set[threading.Thread] = {threading.current_thread()}
            while True:
                with self._lock:
                    threads = [t for t in self._threads if t not in joined]
                    growing = self._growing
                if not threads and not growing:
                    break
                for thread in threads:
                    thread.join()
                    joined.add(thread)
                if not threads:
                    time.sleep(0.001)

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        # Leaving on an error (a failed read, Ctrl-C): what has not started is not run.
        self.shutdown(wait=True, cancel_futures=kind is not None)
