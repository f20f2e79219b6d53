"""An app that imports in the web process but fails to import in the worker
pool (a missing setting, a module only the web host has): every job must end
with that reason instead of spinning forever."""

from __future__ import annotations

import os

import dash
from dash import Dash, Input, Output, html

import bgcb

if os.environ.get("BGCB_DISKCACHE_IN_POOL"):
    raise RuntimeError("SETTING_X is not set in the worker environment")

app = Dash(__name__, background_callback_manager=bgcb.manager("diskcache"))
server = app.server
app.layout = html.Div([html.Button(id="go"), html.Div(id="out")])


@server.errorhandler(Exception)
def _show_error(exc):
    return f"{type(exc).__name__}: {exc}", 500


@dash.callback(Output("out", "children"), Input("go", "n_clicks"), background=True, prevent_initial_call=True)
def go(n_clicks):
    return "never here"


if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("DC_PORT", "8050")), debug=False)
