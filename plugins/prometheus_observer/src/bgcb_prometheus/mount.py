"""``mount(app)``: the scrape endpoint on the Dash app's own server, through each server's public routing API.

Dash 2.18 and 3.x serve with Flask; Dash 4.4 also with FastAPI or Quart
(``Dash(..., backend="fastapi" | "quart")``). The route is added beside
Dash's: call ``mount`` where the app is built, before it serves (Dash's
FastAPI catch-all route is added at startup and would shadow a later one).
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoint's annotations as objects.

import asyncio
import logging
import sys
import threading
from typing import Any

from bgcb import provider

from .exposition import ENV_DIR, multiprocess_dir, render

log = logging.getLogger("bgcb.prometheus")
ENDPOINT = "bgcb_prometheus_metrics"

_mounted: set[tuple[int, str]] = set()
_lock = threading.Lock()


def mount(app: Any, path: str = "/metrics") -> None:
    """Serve the bgcb metrics (and any other metric of prometheus_client's registry) at ``path``.

    ``app`` is a Dash app or its server (Flask, FastAPI or Quart). Mounting the
    same path on the same server again does nothing.
    """
    server = getattr(app, "server", app)
    with _lock:
        if (id(server), path) in _mounted:
            return
        if hasattr(server, "add_api_route"):
            _fastapi(server, path)
        elif _is_quart(server):
            _quart(server, path)
        elif hasattr(server, "add_url_rule"):
            _flask(server, path)
        else:
            raise TypeError(
                f"bgcb-prometheus: cannot add a route to {type(server).__name__}; "
                "expected a Dash app or its Flask, FastAPI or Quart server"
            )
        _mounted.add((id(server), path))
    if multiprocess_dir() is None and provider.current_role() == "web":  # `bgcb worker` imports the app too
        log.warning(
            "bgcb-prometheus: %s is not set, so %s shows this process's events only: jobs that worker processes run "
            "(a diskcache pool, Celery workers) and other web workers are missing. Set it, for every process, "
            "before they start (see the bgcb-prometheus README).",
            ENV_DIR,
            path,
        )


def _is_quart(server: Any) -> bool:
    quart = sys.modules.get("quart")  # a Quart server means quart is imported
    return quart is not None and isinstance(server, quart.Quart)


def _flask(server: Any, path: str) -> None:
    from flask import Response, request

    def metrics() -> Response:
        body, content_type = render(request.headers.get("Accept"))
        return Response(body, content_type=content_type)

    server.add_url_rule(path, endpoint=f"{ENDPOINT}:{path}", view_func=metrics, methods=["GET"])


def _quart(server: Any, path: str) -> None:
    from quart import Response, request

    async def metrics() -> Response:
        # Reading the multiprocess files and the stores blocks: off the event loop.
        body, content_type = await asyncio.to_thread(render, request.headers.get("Accept"))
        return Response(body, content_type=content_type)

    server.add_url_rule(path, endpoint=f"{ENDPOINT}:{path}", view_func=metrics, methods=["GET"])


def _fastapi(server: Any, path: str) -> None:
    from starlette.requests import Request
    from starlette.responses import Response

    def metrics(request: Request) -> Response:  # a plain def: FastAPI runs it in its thread pool
        body, content_type = render(request.headers.get("accept"))
        return Response(body, headers={"Content-Type": content_type})

    server.add_api_route(path, metrics, methods=["GET"], include_in_schema=False, name=f"{ENDPOINT}:{path}")
