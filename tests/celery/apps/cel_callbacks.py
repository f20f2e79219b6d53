"""Callbacks in a module the app imports: workers must know them too."""

from __future__ import annotations

import dash
from dash import Input, Output


@dash.callback(Output("imported-out", "children"), Input("imported-btn", "n_clicks"), background=True, prevent_initial_call=True)
def imported(n):
    return f"imported {n}"
