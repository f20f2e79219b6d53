"""One Dash app with every background-callback feature, for the integration
suite. Workers import this module too (``bgcb worker feature_app``), so it
builds its managers at import time from ``$BGCB_BACKEND``."""

from __future__ import annotations

import asyncio
import os
import time
import uuid

import dash
from dash import MATCH, Dash, Input, Output, State, callback_context, dcc, html, no_update
from dash.exceptions import PreventUpdate

import bgcb

#: Results as soon as they exist (``hold=`` seconds) when the suite runs with BGCB_TEST_HOLD set.
#: The first request's wait is longer than the default (0.25 s) so that tests can act inside it.
HOLD = float(os.environ.get("BGCB_TEST_HOLD") or 0)
HELD = {"hold": HOLD, "hold_first": 1.0}
manager = bgcb.manager(**HELD)
cached_manager = bgcb.manager(cache_by=[lambda: "v1"], expire=60, **HELD)
timeout_manager = bgcb.manager(timeout=1.0, **HELD)
keep_manager = bgcb.manager(on_retrigger="keep", **HELD)
#: At most one held request at a time: the rest fall back to plain polling.
bounded_manager = bgcb.manager(hold_max=1, **HELD)
#: A queued job's place and estimated wait show in "wait-status" at each poll.
#: A job whose page stops polling for 2 s is cancelled (a queued one never starts).
abandon_manager = bgcb.manager(abandon_after=2, **HELD)
#: Who submitted a job: the X-Bgcb-User header of the request.
waiting_manager = bgcb.manager(
    on_retrigger="keep", waiting=Output("wait-status", "children"), owner=bgcb.owner_header("X-Bgcb-User"), **HELD
)
#: Per owner: one job runs at a time and two may wait; a third waiting job is refused (on_error shows why).
limited_manager = bgcb.manager(
    owner=bgcb.owner_header("X-Bgcb-User"), max_running_per_owner=1, max_queued_per_owner=2, max_queued=50, **HELD
)
#: A job that raised runs again, twice at most, 0.2 s then 0.4 s later.
retry_manager = bgcb.manager(retries=2, retry_delay=0.2, **HELD)

#: The web server Dash serves the app on (Dash 4.4+): flask (default), fastapi or quart.
SERVER = os.environ.get("BGCB_TEST_SERVER", "flask")
app = Dash(__name__, background_callback_manager=manager, **({"backend": SERVER} if SERVER != "flask" else {}))
server = app.server
#: The live jobs page, where this machine may cancel; and a copy where no one may.
bgcb.jobs_page(app)
bgcb.jobs_page(app, "/bgcb/jobs-readonly", allow=lambda request: False)


def _error_text(exc: Exception) -> str:
    """Callback errors answered with their text, as Dash's debug mode shows them."""
    return f"{type(exc).__name__}: {exc}"


if SERVER == "fastapi":
    # Dash's FastAPI middleware answers errors itself: its debug mode shows the error's text.
    app.backend.register_prune_error_handler(None, False)
else:  # Flask and Quart share this API

    @server.errorhandler(Exception)
    def _show_error(exc):
        return _error_text(exc), 500


app.layout = html.Div(
    [
        html.Button("simple", id="simple-btn"),
        html.Div(id="simple-out"),
        html.Button("progress", id="prog-btn"),
        html.Button("cancel", id="prog-cancel"),
        html.Progress(id="prog-bar"),
        html.Div(id="prog-out"),
        html.Button("props", id="props-btn"),
        html.Div(id="props-out"),
        html.Div(id="props-a"),
        html.Div(id="props-b"),
        html.Button("cache", id="cache-btn"),
        dcc.Input(id="cache-in"),
        dcc.Input(id="cache-ignored"),
        html.Div(id="cache-out"),
        html.Button("error", id="err-btn"),
        html.Div(id="err-out"),
        html.Button("handled", id="handled-btn"),
        html.Div(id="handled-out"),
        html.Button("prevent", id="prevent-btn"),
        html.Div(id="prevent-out"),
        html.Button("multi", id="multi-btn"),
        html.Div(id="multi-a"),
        html.Div(id="multi-b"),
        html.Button("pm", id={"type": "pm-btn", "index": 1}),
        html.Div(id={"type": "pm-out", "index": 1}),
        html.Button("async", id="async-btn"),
        html.Div(id="async-out"),
        html.Button("ctx", id="ctx-btn"),
        dcc.Input(id="ctx-state", value="st"),
        html.Div(id="ctx-out"),
        html.Button("bad", id="bad-btn"),
        html.Div(id="bad-out"),
        html.Button("slow", id="slow-btn"),
        html.Div(id="slow-out"),
        html.Button("timeout", id="timeout-btn"),
        html.Div(id="timeout-out"),
        html.Button("keep", id="keep-btn"),
        html.Div(id="keep-out"),
        html.Button("quiet", id="quiet-btn"),
        html.Button("quiet cancel", id="quiet-cancel"),
        html.Div(id="quiet-out"),
        html.Button("bounded", id="bound-btn"),
        html.Div(id="bound-out"),
        html.Button("echo", id="echo-btn"),
        dcc.Input(id="echo-in"),
        html.Div(id="echo-out"),
        html.Button("plain echo", id="plain-echo-btn"),
        html.Div(id="plain-echo-out"),
        html.Button("wait", id="wait-btn"),
        html.Div(id="wait-out"),
        html.Div(id="wait-progress"),
        html.Div(id="wait-status"),
        html.Button("limited", id="limited-btn"),
        dcc.Input(id="limited-in"),
        html.Div(id="limited-out"),
        html.Div(id="limited-progress"),
        html.Button("flaky", id="flaky-btn"),
        dcc.Input(id="flaky-in"),
        html.Div(id="flaky-out"),
        html.Button("later", id="later-btn"),
        dcc.Input(id="later-in"),
        html.Div(id="later-out"),
        html.Button("abandon", id="abandon-btn"),
        html.Div(id="abandon-out"),
        html.Div(id="abandon-progress"),
    ]
)


@dash.callback(
    Output("abandon-out", "children"),
    Input("abandon-btn", "n_clicks"),
    background=True,
    progress=Output("abandon-progress", "children"),
    manager=abandon_manager,
    prevent_initial_call=True,
)
def abandonable(set_progress, n_clicks):
    _tenths(set_progress, n_clicks)
    return f"ran {n_clicks}"


def _tenths(set_progress, count: int) -> None:
    """Run ``count`` tenths of a second, reporting progress (so a cancel stops it on every backend)."""
    for step in range(count):
        set_progress(str(step))
        time.sleep(0.1)


@dash.callback(
    Output("wait-out", "children"),
    Input("wait-btn", "n_clicks"),
    background=True,
    progress=Output("wait-progress", "children"),
    manager=waiting_manager,
    prevent_initial_call=True,
)
def waits(set_progress, n_clicks):
    _tenths(set_progress, n_clicks)
    return f"waited {n_clicks}"


@dash.callback(
    Output("simple-out", "children"),
    Input("simple-btn", "n_clicks"),
    background=True,
    running=[(Output("simple-btn", "disabled"), True, False)],
    prevent_initial_call=True,
)
def simple(n_clicks):
    return f"done {n_clicks}"


@dash.callback(
    Output("prog-out", "children"),
    Input("prog-btn", "n_clicks"),
    background=True,
    progress=[Output("prog-bar", "value"), Output("prog-bar", "max")],
    progress_default=["0", "10"],
    cancel=[Input("prog-cancel", "n_clicks")],
    running=[(Output("prog-btn", "disabled"), True, False)],
    interval=100,
    prevent_initial_call=True,
)
def with_progress(set_progress, n_clicks):
    steps = int(n_clicks or 1)
    for i in range(1, steps + 1):
        set_progress((str(i), str(steps)))
        time.sleep(0.15)
    return f"progressed {steps}"


@dash.callback(
    Output("props-out", "children"),
    Input("props-btn", "n_clicks"),
    background=True,
    prevent_initial_call=True,
)
def with_set_props(n_clicks):
    dash.set_props("props-a", {"children": "a1"})
    dash.set_props("props-b", {"children": "b1"})
    dash.set_props("props-a", {"title": "t1"})
    return "props done"


@dash.callback(
    Output("cache-out", "children"),
    Input("cache-btn", "n_clicks"),
    State("cache-in", "value"),
    State("cache-ignored", "value"),
    background=True,
    manager=cached_manager,
    cache_args_to_ignore=[0, 2],
    prevent_initial_call=True,
)
def cached(n_clicks, value, ignored):
    return f"{value}:{uuid.uuid4().hex}"


@dash.callback(
    Output("err-out", "children"),
    Input("err-btn", "n_clicks"),
    background=True,
    prevent_initial_call=True,
)
def failing(n_clicks):
    raise ValueError("boom from the worker")


def _on_error(err):
    return f"handled: {err}"


@dash.callback(
    Output("handled-out", "children"),
    Input("handled-btn", "n_clicks"),
    background=True,
    on_error=_on_error,
    prevent_initial_call=True,
)
def failing_handled(n_clicks):
    raise RuntimeError("handled boom")


@dash.callback(
    Output("prevent-out", "children"),
    Input("prevent-btn", "n_clicks"),
    background=True,
    prevent_initial_call=True,
)
def preventing(n_clicks):
    raise PreventUpdate


@dash.callback(
    Output("multi-a", "children"),
    Output("multi-b", "children"),
    Input("multi-btn", "n_clicks"),
    background=True,
    prevent_initial_call=True,
)
def multi(n_clicks):
    return f"a{n_clicks}", no_update


@dash.callback(
    Output({"type": "pm-out", "index": MATCH}, "children"),
    Input({"type": "pm-btn", "index": MATCH}, "n_clicks"),
    background=True,
    prevent_initial_call=True,
)
def pattern(n_clicks):
    return f"pm {callback_context.triggered_id['index']} {n_clicks}"


@dash.callback(
    Output("async-out", "children"),
    Input("async-btn", "n_clicks"),
    background=True,
    prevent_initial_call=True,
)
async def asynchronous(n_clicks):
    await asyncio.sleep(0.05)
    return f"async {n_clicks}"


@dash.callback(
    Output("ctx-out", "children"),
    Input("ctx-btn", "n_clicks"),
    State("ctx-state", "value"),
    background=True,
    prevent_initial_call=True,
)
def context(n_clicks, state):
    ctx = callback_context
    return {
        "triggered_id": ctx.triggered_id,
        "inputs": ctx.inputs,
        "states": ctx.states,
        "header": (ctx.headers or {}).get("X-Bgcb-Test"),
        "cookie": (ctx.cookies or {}).get("bgcb"),
        "path": ctx.path,
    }


@dash.callback(
    Output("bad-out", "children"),
    Input("bad-btn", "n_clicks"),
    background=True,
    prevent_initial_call=True,
)
def unserialisable(n_clicks):
    return object()


@dash.callback(
    Output("slow-out", "children"),
    Input("slow-btn", "n_clicks"),
    background=True,
    progress=[Output("slow-out", "title")],
    cancel=[Input("prog-cancel", "n_clicks")],
    prevent_initial_call=True,
)
def slow(set_progress, n_clicks):
    for i in range(200):
        set_progress(str(i))
        time.sleep(0.05)
    return "slow finished"


@dash.callback(
    Output("timeout-out", "children"),
    Input("timeout-btn", "n_clicks"),
    background=True,
    manager=timeout_manager,
    progress=[Output("timeout-out", "title")],
    prevent_initial_call=True,
)
def too_slow(set_progress, n_clicks):
    for i in range(100):
        set_progress(str(i))
        time.sleep(0.1)
    return "should have timed out"


@dash.callback(
    Output("keep-out", "children"),
    Input("keep-btn", "n_clicks"),
    background=True,
    manager=keep_manager,
    prevent_initial_call=True,
)
def kept(n_clicks):
    time.sleep(0.5)
    return f"kept {n_clicks}"


@dash.callback(
    Output("echo-out", "children"),
    Input("echo-btn", "n_clicks"),
    State("echo-in", "value"),
    background=True,
    prevent_initial_call=True,
)
def echo(n_clicks, value):
    time.sleep(0.2)
    return f"echo {value} {uuid.uuid4().hex}"


@dash.callback(
    Output("quiet-out", "children"),
    Input("quiet-btn", "n_clicks"),
    background=True,
    cancel=[Input("quiet-cancel", "n_clicks")],
    prevent_initial_call=True,
)
def quiet(n_clicks):
    """Runs ``n_clicks`` tenths of a second and reports nothing meanwhile."""
    time.sleep(n_clicks / 10)
    return f"quiet {n_clicks}"


@dash.callback(
    Output("bound-out", "children"),
    Input("bound-btn", "n_clicks"),
    background=True,
    manager=bounded_manager,
    prevent_initial_call=True,
)
def bounded(n_clicks):
    time.sleep(n_clicks / 10)
    return f"bounded {n_clicks}"


if __name__ == "__main__":
    app.run(debug=False)


def _limited_error(err):
    return f"limited: {err}"


@dash.callback(
    Output("limited-out", "children"),
    Input("limited-btn", "n_clicks"),
    State("limited-in", "value"),
    background=True,
    progress=Output("limited-progress", "children"),
    manager=limited_manager,
    on_error=_limited_error,
    prevent_initial_call=True,
)
def limited(set_progress, n_clicks, tenths):
    _tenths(set_progress, int(tenths or 0))
    return f"limited {n_clicks}"


def _runs(token: str) -> int:
    """Count this run of the job named ``token`` (a file per token: workers are other processes)."""
    import tempfile

    path = os.path.join(tempfile.gettempdir(), f"bgcb-test-runs-{token}")
    with open(path, "a") as f:
        f.write("x")
    with open(path) as f:
        return len(f.read())


@dash.callback(
    Output("flaky-out", "children"),
    Input("flaky-btn", "n_clicks"),
    State("flaky-in", "value"),
    background=True,
    manager=retry_manager,
    prevent_initial_call=True,
)
def flaky(n_clicks, token):
    """Fails its first two runs (``retries=2`` runs it a third time)."""
    run = _runs(token)
    if run <= 2:
        raise RuntimeError(f"flaky run {run}")
    return f"flaky ok on run {run}"


@dash.callback(
    Output("later-out", "children"),
    Input("later-btn", "n_clicks"),
    State("later-in", "value"),
    background=True,
    prevent_initial_call=True,
)
def later(n_clicks, token_and_seconds):
    """Asks to run again in the given seconds on its first run (``"token:seconds"``)."""
    token, _, seconds = str(token_and_seconds).partition(":")
    run = _runs(token)
    if run == 1:
        bgcb.retry_later(float(seconds or 1), "not yet")
    return f"later ok on run {run}"


@dash.callback(
    Output("plain-echo-out", "children"),
    Input("plain-echo-btn", "n_clicks"),
    State("echo-in", "value"),
    prevent_initial_call=True,
)
def plain_echo(n_clicks, value):
    """Not a background callback: what plain Dash accepts, for comparison."""
    return "plain ok"
