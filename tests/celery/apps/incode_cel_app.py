"""An app that configures bgcb-celery in code only: no BGCB_* variable names its backend, Redis or queue.

``bgcb worker incode_cel_app`` must serve this configuration (INCODE_REDIS is
the app's own setting, read by the app, not by bgcb).
"""

import os

from dash import Dash, Input, Output, html

import bgcb

url = os.environ["INCODE_REDIS"]
manager = bgcb.manager("celery", broker_url=url, result_url=url, prefix="incode", queue="incode", concurrency=1)
app = Dash(__name__, background_callback_manager=manager)
app.layout = html.Div([html.Button(id="icc-go"), html.Div(id="icc-out")])


@app.callback(Output("icc-out", "children"), Input("icc-go", "n_clicks"), background=True, prevent_initial_call=True)
def where(n):
    return f"{n} ran in pid {os.getpid()}"
