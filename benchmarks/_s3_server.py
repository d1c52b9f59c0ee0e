"""moto's S3 server with every request counted: ``python -m benchmarks._s3_server PORT LOG [MS]``.

moto's server mode (``python -m moto.server``) keeps no log of bytes. This runs the same WSGI
application on the same werkzeug server, wrapped in a middleware that appends one JSON line
per request to LOG: its arrival time, method, path, query, status, the request body's length (its
``Content-Length``) and the response body's bytes as they are handed to the server (headers
are not counted). With MS, every response waits MS milliseconds before it starts, a stand-in
for a network round trip (requests in flight wait side by side, as on a network). Binds
127.0.0.1 only.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any


class Counting:
    """WSGI middleware: log each request's method, path, status and body bytes."""

    def __init__(self, app: Callable[..., Iterable[bytes]], log: Path, latency: float) -> None:
        self.app = app
        self.log = log
        self.latency = latency
        self.lock = threading.Lock()

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterator[bytes]:
        status: list[int] = []
        start = time.time()

        def counted_start(code: str, headers: list[tuple[str, str]], *rest: Any) -> Any:
            status.append(int(code.split(" ", 1)[0]))
            return start_response(code, headers, *rest)

        if self.latency:
            time.sleep(self.latency)
        body = self.app(environ, counted_start)
        sent = 0
        try:
            for chunk in body:
                sent += len(chunk)
                yield chunk
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
            entry = {
                "t": start,
                "method": environ["REQUEST_METHOD"],
                "path": environ.get("PATH_INFO", ""),
                "query": environ.get("QUERY_STRING", ""),
                "status": status[-1] if status else 0,
                "bytes_in": int(environ.get("CONTENT_LENGTH") or 0),
                "bytes_out": sent,
            }
            with self.lock, self.log.open("a") as f:
                f.write(json.dumps(entry) + "\n")


def main() -> None:
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    port, log = int(sys.argv[1]), Path(sys.argv[2])
    latency = float(sys.argv[3]) / 1000 if len(sys.argv) > 3 else 0.0
    app = DomainDispatcherApplication(create_backend_app)
    run_simple(
        "127.0.0.1",
        port,
        Counting(app, log, latency),
        threaded=True,
        request_handler=MotoRequestHandler,
    )


if __name__ == "__main__":
    main()
