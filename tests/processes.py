"""Starting and stopping the test servers' subprocesses on 127.0.0.1, without pytest, so
the benchmarks start the same servers the same way (``tests/servers.py`` has the fixtures);
and Azurite, Microsoft's Azure Storage emulator, installed from npm on first use."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
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


# Azurite is a Node.js program, on npm only. 3.35.0 is the last release whose `engines` takes
# Node 20 (3.36 asks for 21, 3.37 for 22); it has every call adlfs and GDAL make, conditional
# writes (If-None-Match: *) included.
AZURITE_VERSION = "3.35.0"
# The project-local install (git-ignored), one directory per version.
AZURITE_CACHE = HERE.parent / ".azurite"
NPM_TIMEOUT_S = 300


def azurite_blob(version: str = AZURITE_VERSION, cache: Path = AZURITE_CACHE) -> Path:
    """The ``azurite-blob`` program of Azurite ``version``, installed with npm under ``cache``
    the first time (about 10-30 s, npm's registry reached); RuntimeError naming the command
    when npm is missing or fails.

    The install goes to a temporary directory renamed into place when complete, under a lock,
    so an interrupted install or two test sessions at once never leave a half install.
    """
    target = cache / version
    program = target / "node_modules" / ".bin" / "azurite-blob"
    if program.exists():
        return program
    command = f"npm install --no-save --prefix {target} azurite@{version}"
    npm = shutil.which("npm")
    if npm is None:
        raise RuntimeError(
            f"the Azure tests need Azurite {version}, installed with npm (Node.js >= 10), and "
            f"npm is not on PATH: install Node.js and npm, or run `{command}` yourself."
        )
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if program.exists():  # installed by another session while this one waited
            return program
        staging = Path(tempfile.mkdtemp(dir=cache, prefix=f".{version}.tmp-"))
        try:
            quiet = ["--no-audit", "--no-fund", "--no-update-notifier", "--loglevel=error"]
            argv = [npm, "install", "--no-save", "--ignore-scripts", *quiet]
            argv += ["--prefix", str(staging), f"azurite@{version}"]
            try:
                done = subprocess.run(
                    argv, capture_output=True, text=True, timeout=NPM_TIMEOUT_S, check=False
                )
            except subprocess.TimeoutExpired:
                raise RuntimeError(
                    f"`{command}` did not finish within {NPM_TIMEOUT_S} s; is npm's registry "
                    "reachable (npm config get registry)?"
                ) from None
            if done.returncode != 0 or not (staging / "node_modules/.bin/azurite-blob").exists():
                raise RuntimeError(
                    f"`{command}` failed with status {done.returncode}:\n"
                    + (done.stderr or done.stdout)[-2000:]
                )
            os.rename(staging, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return program


@contextmanager
def serve_azurite(location: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Azurite's blob service on a free port of 127.0.0.1, in memory (``location`` is its
    working directory), no telemetry, any API version the client asks (azure-storage-blob may
    be newer than the emulator); its endpoint for the dev account, and the process."""
    program = azurite_blob()
    port = free_port()
    argv = [str(program), "--blobHost", "127.0.0.1", "--blobPort", str(port)]
    # In memory: --location is refused with it, so ``location`` is only the working directory.
    argv += ["--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck", "--silent"]
    process = subprocess.Popen(
        argv, cwd=location, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_for(port, process, f"Azurite ({program})")
        yield f"http://127.0.0.1:{port}/{AZURITE_ACCOUNT}", process
    finally:
        stop(process)


# Azurite's one account and its key, the same in every install: public, in Microsoft's
# documentation of the emulator ("Authorize with Shared Key credentials"), not a secret.
AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
