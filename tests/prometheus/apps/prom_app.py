"""The app of the bgcb-prometheus tests: callbacks of known outcomes, and ``/metrics`` mounted on its server.

The backend is ``BGCB_BACKEND`` (diskcache or celery, configured by the
environment); gunicorn serves ``prom_app:server`` and ``bgcb worker prom_app``
runs its jobs.
"""

from __future__ import annotations

import time

import dash
from dash import Dash, Input, Output, State, dcc, html

import bgcb
import bgcb_prometheus

manager = bgcb.manager()
#: A second manager on the same store (other options): the queue gauges must read it once.
timeout_manager = bgcb.manager(timeout=1.0)

app = Dash(__name__, background_callback_manager=manager)
server = app.server
bgcb_prometheus.mount(app)

app.layout = html.Div(
    [
        html.Button(id="ok-btn"),
        dcc.Input(id="ok-in"),
        html.Div(id="ok-out"),
        html.Button(id="boom-btn"),
        html.Div(id="boom-out"),
        html.Button(id="slow-btn"),
        html.Button(id="slow-cancel"),
        html.Div(id="slow-out"),
        html.Button(id="hang-btn"),
        html.Div(id="hang-out"),
    ]
)


@dash.callback(
    Output("ok-out", "children"), Input("ok-btn", "n_clicks"), State("ok-in", "value"), background=True, prevent_initial_call=True
)
def ok(n_clicks, seconds):
    time.sleep(float(seconds or 0))
    return f"ok {n_clicks}"


@dash.callback(Output("boom-out", "children"), Input("boom-btn", "n_clicks"), background=True, prevent_initial_call=True)
def boom(n_clicks):
    raise ValueError(f"boom {n_clicks}")


@dash.callback(
    Output("slow-out", "children"),
    Input("slow-btn", "n_clicks"),
    background=True,
    progress=[Output("slow-out", "title")],
    cancel=[Input("slow-cancel", "n_clicks")],
    prevent_initial_call=True,
)
def slow(set_progress, n_clicks):
    """Reports progress often: a cancel stops it at its next report."""
    for i in range(600):
        set_progress(str(i))
        time.sleep(0.05)
    return "slow finished"


@dash.callback(
    Output("hang-out", "children"),
    Input("hang-btn", "n_clicks"),
    background=True,
    manager=timeout_manager,
    prevent_initial_call=True,
)
def hang(n_clicks):
    """Blocks past its manager's 1 s timeout without a progress call: the backend stops it."""
    time.sleep(30)
    return "hang finished"
