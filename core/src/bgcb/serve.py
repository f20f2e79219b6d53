"""The gate on Dash's servers: :class:`bgcb.gate.Gate` as WSGI (Flask) and ASGI (FastAPI, Quart) middleware.

It wraps the server outermost, so that Dash sees each dispatch as an
ordinary request: a held poll is dispatched once, after the wait, with the
backend already read; a first request whose job has news is dispatched again
as the poll the renderer would send, and its answer carries the handles.

On async servers every backend call of the gate runs in a thread of its own
pool, so holding never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import io
import threading
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

from . import defaults
from .gate import Gate
from .hold import _VISIT, Call, Flow, Query, Reply, Visit, encode_query, parse_query
from .routes import read_body

ENDPOINT = "/_dash-update-component"
_installed = threading.Lock()
_hooked: bool | None = None


def register() -> bool:
    """Install the gate on every Dash app created from now on (once per process).

    Returns False where Dash has no setup hook (2.18): see :func:`install_here`.
    """
    global _hooked
    from . import _dash_compat as compat

    with _installed:
        if _hooked is None:
            _hooked = compat.on_app_setup(install)
        return _hooked


def install(app: Any) -> None:
    """Wrap ``app``'s server (Flask, FastAPI or Quart) with the gate; idempotent."""
    server = getattr(app, "server", None)
    if server is None or getattr(server, "_bgcb_gate", False):
        return
    if hasattr(server, "asgi_app") and asyncio.iscoroutinefunction(server.asgi_app):  # Quart
        server.asgi_app = ASGIGate(Gate(app, defaults.HOLD_MAX_ASYNC, defer=True), server.asgi_app)
    elif hasattr(server, "wsgi_app"):  # Flask
        server.wsgi_app = WSGIGate(Gate(app, defaults.HOLD_MAX_THREADED), server.wsgi_app)
    elif hasattr(server, "build_middleware_stack"):  # Starlette/FastAPI: outside Dash's own middleware
        build = server.build_middleware_stack
        gate = Gate(app, defaults.HOLD_MAX_ASYNC, defer=True)
        server.build_middleware_stack = lambda: ASGIGate(gate, build())
    else:
        return
    server._bgcb_gate = True


def install_here() -> None:
    """Dash 2.18 (no hooks): install on the Flask app serving this request; later requests pass the gate."""
    from . import _dash_compat as compat

    server = compat.current_server()
    if server is None or getattr(server, "_bgcb_gate", False):
        return
    app = compat.current_app()
    if app is not None and getattr(app, "server", None) is server:
        install(app)


def run_sync(flow: Flow, call: Callable[[Query, Visit | None], Reply]) -> Reply:
    """Drive ``flow`` in this thread."""
    sent: Any = None
    failed: BaseException | None = None
    while True:
        try:
            effect = flow.throw(failed) if failed is not None else flow.send(sent)
        except StopIteration as done:
            return done.value
        sent, failed = None, None
        try:
            sent = call(effect.query, effect.visit) if isinstance(effect, Call) else effect.fn(*effect.args)
        except Exception as exc:
            failed = exc


async def run_async(flow: Flow, call: Callable[[Query, Visit | None], Awaitable[Reply]], pool: ThreadPoolExecutor) -> Reply:
    """Drive ``flow`` on the event loop; blocking effects go to ``pool``."""
    loop = asyncio.get_running_loop()
    sent: Any = None
    failed: BaseException | None = None
    while True:
        try:
            effect = flow.throw(failed) if failed is not None else flow.send(sent)
        except StopIteration as done:
            return done.value
        sent, failed = None, None
        try:
            if isinstance(effect, Call):
                sent = await call(effect.query, effect.visit)
            else:
                sent = await loop.run_in_executor(pool, partial(effect.fn, *effect.args))
        except Exception as exc:
            failed = exc


class WSGIGate:
    """WSGI middleware around Flask's ``wsgi_app``."""

    def __init__(self, gate: Gate, app: Callable[..., Iterable[bytes]]) -> None:
        self.gate, self.app = gate, app

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("REQUEST_METHOD") != "POST" or not environ.get("PATH_INFO", "").endswith(ENDPOINT):
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else environ["wsgi.input"].read()
        if not environ.get("wsgi.multithread", True):
            self.gate.limit_default = 0  # one thread per process: a held request would stall it
        reply = run_sync(self.gate.flow(parse_query(environ.get("QUERY_STRING", "")), body), partial(self._call, environ, body))
        start_response(f"{reply.status} {reply.reason}", reply.headers)
        return [reply.body]

    def _call(self, environ: dict[str, Any], body: bytes, query: Query, visit: Visit | None) -> Reply:
        env = dict(environ, QUERY_STRING=encode_query(query), CONTENT_LENGTH=str(len(body)))
        env["wsgi.input"] = io.BytesIO(body)
        env.pop("HTTP_ACCEPT_ENCODING", None)  # the gate may splice the body: keep it plain
        started: list[Any] = []

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
            started[:] = [status, headers]
            return lambda chunk: None

        token = _VISIT.set(visit)
        try:
            chunks = self.app(env, start)
            try:
                data = b"".join(chunks)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
        finally:
            _VISIT.reset(token)
        code, _, reason = started[0].partition(" ")
        return Reply(int(code), reason, list(started[1]), data)


class ASGIGate:
    """ASGI middleware around Quart's ``asgi_app`` or FastAPI's middleware stack."""

    def __init__(self, gate: Gate, app: Callable[..., Awaitable[None]]) -> None:
        self.gate, self.app = gate, app
        self.pool = ThreadPoolExecutor(defaults.HOLD_MAX_ASYNC + 8, thread_name_prefix="bgcb-hold")

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope.get("type") != "http" or scope.get("method") != "POST" or not scope.get("path", "").endswith(ENDPOINT):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        if body is None:
            return  # the client went away
        query = parse_query(scope.get("query_string", b"").decode("latin-1"))
        reply = await run_async(self.gate.flow(query, body), partial(self._call, scope, receive, body), self.pool)
        headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        await send({"type": "http.response.body", "body": reply.body})

    async def _call(
        self, scope: dict[str, Any], receive: Callable[..., Any], body: bytes, query: Query, visit: Visit | None
    ) -> Reply:
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"accept-encoding"]
        inner = dict(scope, query_string=encode_query(query).encode("latin-1"), headers=headers)
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        started: dict[str, Any] = {}
        parts: list[bytes] = []

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))

        token = _VISIT.set(visit)
        try:
            await self.app(inner, replay, capture)
        finally:
            _VISIT.reset(token)
        out = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in started.get("headers", [])]
        return Reply(int(started.get("status", 500)), "", out, b"".join(parts))
