"""A multi-page app (``use_pages=True``) whose background callback lives in a pages module."""

from __future__ import annotations

from pathlib import Path

import dash
from dash import Dash, html

import bgcb

manager = bgcb.manager("celery", queue="bgcb-pages", prefix="bgcb-pages")
app = Dash(__name__, use_pages=True, pages_folder=str(Path(__file__).parent / "pages"), background_callback_manager=manager)
app.layout = html.Div([dash.page_container])
