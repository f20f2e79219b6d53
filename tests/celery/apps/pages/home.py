from __future__ import annotations

import dash
from dash import Input, Output, html

dash.register_page(__name__, path="/")

layout = html.Div([html.Button(id="page-btn"), html.Div(id="page-out")])


@dash.callback(Output("page-out", "children"), Input("page-btn", "n_clicks"), background=True, prevent_initial_call=True)
def in_a_page(n):
    return f"page {n}"
