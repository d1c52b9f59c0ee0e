"""Signals that end a job: SIGTERM and SIGHUP unwind like Ctrl-C, so the cleanup runs.

By default SIGTERM (sent by ``kill``, ``timeout`` and batch schedulers) and SIGHUP (a closed
terminal) end the process at once and run no ``finally``: a table job would leave its hidden
temporary directory of partial files. Inside :func:`terminate_as_exit` they raise
:class:`Terminated` in the main thread instead, which unwinds through every cleanup on the
way out as Ctrl-C's ``KeyboardInterrupt`` does.

This module imports only the standard library: the package imports it first, before xarray
and dask, so that Ctrl-C while those load (over a second) gives the command's one line.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

__all__ = [
    "INTERRUPTED",
    "Terminated",
    "command_start_over",
    "signals_deferred",
    "terminate_as_exit",
]

# SIGHUP does not exist on Windows.
ENDING_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)
# The console script's names (on Windows, pip's launcher runs ``-script.py`` beside the .exe).
COMMAND_SCRIPTS = ("xr-getregion", "xr-getregion.exe", "xr-getregion-script.py")
INTERRUPTED = "xr-getregion: interrupted; no table was written."


class Terminated(SystemExit):
    """The process was sent SIGTERM or SIGHUP.

    A ``SystemExit`` whose code is 128 + the signal number: uncaught, it ends the process
    without a traceback, with the status a shell reports for that signal, after every
    ``finally`` on the way (``except Exception`` does not catch it).
    """

    def __init__(self, signum: int) -> None:
        super().__init__(128 + signum)
        self.signum = signum
        self.name = signal.Signals(signum).name


# Signals received inside signals_deferred(), raised when it ends.
_pending: list[int] = []
_deferring = 0


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    if _deferring:
        _pending.append(signum)
        return
    raise Terminated(signum)


def _ignore_another(signum: int, frame: FrameType | None) -> None:
    """A second SIGTERM or SIGHUP while the first unwinds must not cut its cleanup short."""


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """A SIGTERM or SIGHUP taken over by :func:`terminate_as_exit` waits for the block's end.

    For a cleanup that must not stop half-way (removing a temporary directory): the signal
    raises :class:`Terminated` when the block ends, in place of any exception leaving it.
    """
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        if not _deferring and _pending:
            signum = _pending[0]
            _pending.clear()
            raise Terminated(signum)


@contextlib.contextmanager
def terminate_as_exit() -> Iterator[None]:
    """Inside the block, SIGTERM and SIGHUP raise :class:`Terminated` in the main thread.

    Only a signal whose handler is the default (end the process) is taken over: a handler the
    program set is its own business, and an ignored signal (``nohup`` ignores SIGHUP) stays
    ignored. The previous handlers are back when the block ends. Off the main thread, where
    Python cannot set handlers, the block changes nothing.

    The exception is raised wherever the main thread is, and some code turns what it catches
    into its own error (CPython wraps an exception raised during ``__set_name__`` in a
    ``RuntimeError``): any exception leaving the block after a signal becomes ``Terminated``.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}
    received: list[int] = []

    def once(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        for sig in previous:
            signal.signal(sig, _ignore_another)
        _raise_terminated(signum, frame)

    try:
        for sig in ENDING_SIGNALS:
            if signal.getsignal(sig) is signal.SIG_DFL:
                previous[sig] = signal.signal(sig, once)
        yield
    except Exception as exc:
        if received:
            raise Terminated(received[0]) from exc
        raise
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


# --- Ctrl-C while the command starts --------------------------------------------------------


def _interrupted_at_start(signum: int, frame: FrameType | None) -> None:
    # Nothing has been written yet and nothing needs cleaning up; leave without unwinding
    # through the import machinery, which would print its traceback.
    os.write(2, (INTERRUPTED + "\n").encode())
    os._exit(130)


def _is_the_command() -> bool:
    """Whether this process is ``xr-getregion`` or ``python -m xr_getregion``."""
    if sys.argv and os.path.basename(sys.argv[0]) in COMMAND_SCRIPTS:
        return True
    # While runpy imports the package for ``-m``, sys.argv[0] is still "-m".
    argv = list(getattr(sys, "orig_argv", []))
    return "-m" in argv[:-1] and argv[argv.index("-m") + 1] in ("xr_getregion", "xr_getregion.cli")


def guard_command_start() -> None:
    """When this process is the command, Ctrl-C before ``main`` runs is one line, status 130.

    The command's entry point (``xr_getregion.cli:main``, and ``python -m xr_getregion``)
    imports this package, and with it xarray, dask and pandas, before ``main`` can catch
    anything. ``main`` hands SIGINT back to Python's own handler once its guard is in place,
    through :func:`command_start_over`.
    """
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGINT) is signal.default_int_handler
        and _is_the_command()
    ):
        signal.signal(signal.SIGINT, _interrupted_at_start)


@contextlib.contextmanager
def command_start_over() -> Iterator[None]:
    """Inside the block, Ctrl-C is Python's ``KeyboardInterrupt`` again (``main`` catches it).

    The start-up handler is put back when the block ends, so a second Ctrl-C while the
    interpreter shuts down (joining the threads of an interrupted job) is one line too.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if signal.getsignal(signal.SIGINT) is not _interrupted_at_start:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, _interrupted_at_start)


guard_command_start()
