"""The Dash app of the Celery tests; workers run it with
``celery -A cel_app:celery_app worker`` (the documented Celery way)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cel_callbacks  # noqa: F401  (callbacks in a module the app imports)
import dash
from dash import Dash, Input, Output, State, dcc, html

import bgcb
from bgcb_celery import celery_app_of

# Explicit URLs: a backend of its own even when the integration suite's runs in the same process.
URLS = {"result_url": os.environ["CEL_REDIS_URL"], "broker_url": os.environ["CEL_REDIS_URL"]}
manager = bgcb.manager("celery", **URLS)
timeout_manager = bgcb.manager("celery", timeout=1.0, **URLS)
celery_app = celery_app_of(manager)

app = Dash(__name__, background_callback_manager=manager)
server = app.server


@server.errorhandler(Exception)
def _show_error(exc):
    return f"{type(exc).__name__}: {exc}", 500


app.layout = html.Div(
    [
        html.Button(id="quick-btn"),
        html.Div(id="quick-out"),
        html.Button(id="imported-btn"),
        html.Div(id="imported-out"),
        html.Button(id="ticker-btn"),
        dcc.Input(id="ticker-file"),
        html.Button(id="ticker-cancel"),
        html.Div(id="ticker-out"),
        html.Button(id="marker-btn"),
        dcc.Input(id="marker-file"),
        html.Div(id="marker-out"),
        html.Button(id="stepper-btn"),
        dcc.Input(id="stepper-in"),
        html.Div(id="stepper-out"),
        html.Button(id="boom-btn"),
        html.Div(id="boom-out"),
        html.Button(id="hang-btn"),
        html.Div(id="hang-out"),
        html.Button(id="odd-btn"),
        html.Div(id="odd-out"),
        html.Button(id="webonly-btn"),
        html.Div(id="webonly-out"),
    ]
)


@dash.callback(Output("quick-out", "children"), Input("quick-btn", "n_clicks"), background=True, prevent_initial_call=True)
def quick(n):
    return f"quick {n} pid {os.getpid()}"


@dash.callback(
    Output("ticker-out", "children"),
    Input("ticker-btn", "n_clicks"),
    State("ticker-file", "value"),
    background=True,
    cancel=[Input("ticker-cancel", "n_clicks")],
    prevent_initial_call=True,
)
def ticker(n, path):
    """Never calls set_progress: only a forced stop (revoke/terminate) can end it early."""
    for _ in range(600):
        with open(path, "a") as fh:
            fh.write(f"{time.time()}\n")
        time.sleep(0.05)
    return "ticker finished"


@dash.callback(
    Output("marker-out", "children"),
    Input("marker-btn", "n_clicks"),
    State("marker-file", "value"),
    background=True,
    prevent_initial_call=True,
)
def marker(n, path):
    Path(path).write_text("ran")
    return f"marker {n}"


@dash.callback(
    Output("stepper-out", "children"),
    Input("stepper-btn", "n_clicks"),
    State("stepper-in", "value"),
    background=True,
    progress=[Output("stepper-out", "title")],
    prevent_initial_call=True,
)
def stepper(set_progress, n, value):
    for i in range(20):
        set_progress(str(i))
        time.sleep(0.1)
    return f"stepper {value}"


@dash.callback(
    Output("hang-out", "children"),
    Input("hang-btn", "n_clicks"),
    background=True,
    manager=timeout_manager,
    prevent_initial_call=True,
)
def hang(n):
    time.sleep(60)  # no progress calls: the timeout must be enforced from outside
    return "should have timed out"


@dash.callback(Output("boom-out", "children"), Input("boom-btn", "n_clicks"), background=True, prevent_initial_call=True)
def boom(n):
    raise ValueError(f"boom {n}")


@dash.callback(Output("odd-out", "children"), Input("odd-btn", "n_clicks"), background=True, prevent_initial_call=True)
def odd(n):
    return object()  # no JSON encoder takes it (as a DataFrame of objects): an error the worker logs


if os.environ.get("CEL_WEB_ONLY") == "1":  # defined in the web process only, never in workers

    @dash.callback(
        Output("webonly-out", "children"), Input("webonly-btn", "n_clicks"), background=True, prevent_initial_call=True
    )
    def web_only(n):
        return "a worker should not know me"
