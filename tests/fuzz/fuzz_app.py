"""The Dash app the HTTP fuzzer attacks, on the backend ``$BGCB_BACKEND`` names.

Workers import this module too (the diskcache pool finds it as the module that
built the managers; ``bgcb worker fuzz_app`` for Celery), so everything here is
built at import time. Its callbacks never raise by themselves: any error a
request answers with comes from bgcb, Dash or the server, and the app's error
handler says which (``FUZZ-CALLBACK-ERROR`` for a background callback's error
as Dash reports it, ``FUZZ-INTERNAL`` with the traceback for anything else).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
import traceback

import dash
from dash import Dash, Input, Output, State, html

import bgcb

BACKEND = os.environ.get("BGCB_BACKEND", "testing")
#: Three workers where the backend takes the option: the victim's job holds one for the whole run.
WORKERS = {"testing": {"workers": 3}, "diskcache": {"workers": 3}}.get(BACKEND, {})
#: Echo and victim: held requests (the gate reads the job before Dash answers).
manager = bgcb.manager(hold=2, **WORKERS)
#: Cached echo: ``cache_by`` and plain polling (no hold).
cached_manager = bgcb.manager(cache_by=[lambda: "fuzz"], expire=60, **WORKERS)
#: Shallow values come back whole; deeper ones only as their summary (Dash's own encoder recurses).
ECHO_DEPTH = 60
#: The victim's job runs until its release file appears, or this many seconds.
VICTIM_SECONDS = 600.0
CALLBACK_ERRORS = ("BackgroundCallbackError", "LongCallbackError")  # Dash 3+, Dash 2.18

app = Dash(__name__, background_callback_manager=manager)
server = app.server  # no secret_key: on Dash 4.4 the handles are signed with the backend's shared secret

app.layout = html.Div(
    [html.Button(id="echo-btn"), html.Div(id="echo-in"), html.Div(id="echo-out"), html.Div(id="plain-out")]
    + [html.Button(id="cached-btn"), html.Div(id="cached-out")]
    + [html.Button(id="victim-btn"), html.Div(id="victim-token"), html.Button(id="victim-cancel"), html.Div(id="victim-out")]
)


@server.errorhandler(Exception)
def _classify(exc):
    """Tell a callback's error (Dash's deliberate 500) from a crash, which shows its traceback."""
    from werkzeug.exceptions import HTTPException

    if isinstance(exc, HTTPException):
        return exc
    if type(exc).__name__ in CALLBACK_ERRORS:
        return f"FUZZ-CALLBACK-ERROR {exc}", 500
    return "FUZZ-INTERNAL " + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)), 500


def summary(value: object) -> dict[str, object]:
    """What ``value`` is, without recursion (it may be nested ~1000 deep): node count, depth, a digest
    of every node's type and text, and the value itself when shallow. Equal summaries: equal values."""
    digest = hashlib.sha256()
    stack: list[tuple[object, int]] = [(value, 1)]
    nodes = depth = 0
    while stack:
        item, level = stack.pop()
        nodes += 1
        depth = max(depth, level)
        if isinstance(item, list):
            digest.update(b"[%d" % len(item))
            stack.extend((x, level + 1) for x in reversed(item))
        elif isinstance(item, dict):
            digest.update(b"{%d" % len(item))
            for key in reversed(list(item)):
                stack.append((item[key], level + 1))
                stack.append((key, level + 1))
        else:
            digest.update(f"{type(item).__name__}:{item!r},".encode("utf-8", "surrogatepass"))
    return {"nodes": nodes, "depth": depth, "sha": digest.hexdigest()[:20], "value": value if depth <= ECHO_DEPTH else None}


def _echo(n_clicks, value):
    return summary([n_clicks, value])


@dash.callback(Output("echo-out", "children"), Input("echo-btn", "n_clicks"), State("echo-in", "children"), background=True)
def echo(n_clicks, value):
    return _echo(n_clicks, value)


@dash.callback(Output("plain-out", "children"), Input("echo-btn", "n_clicks"), State("echo-in", "children"))
def plain(n_clicks, value):
    """The same function as a plain callback: what Dash itself answers for these inputs."""
    return _echo(n_clicks, value)


@dash.callback(
    Output("cached-out", "children"),
    Input("cached-btn", "n_clicks"),
    State("echo-in", "children"),
    background=True,
    manager=cached_manager,
)
def cached(n_clicks, value):
    return _echo(n_clicks, value)


def release_path(token: object) -> str:
    """The file whose existence ends the victim job named ``token`` (hex only: tokens come from requests)."""
    clean = re.sub(r"[^0-9a-f]", "", str(token))[:32] or "none"
    return os.path.join(tempfile.gettempdir(), f"bgcb-fuzz-release-{clean}")


@dash.callback(
    Output("victim-out", "children"),
    Input("victim-btn", "n_clicks"),
    State("victim-token", "children"),
    background=True,
    progress=[Output("victim-out", "title")],
    cancel=[Input("victim-cancel", "n_clicks")],
    prevent_initial_call=True,
)
def victim(set_progress, n_clicks, token):
    """Another user's long job: runs (reporting progress) until its release file appears."""
    path, deadline, step = release_path(token), time.monotonic() + VICTIM_SECONDS, 0
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            return f"victim {token} never released"
        set_progress(str(step))
        step += 1
        time.sleep(0.1)
    return f"victim {token} released"
