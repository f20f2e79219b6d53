"""Real-server helpers for tests: serve a Dash app over HTTP, find a free port, wait for a condition."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class LiveServer:
    """A Dash app served over real HTTP in a thread; ``url`` is where it answers.

    Flask apps are served by werkzeug; Dash 4.4's FastAPI apps by uvicorn and
    Quart apps by hypercorn, as in production. For tests that need real HTTP
    (several clients, worker processes polling the same app) rather than
    Flask's test client.
    """

    def __init__(self, app: Any) -> None:
        server = getattr(app, "server", app)
        kind = type(server).__module__.split(".")[0]
        self._stop: Callable[[], None]
        if kind == "fastapi":
            self.port = self._uvicorn(server)
        elif kind == "quart":
            self.port = self._hypercorn(server)
        else:
            from werkzeug.serving import make_server

            httpd = make_server("127.0.0.1", 0, server, threaded=True)
            self.port = httpd.server_port
            self.thread = threading.Thread(target=httpd.serve_forever, name="bgcb-live-server", daemon=True)

            def stop() -> None:
                httpd.shutdown()
                httpd.server_close()

            self._stop = stop
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread.start()
        wait_for(lambda: _answers(self.port), 30, f"the test server on port {self.port}")

    def _uvicorn(self, server: Any) -> int:
        import uvicorn

        port = free_port()
        httpd = uvicorn.Server(uvicorn.Config(server, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
        self.thread = threading.Thread(target=httpd.run, name="bgcb-live-uvicorn", daemon=True)

        def stop() -> None:
            httpd.should_exit = True

        self._stop = stop
        return port

    def _hypercorn(self, server: Any) -> int:
        import asyncio

        from hypercorn.asyncio import serve
        from hypercorn.config import Config

        port = free_port()
        config = Config()
        config.bind = [f"127.0.0.1:{port}"]
        config.loglevel = "WARNING"
        loop = asyncio.new_event_loop()
        done = asyncio.Event()

        async def main() -> None:
            await serve(server, config, shutdown_trigger=done.wait)  # type: ignore[arg-type,unused-ignore]

        def run() -> None:
            try:
                loop.run_until_complete(main())
            finally:
                loop.close()

        self.thread = threading.Thread(target=run, name="bgcb-live-hypercorn", daemon=True)

        def stop() -> None:
            loop.call_soon_threadsafe(done.set)

        self._stop = stop
        return port

    def stop(self) -> None:
        self._stop()
        self.thread.join(5)


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def free_port() -> int:
    """A loopback port free right now, for a server a test starts itself."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Callable[[], T], timeout: float, what: str, interval: float = 0.02) -> T:
    """Poll ``predicate`` until it returns something truthy and return that;
    fail with ``what`` in the message after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
