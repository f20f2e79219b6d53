"""The app the diskcache tests serve: run as a script (``python dc_app.py``,
workers autostarted with the app as ``__main__``), under gunicorn
(``gunicorn dc_app:server``) or imported by ``bgcb worker dc_app``.

Configured by the environment: ``BGCB_DISKCACHE_*`` for the backend,
``DC_PORT`` for the script's port, ``DC_LOG`` for a file where each job
appends a line when it starts (to check FIFO order and that cancelled
queued jobs never start)."""

from __future__ import annotations

import json
import logging
import os
import time

import dash
from dash import Dash, Input, Output, State, dcc, html

import bgcb

logging.getLogger("werkzeug").setLevel(logging.WARNING)

manager = bgcb.manager("diskcache")
timeout_manager = bgcb.manager("diskcache", timeout=1.0)
#: A long grace: a cancelled callback that reports no progress must still stop at once, not after it.
patient_manager = bgcb.manager("diskcache", cancel_grace=3.0)

app = Dash(__name__, background_callback_manager=manager)
server = app.server


@server.errorhandler(Exception)
def _show_error(exc):
    """Answer callback errors with their text, as Dash's debug mode shows them."""
    return f"{type(exc).__name__}: {exc}", 500


@server.route("/pid")
def _pid():
    """This web process's pid, after a short pause so that concurrent
    requests spread over gunicorn's workers."""
    time.sleep(0.2)
    return str(os.getpid())


app.layout = html.Div(
    [
        html.Button("stamp", id="stamp-btn"),
        dcc.Input(id="stamp-in"),
        html.Div(id="stamp-out"),
        html.Button("cancel", id="cancel-btn"),
        html.Button("stubborn", id="stubborn-btn"),
        html.Div(id="stubborn-out"),
        html.Div(id="pid-out"),
        html.Button("polite", id="polite-btn"),
        html.Div(id="polite-out"),
        html.Button("timeout", id="timeout-btn"),
        html.Div(id="timeout-out"),
        html.Button("boom", id="boom-btn"),
        html.Div(id="boom-out"),
        html.Button("odd", id="odd-btn"),
        html.Div(id="odd-out"),
    ]
)


def _log(line: str) -> None:
    path = os.environ.get("DC_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


@dash.callback(
    Output("stamp-out", "children"),
    Input("stamp-btn", "n_clicks"),
    State("stamp-in", "value"),
    background=True,
    cancel=[Input("cancel-btn", "n_clicks")],
    prevent_initial_call=True,
)
def stamp(n_clicks, seconds):
    """Sleep ``seconds`` and say when and where it ran."""
    start = time.time()
    _log(f"start {n_clicks}")
    time.sleep(float(seconds or 0))
    return json.dumps({"n": n_clicks, "start": start, "end": time.time(), "pid": os.getpid()})


@dash.callback(
    Output("stubborn-out", "children"),
    Input("stubborn-btn", "n_clicks"),
    background=True,
    manager=patient_manager,
    cancel=[Input("cancel-btn", "n_clicks")],
    prevent_initial_call=True,
)
def stubborn(n_clicks):
    """Never checks for cancel: only killing its worker stops it."""
    dash.set_props("pid-out", {"children": os.getpid()})
    time.sleep(60)
    return "stubborn finished"


@dash.callback(
    Output("polite-out", "children"),
    Input("polite-btn", "n_clicks"),
    background=True,
    progress=[Output("polite-out", "title")],
    cancel=[Input("cancel-btn", "n_clicks")],
    prevent_initial_call=True,
)
def polite(set_progress, n_clicks):
    """Reports progress often, so a cancel stops it cooperatively."""
    for _i in range(600):
        set_progress(str(os.getpid()))
        time.sleep(0.05)
    return "polite finished"


@dash.callback(
    Output("timeout-out", "children"),
    Input("timeout-btn", "n_clicks"),
    background=True,
    manager=timeout_manager,
    prevent_initial_call=True,
)
def blocking_too_long(n_clicks):
    """Blocks without progress calls: the supervisor enforces the timeout."""
    time.sleep(30)
    return "should have timed out"


@dash.callback(Output("boom-out", "children"), Input("boom-btn", "n_clicks"), background=True, prevent_initial_call=True)
def boom(n_clicks):
    """Raises: the page shows the error and the worker logs it with its traceback."""
    raise ValueError(f"boom {n_clicks}")


@dash.callback(Output("odd-out", "children"), Input("odd-btn", "n_clicks"), background=True, prevent_initial_call=True)
def odd(n_clicks):
    """Returns what no JSON encoder takes (as a DataFrame of objects would): an error, logged by the worker."""
    return object()


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("DC_PORT", "8050")), debug=False)
