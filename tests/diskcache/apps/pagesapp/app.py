"""A multi-page app: callbacks in a pages module and in an imported module
must run in the workers like those in the app module."""

from __future__ import annotations

import logging
import os

import dash
import helpers  # noqa: F401  (defines a background callback)
from dash import Dash, html

import bgcb

logging.getLogger("werkzeug").setLevel(logging.WARNING)

app = Dash(__name__, use_pages=True, background_callback_manager=bgcb.manager("diskcache"))
server = app.server
app.layout = html.Div([dash.page_container, helpers.layout()])

if __name__ == "__main__":
    app.run(host="127.0.0.1", port=int(os.environ.get("DC_PORT", "8050")), debug=False)
