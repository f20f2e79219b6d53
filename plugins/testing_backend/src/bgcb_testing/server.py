"""Real-server helpers for tests: serve a Dash app over HTTP, find a free port, wait for a condition."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


class LiveServer:
    """A Dash app served by werkzeug in a thread; ``url`` is where it answers.

    For tests that need real HTTP (several clients, worker processes polling
    the same app) rather than Flask's test client.
    """

    def __init__(self, app: Any) -> None:
        from werkzeug.serving import make_server

        self.httpd = make_server("127.0.0.1", 0, getattr(app, "server", app), threaded=True)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="bgcb-live-server", daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


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
