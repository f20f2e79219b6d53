"""An app with its own queue and key prefix, for a worker the test kills outright."""

from __future__ import annotations

import os
import time

import dash
from dash import Dash, Input, Output, html

import bgcb

manager = bgcb.manager(
    "celery",
    result_url=os.environ["CEL_REDIS_URL"],
    broker_url=os.environ["CEL_REDIS_URL"],
    queue="bgcb-kill",
    prefix="bgcb-kill",
)
app = Dash(__name__, background_callback_manager=manager)


@app.server.errorhandler(Exception)
def _show_error(exc):
    return f"{type(exc).__name__}: {exc}", 500


app.layout = html.Div([html.Button(id="k-btn"), html.Div(id="k-out"), html.Button(id="k-quick"), html.Div(id="k-quick-out")])


@dash.callback(Output("k-out", "children"), Input("k-btn", "n_clicks"), background=True, prevent_initial_call=True)
def long_job(n):
    time.sleep(60)
    return "should not finish"


@dash.callback(Output("k-quick-out", "children"), Input("k-quick", "n_clicks"), background=True, prevent_initial_call=True)
def quick_job(n):
    return f"quick {n}"
