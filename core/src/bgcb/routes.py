"""Extra pages on a Dash app's server, whichever server it is (Flask, FastAPI, Quart), and standalone.

:func:`mount` puts a plain handler (:class:`Request` in, :class:`Response` out,
synchronous) under a path prefix, as WSGI or ASGI middleware around the
server, the way the hold gate wraps it (:mod:`bgcb.serve`): Dash never sees
those requests, and no server's routing API is needed. On async servers the
handler runs in a worker thread, so a slow backend read never blocks the
event loop. :func:`serve` runs the same handler on a server of its own
(``bgcb dashboard``).
"""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

__all__ = ["Request", "Response", "mount", "serve", "is_local"]


@dataclass
class Request:
    method: str
    #: The path below the mount point ("" or "/..."), and the query's values.
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    #: The peer's address (None when the server does not say).
    remote_addr: str | None
    body: bytes = b""


@dataclass
class Response:
    status: int = 200
    body: bytes | str = b""
    content_type: str = "text/html; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)

    def encoded(self) -> bytes:
        return self.body.encode() if isinstance(self.body, str) else self.body


Handler = Callable[[Request], Response]
_REASONS = {200: "OK", 204: "No Content", 400: "Bad Request", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed"}


def is_local(request: Request) -> bool:
    """Whether the request comes from this machine (a loopback address, or a Unix socket)."""
    if request.remote_addr in (None, ""):
        return False
    try:
        return ipaddress.ip_address(request.remote_addr.split("%")[0]).is_loopback
    except ValueError:
        return request.remote_addr == "unix"


def _under(path: str, prefix: str) -> str | None:
    if path == prefix or path.startswith(prefix + "/"):
        return path[len(prefix) :]
    return None


class WSGIRoute:
    def __init__(self, prefix: str, handler: Handler, app: Callable[..., Iterable[bytes]]) -> None:
        self.prefix, self.handler, self.app = prefix, handler, app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        rest = _under(environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", ""), self.prefix)
        if rest is None:
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        headers = {k[5:].replace("_", "-").lower(): str(v) for k, v in environ.items() if k.startswith("HTTP_")}
        request = Request(
            environ.get("REQUEST_METHOD", "GET"),
            rest,
            parse_qs(environ.get("QUERY_STRING", "")),
            headers,
            environ.get("REMOTE_ADDR"),
            environ["wsgi.input"].read(length) if length else b"",
        )
        response = self.handler(request)
        body = response.encoded()
        head = [("Content-Type", response.content_type), ("Content-Length", str(len(body))), *response.headers]
        start_response(f"{response.status} {_REASONS.get(response.status, '')}", head)
        return [body]


async def read_body(receive: Callable[..., Any]) -> bytes | None:
    """An ASGI request's whole body, or None when the client went away before sending it."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


class ASGIRoute:
    def __init__(self, prefix: str, handler: Handler, app: Callable[..., Any]) -> None:
        self.prefix, self.handler, self.app = prefix, handler, app

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        rest = _under(scope.get("path", ""), self.prefix) if scope.get("type") == "http" else None
        if rest is None:
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            return
        client = scope.get("client") or (None, None)
        request = Request(
            scope.get("method", "GET"),
            rest,
            parse_qs(scope.get("query_string", b"").decode("latin-1")),
            {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])},
            client[0],
            body,
        )
        response = await asyncio.to_thread(self.handler, request)
        body = response.encoded()
        head = [("content-type", response.content_type), ("content-length", str(len(body))), *response.headers]
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in head]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def mount(app: Any, prefix: str, handler: Handler) -> None:
    """Serve ``handler`` under ``prefix`` (e.g. ``/bgcb/jobs``) on the Dash app's server."""
    server = getattr(app, "server", app)
    prefix = "/" + prefix.strip("/")
    if hasattr(server, "wsgi_app"):  # Flask
        server.wsgi_app = WSGIRoute(prefix, handler, server.wsgi_app)
    elif hasattr(server, "asgi_app"):  # Quart (perhaps already wrapped by the hold gate)
        server.asgi_app = ASGIRoute(prefix, handler, server.asgi_app)
    elif hasattr(server, "build_middleware_stack"):  # Starlette/FastAPI
        build = server.build_middleware_stack
        server.build_middleware_stack = lambda: ASGIRoute(prefix, handler, build())
        server.middleware_stack = None  # rebuilt on the next request, with the route
    else:
        raise TypeError(f"bgcb: cannot add a page to a server of type {type(server).__name__}")


def serve(handler: Handler, host: str, port: int, prefix: str = "") -> None:
    """Serve ``handler`` alone (``bgcb dashboard``) until interrupted; threads, so a slow read blocks no one."""
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class Threading(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    class Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:  # polls every second would flood the terminal
            pass

    def missing(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("302 Found", [("Location", prefix or "/")])
        return [b""]

    app = WSGIRoute(prefix, handler, missing) if prefix else _Whole(handler)
    with make_server(host, port, app, server_class=Threading, handler_class=Quiet) as server:
        server.serve_forever()


class _Whole(WSGIRoute):
    """Every path is the handler's (the standalone server)."""

    def __init__(self, handler: Handler) -> None:
        super().__init__("", handler, lambda environ, start: [])

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        environ = dict(environ, SCRIPT_NAME="")
        return super().__call__(environ, start_response)
