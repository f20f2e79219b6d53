"""Serve a Dash app over real HTTP for a test, on a free loopback port."""

from __future__ import annotations

import threading
from typing import Any


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
