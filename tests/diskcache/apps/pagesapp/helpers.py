"""A module the app imports, defining a background callback."""

from __future__ import annotations

import os

import dash
from dash import Input, Output, html


def layout() -> html.Div:
    return html.Div([html.Button("helper", id="helper-btn"), html.Div(id="helper-out")])


@dash.callback(Output("helper-out", "children"), Input("helper-btn", "n_clicks"), background=True, prevent_initial_call=True)
def helper(n_clicks):
    return f"helper {n_clicks} in {os.getpid()}"
