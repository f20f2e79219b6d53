"""A Dash page with its own background callback."""

from __future__ import annotations

import os

import dash
from dash import Input, Output, html

dash.register_page(__name__, path="/")

layout = html.Div([html.Button("report", id="report-btn"), html.Div(id="report-out")])


@dash.callback(Output("report-out", "children"), Input("report-btn", "n_clicks"), background=True, prevent_initial_call=True)
def report(n_clicks):
    return f"report {n_clicks} in {os.getpid()}"
