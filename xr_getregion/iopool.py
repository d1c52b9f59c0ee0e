"""A pool of threads for reads that starts few threads and adds more while reads wait.

How many reads should be in flight depends on how long a read waits for its bytes, which is
not known before the first reads. Each thread that reads through GDAL also costs a fixed
~10 ms of CPU on its first read (its own PROJ context, its own rasterio environment, its own
connections): on 2 cores, starting 16 threads for the 36 reads of the ~1 km2 polygon of
``benchmarks.cogs`` made a read at 0 ms latency 0.10 s slower (0.41 s against 0.29 s with
4), while at 30 ms latency 16 threads were twice as fast as 4 (0.61 s against 1.10 s). So
the pool starts :func:`first_threads` threads and, as reads finish, adds threads while the
machine's cores are partly idle (:data:`IDLE_SHARE`), doubling at most per
:data:`WINDOW_S`, up to the cores' worth of reads the finished ones show to be waiting
(:func:`wanted_threads`).

The idle share is the machine's, not the process's: a read waiting for a core (or for a
server on the same machine) is not waiting for the network, and its thread's own times
cannot tell the two apart (at 0 ms latency the reads above spent 6 times their CPU time
waiting, with no core idle).

Written by hand because the standard library's and dask's pools have a fixed size (dask's
threaded scheduler keeps ``_max_workers`` tasks submitted, whatever runs them).
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any

import psutil
from dask.system import CPU_COUNT

__all__ = ["IOPool", "first_threads", "wanted_threads"]

#: Threads started before the first read, per core. On 2 cores, 4 threads were the fastest
#: read at 0 ms latency: ``python -m benchmarks.cogs`` ~1 km2 polygon, odc-stac / rioxarray /
#: stackstac, 0.27-0.34 / 0.28-0.31 / 0.24-0.28 s with 4, 0.30-0.36 / 0.32-0.36 / 0.27-0.30 s
#: with 8 and 0.41-0.52 / 0.34-0.42 / 0.34-0.36 s with 16 (three runs each).
THREADS_PER_CORE = 2


#: The machine's share of idle core time above which the pool adds threads. Measured on 2
#: cores with 4 threads (``benchmarks.cogs``, odc-stac, the reads alone): at 0 ms latency
#: 0.21 (~1 km2 polygon) and 0.10 (50 points) of the cores were idle; at 30 ms, 0.78 and
#: 0.65. The first 50 ms at 0 ms latency, while the first files open, reached 0.44: with a
#: third, the pool grew to 7-8 threads there.
IDLE_SHARE = 0.5

#: The shortest time over which the idle share is measured: the system's CPU times count in
#: ticks of 10 ms.
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


#: The machine's logical cores, as the system's idle time counts them.
HOST_CPUS = psutil.cpu_count() or 1


def _idle_seconds() -> float:
    """The machine's idle core time so far, summed over its cores."""
    return float(psutil.cpu_times().idle)


class IOPool(Executor):
    """An executor running tasks on between :func:`first_threads` and ``most`` threads,
    named ``prefix_N``; threads are added while the cores are partly idle and the tasks that
    finished show that more would keep them busy (:func:`wanted_threads`), never removed
    before :meth:`shutdown`.

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
        self._queue: queue.SimpleQueue[tuple[Future, Callable, tuple, dict] | None] = (
            queue.SimpleQueue()
        )
        self._lock = threading.RLock()
        self._threads: list[threading.Thread] = []
        self._wall = 0.0
        self._cpu = 0.0
        self._closed = False
        self._since = time.perf_counter()
        self._idle = _idle_seconds()
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
        would otherwise wait for when it next submits. If a start fails (or Ctrl-C comes),
        the threads of this call end and the error is raised."""
        barrier = threading.Barrier(n + 1)
        started: list[threading.Thread] = []
        try:
            for _ in range(n):
                thread = threading.Thread(
                    target=self._work,
                    args=(barrier,),
                    name=f"{self._prefix}_{len(self._threads) + len(started)}",
                )
                thread.start()
                started.append(thread)
            barrier.wait()
        except BaseException:
            barrier.abort()  # those started leave at the barrier
            raise
        self._threads.extend(started)

    def _work(self, barrier: threading.Barrier) -> None:
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            return
        while True:
            item = self._queue.get()
            if item is None:
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
            self._finished(time.perf_counter() - wall, time.thread_time() - cpu)

    def _finished(self, wall: float, cpu: float) -> None:
        """Count a finished task's times; if the cores were partly idle since the last look,
        at least :data:`WINDOW_S` ago, and tasks wait, start the threads the times show are
        wanted, at most as many as run."""
        with self._lock:
            self._wall += wall
            self._cpu += cpu
            current = len(self._threads)
            now = time.perf_counter()
            if self._closed or current >= self._most or now - self._since < WINDOW_S:
                return
            idle = _idle_seconds()
            share = (idle - self._idle) / ((now - self._since) * HOST_CPUS)
            self._since, self._idle = now, idle
            if share <= IDLE_SHARE or self._queue.empty():
                return
            want = wanted_threads(self._wall, self._cpu, current, self._most, self._cores)
            more = min(want, 2 * current)
            if more > current:
                try:
                    self._start(more - current)
                except RuntimeError:  # no more threads allowed: go on with those running
                    self._most = current

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        """Run ``fn(*args, **kwargs)`` on a thread of the pool."""
        future: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot submit to an IOPool after shutdown")
            self._queue.put((future, fn, args, kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop the threads once the queue is done (or, with ``cancel_futures``, cancel what
        has not started); with ``wait``, return when they have ended."""
        with self._lock:
            if not self._closed:
                self._closed = True
                if cancel_futures:
                    while True:
                        try:
                            item = self._queue.get_nowait()
                        except queue.Empty:
                            break
                        if item is not None:
                            item[0].cancel()
                for _ in self._threads:
                    self._queue.put(None)
            threads = list(self._threads)
        if wait:
            for thread in threads:
                if thread is not threading.current_thread():
                    thread.join()

    def __exit__(self, kind: Any, value: Any, traceback: Any) -> None:
        # Leaving on an error (a failed read, Ctrl-C): what has not started is not run.
        self.shutdown(wait=True, cancel_futures=kind is not None)
