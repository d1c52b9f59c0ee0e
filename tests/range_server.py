"""A small HTTP file server with single-range ``Range: bytes=a-b`` support, for the tests.

Python's ``http.server`` answers every GET with the whole file; GDAL's ``/vsicurl/`` and
fsspec's HTTP files read COGs and Parquet footers by ranges, so the tests need a server that
honours them. Every request is appended to a log (one JSON line: method, path, status,
bytes sent, the offset of the first byte sent) so a test can count requests and bytes and
tell which byte ranges were read. An optional latency (milliseconds) is
waited before each answer, as object storage makes every request wait; requests wait side by
side, each on its own thread, so it costs round trips, not throughput.

Run: ``python tests/range_server.py ROOT PORT LOG [LATENCY_MS]`` (binds 127.0.0.1 only).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


class RangeHandler(SimpleHTTPRequestHandler):
    log_path: Path
    # The headers and the body go out in two writes: with Nagle's algorithm the body waits
    # for the client's delayed ACK of the headers, about 40 ms on Linux, a hidden latency
    # on every request that would weigh on readers making many small requests.
    disable_nagle_algorithm = True
    latency_s = 0.0
    lock = threading.Lock()

    def _record(self, status: int, sent: int, first: int | None = None) -> None:
        entry: dict[str, object] = {
            "method": self.command,
            "path": self.path,
            "status": status,
            "bytes": sent,
        }
        if first is not None:  # the range sent, so a test can tell which blocks were read
            entry["start"] = first
        with self.lock, self.log_path.open("a") as log:
            log.write(json.dumps(entry) + "\n")

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        if self.latency_s:
            time.sleep(self.latency_s)
        path = Path(self.translate_path(self.path.split("?", 1)[0]))
        if not path.is_file():
            self.send_error(404)
            self._record(404, 0)
            return
        size = path.stat().st_size
        start, end, status = 0, size - 1, 200
        spec = self.headers.get("Range")
        if spec is not None:
            match = _RANGE.match(spec.strip())
            if match is None or (not match[1] and not match[2]):
                self.send_error(416)
                self._record(416, 0)
                return
            if match[1]:
                start = int(match[1])
                end = min(int(match[2]), size - 1) if match[2] else size - 1
            else:  # bytes=-n: the last n bytes
                start = max(size - int(match[2]), 0)
            if start >= size or start > end:
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{size}")
                self.end_headers()
                self._record(416, 0)
                return
            status = 206
        length = end - start + 1
        self.send_response(status)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(length))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()
        # Logged before the body goes out: a client that has its bytes finds them counted.
        self._record(status, 0 if head else length, start)
        if not head:
            with path.open("rb") as f:
                f.seek(start)
                self.wfile.write(f.read(length))


class RangeServer(ThreadingHTTPServer):
    # socketserver's listen backlog is 5: GDAL's threads open a connection per request (the
    # server speaks HTTP/1.0), and past 5 at once Linux drops the SYNs, which the client
    # resends after a second, a stall no real object store has.
    request_queue_size = 128
    daemon_threads = True


def main() -> None:
    root, port, log = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    os.chdir(root)
    RangeHandler.log_path = log
    if len(sys.argv) > 4:
        RangeHandler.latency_s = float(sys.argv[4]) / 1000
    server = RangeServer(("127.0.0.1", port), RangeHandler)
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
