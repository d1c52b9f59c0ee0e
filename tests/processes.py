"""Starting and stopping the test servers' subprocesses on 127.0.0.1, without pytest, so
the benchmarks start the same servers the same way (``tests/servers.py`` has the fixtures)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} at start")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within 30 s")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


@dataclass
class RangeServer:
    url: str
    root: Path
    log: Path

    def requests(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def reset(self) -> None:
        self.log.write_text("")


@contextmanager
def serve_ranges(root: Path, log: Path, latency_ms: float = 0.0) -> Iterator[RangeServer]:
    """tests/range_server.py serving ``root`` on a free port of 127.0.0.1, ``latency_ms``
    waited before each answer; stopped on exit."""
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "range_server.py"),
            str(root),
            str(port),
            str(log),
            str(latency_ms),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(port, process, "the range server")
        yield RangeServer(f"http://127.0.0.1:{port}", root, log)
    finally:
        stop(process)
