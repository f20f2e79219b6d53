"""The runner's semantics, with an in-memory channel (pure logic)."""

from __future__ import annotations

import asyncio

import dash
import plotly.graph_objects as go
from dash import Input, Output, no_update
from dash.exceptions import PreventUpdate

from bgcb import _dash_compat as compat
from bgcb.jobs import Job, State
from bgcb.runner import run


class ListChannel:
    def __init__(self, cancel_after: int | None = None) -> None:
        self.updates: list = []
        self.cancel_after = cancel_after

    def progress(self, value):
        self.updates.append(("progress", value))

    def set_props(self, component_id, props):
        self.updates.append(("props", component_id, props))

    def cancelled(self) -> bool:
        return self.cancel_after is not None and len(self.updates) >= self.cancel_after


def _key(fn) -> str:
    for key, registered, _ in compat.BaseManager.functions:
        if registered is fn:
            return key
    raise LookupError(fn)


def _bg(name: str, **kw):
    return dash.callback(Output(f"{name}-out", "children"), Input(f"{name}-in", "n_clicks"), background=True, **kw)


@_bg("r-value")
def value_cb(n):
    return {"n": n, "fig": go.Figure(go.Bar(y=[1, 2]))}


@_bg("r-progress", progress=[Output("r-progress-bar", "value")])
def progress_cb(set_progress, n):
    for i in range(n):
        set_progress(i)
        dash.set_props("side", {"children": i})
    return "ok"


@_bg("r-prevent")
def prevent_cb(n):
    raise PreventUpdate


@_bg("r-error")
def error_cb(n):
    raise KeyError("missing")


@_bg("r-async")
async def async_cb(n):
    await asyncio.sleep(0)
    return n * 2


@_bg("r-ctx")
def ctx_cb(n):
    return dash.callback_context.triggered_id


@_bg("r-noup")
def noup_cb(n):
    return no_update


@_bg("r-swallow", progress=[Output("r-swallow-bar", "value")])
def swallow_cb(set_progress, n):
    for i in range(100):
        try:
            set_progress(i)
        except Exception:  # a user's broad except must not swallow cancel
            pass
    return "never"


def _job(fn, args, **kw) -> Job:
    return Job(callback=_key(fn), args=args, **kw)


def test_value_is_json_with_figures() -> None:
    outcome = run(_job(value_cb, [3]), ListChannel())
    assert outcome.kind == "value"
    assert outcome.value["n"] == 3
    assert outcome.value["fig"]["data"][0]["type"] == "bar"


def test_progress_and_set_props_in_order() -> None:
    channel = ListChannel()
    outcome = run(_job(progress_cb, [2], progress=True), channel)
    assert outcome.value == "ok"
    assert channel.updates == [
        ("progress", [0]),
        ("props", "side", {"children": 0}),
        ("progress", [1]),
        ("props", "side", {"children": 1}),
    ]


def test_prevent_update_becomes_no_update() -> None:
    assert run(_job(prevent_cb, [1]), ListChannel()).kind == "no_update"


def test_no_update_return_is_encoded() -> None:
    outcome = run(_job(noup_cb, [1]), ListChannel())
    assert outcome.kind == "value" and outcome.value == compat.NO_UPDATE


def test_exception_has_message_and_traceback() -> None:
    outcome = run(_job(error_cb, [1]), ListChannel())
    assert outcome.kind == "error"
    assert "missing" in outcome.error["msg"]
    assert "KeyError" in outcome.error["tb"] and "error_cb" in outcome.error["tb"]


def test_async_callback_is_awaited() -> None:
    assert run(_job(async_cb, [4]), ListChannel()).value == 8


def test_context_is_rebuilt() -> None:
    context = {"triggered_inputs": [{"prop_id": "r-ctx-in.n_clicks", "value": 1}], "inputs_list": [], "states_list": []}
    assert run(_job(ctx_cb, [1], context=context), ListChannel()).value == "r-ctx-in"


def test_cancel_is_cooperative_and_not_swallowed() -> None:
    outcome = run(_job(swallow_cb, [1], progress=True), ListChannel(cancel_after=3))
    assert outcome.kind == "cancelled"


def test_timeout_stops_the_callback() -> None:
    import time

    @_bg("r-slow", progress=[Output("r-slow-bar", "value")])
    def slow_cb(set_progress, n):
        for i in range(100):
            set_progress(i)
            time.sleep(0.01)
        return "late"

    outcome = run(_job(slow_cb, [1], progress=True, timeout=0.05), ListChannel())
    assert outcome.kind == "timeout" and outcome.state is State.TIMED_OUT and "timed out" in outcome.error["msg"]


class _Stopped(Exception):
    """Stands for a backend's own time-limit exception (Celery's SoftTimeLimitExceeded)."""


def test_backend_stop_error_is_a_timeout_not_a_failure() -> None:
    @_bg("r-limit")
    def limited_cb(n):
        raise _Stopped("soft time limit")

    job = _job(limited_cb, [1], timeout=2)
    assert run(job, ListChannel(), stop_errors=(_Stopped,)).kind == "timeout"
    assert run(job, ListChannel()).kind == "error", "without stop_errors it is the callback's own error"


def test_unknown_callback_says_how_to_register() -> None:
    outcome = run(Job(callback="0" * 64, args=[]), ListChannel())
    assert outcome.kind == "error" and "bgcb worker APP_MODULE" in outcome.error["msg"]
