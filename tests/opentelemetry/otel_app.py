"""A Dash app whose background callbacks the OpenTelemetry tests trace, on the in-process testing backend.

Each request runs inside a SERVER span of its own, started the way OpenTelemetry's Flask and ASGI
instrumentations start theirs (current for the request), so that the submit span has a request to nest in.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

import dash
from dash import Dash, Input, Output, html
from opentelemetry import context, trace

import bgcb

#: The name of every request's span (what an instrumentation would call it).
REQUEST_SPAN = "HTTP request"
#: Runs per ``later`` token: the first run asks to run again.
RUNS: Counter[str] = Counter()
_runs_lock = threading.Lock()
tracer = trace.get_tracer("otel-test-app")


def build(server: str = "flask") -> Dash:
    """The app on ``server`` (flask or fastapi), its requests traced."""
    manager = bgcb.manager(backend="testing", workers=2)
    app = Dash(__name__, background_callback_manager=manager, **({"backend": server} if server != "flask" else {}))
    app.layout = html.Div(
        [html.Button(id=f"{name}-btn") for name in ("work", "fail", "later", "slow", "slow-cancel")]
        + [html.Div(id=f"{name}-out") for name in ("work", "fail", "later", "slow", "props")]
        + [html.Div(id="work-progress")]
    )
    _callbacks(app)
    if server == "flask":
        _trace_flask(app.server)
    else:
        _trace_asgi(app.server)
    return app


def _callbacks(app: Dash) -> None:
    @app.callback(
        Output("work-out", "children"),
        Input("work-btn", "n_clicks"),
        background=True,
        progress=[Output("work-progress", "children")],
        prevent_initial_call=True,
    )
    def work(set_progress: Any, n_clicks: int) -> str:
        for step in range(int(n_clicks)):
            set_progress(f"step {step}")
        dash.set_props("props-out", {"children": "touched"})
        with tracer.start_as_current_span("inner work") as span:
            span.set_attribute("app.steps", int(n_clicks))
        return f"worked {n_clicks}"

    @app.callback(Output("fail-out", "children"), Input("fail-btn", "n_clicks"), background=True, prevent_initial_call=True)
    def fail(n_clicks: int) -> str:
        raise ValueError("boom from the worker")

    @app.callback(Output("later-out", "children"), Input("later-btn", "n_clicks"), background=True, prevent_initial_call=True)
    def later(n_clicks: int) -> str:
        with _runs_lock:
            RUNS[str(n_clicks)] += 1
            run = RUNS[str(n_clicks)]
        if run == 1:
            bgcb.retry_later(0.05, "not yet")
        return f"later ok on run {run}"

    @app.callback(
        Output("slow-out", "children"),
        Input("slow-btn", "n_clicks"),
        background=True,
        progress=[Output("slow-out", "title")],
        cancel=[Input("slow-cancel-btn", "n_clicks")],
        prevent_initial_call=True,
    )
    def slow(set_progress: Any, n_clicks: int) -> str:
        for step in range(200):
            set_progress(str(step))
            time.sleep(0.02)
        return "slow finished"


def _trace_flask(server: Any) -> None:
    """Start a current SERVER span per request, as ``FlaskInstrumentor`` does."""
    import flask

    @server.before_request
    def _start() -> None:
        span = tracer.start_span(REQUEST_SPAN, kind=trace.SpanKind.SERVER, attributes={"http.route": flask.request.path})
        flask.g.otel = (span, context.attach(trace.set_span_in_context(span)))

    @server.teardown_request
    def _end(exc: BaseException | None) -> None:
        span, token = flask.g.pop("otel")
        context.detach(token)
        span.end()


def _trace_asgi(server: Any) -> None:
    """The same per request on FastAPI, as the ASGI instrumentation does."""

    @server.middleware("http")
    async def _traced(request: Any, call_next: Any) -> Any:
        attributes = {"http.route": request.url.path}
        with tracer.start_as_current_span(REQUEST_SPAN, kind=trace.SpanKind.SERVER, attributes=attributes):
            return await call_next(request)
