"""The app of the fault tests (``test_faults.py``): gunicorn serves it, ``bgcb worker fault_app`` runs its jobs.

Each test gives it a Redis of its own (``CEL_REDIS_URL``), so the default prefix and queue are kept.
``FAULT_ORDERED=1`` orders jobs by owner (the ``X-User`` header, at most two running each), so that
the core's order in Redis (``<prefix>:order:<queue>:*``) is used instead of the broker's list alone.
"""

from __future__ import annotations

import json
import os
import time

import dash
from dash import Dash, Input, Output, State, dcc, html

import bgcb
from bgcb_celery import celery_app_of

URLS = {"result_url": os.environ["CEL_REDIS_URL"], "broker_url": os.environ["CEL_REDIS_URL"]}
ORDERED = {"owner": bgcb.owner_header("X-User"), "max_running_per_owner": 2} if os.environ.get("FAULT_ORDERED") == "1" else {}
manager = bgcb.manager("celery", **URLS, **ORDERED)
cached_manager = bgcb.manager("celery", cache_by=[lambda: "fixed"], **URLS, **ORDERED)
celery_app = celery_app_of(manager)

app = Dash(__name__, background_callback_manager=manager)
server = app.server


@server.errorhandler(Exception)
def _show_error(exc):
    return f"{type(exc).__name__}: {exc}", 500


@server.route("/pid")
def _pid():
    return str(os.getpid())


app.layout = html.Div(
    [
        html.Button(id="slow-btn"),
        dcc.Input(id="slow-in"),
        html.Div(id="slow-out"),
        html.Button(id="cached-btn"),
        html.Div(id="cached-out"),
        html.Button(id="ticker-btn"),
        html.Button(id="ticker-cancel"),
        html.Div(id="ticker-out"),
    ]
)


@dash.callback(
    Output("slow-out", "children"),
    Input("slow-btn", "n_clicks"),
    State("slow-in", "value"),
    background=True,
    progress=[Output("slow-out", "title")],
    prevent_initial_call=True,
)
def slow(set_progress, n, seconds):
    """Sleeps ``seconds``, reporting progress every 0.1 s (updates in Redis while it runs)."""
    end = time.monotonic() + float(seconds or 0)
    step = 0
    while time.monotonic() < end:
        step += 1
        set_progress(str(step))
        time.sleep(0.1)
    return json.dumps({"n": n, "pid": os.getpid()})


@dash.callback(
    Output("cached-out", "children"),
    Input("cached-btn", "n_clicks"),
    background=True,
    manager=cached_manager,
    prevent_initial_call=True,
)
def cached(n):
    return f"cached {n} at {time.time():.6f}"


@dash.callback(
    Output("ticker-out", "children"),
    Input("ticker-btn", "n_clicks"),
    background=True,
    cancel=[Input("ticker-cancel", "n_clicks")],
    progress=[Output("ticker-out", "title")],
    prevent_initial_call=True,
)
def ticker(set_progress, n):
    for i in range(300):
        set_progress(str(i))
        time.sleep(0.1)
    return "ticker finished"
