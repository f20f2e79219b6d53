"""The Celery test app with RabbitMQ as the broker (Redis still holds job state)."""

from __future__ import annotations

import os
import time

import dash
from dash import Dash, Input, Output, html

import bgcb

manager = bgcb.manager(
    "celery",
    broker_url=os.environ["RABBIT_BROKER_URL"],
    queue=os.environ.get("RABBIT_QUEUE", "bgcb-rabbit"),
    prefix="bgcb-rabbit",
)
app = Dash(__name__, background_callback_manager=manager)
app.layout = html.Div(
    [
        html.Button(id="r-btn"),
        html.Div(id="r-out"),
        html.Button(id="r-slow"),
        html.Button(id="r-cancel"),
        html.Div(id="r-slow-out"),
    ]
)


@dash.callback(Output("r-out", "children"), Input("r-btn", "n_clicks"), background=True, prevent_initial_call=True)
def via_rabbit(n):
    return f"rabbit {n}"


@dash.callback(
    Output("r-slow-out", "children"),
    Input("r-slow", "n_clicks"),
    background=True,
    progress=[Output("r-slow-out", "title")],
    cancel=[Input("r-cancel", "n_clicks")],
    prevent_initial_call=True,
)
def slow_rabbit(set_progress, n):
    for i in range(100):
        set_progress(str(i))
        time.sleep(0.1)
    return "slow done"
