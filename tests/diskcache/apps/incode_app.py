"""An app that configures bgcb in code only: no BGCB_* variable names its backend or directory.

``bgcb worker incode_app`` must serve exactly this queue (INCODE_QUEUE is the
app's own setting, read by the app, not by bgcb).
"""

import os

from dash import Dash, Input, Output, html

import bgcb

manager = bgcb.manager("diskcache", directory=os.environ["INCODE_QUEUE"], autostart=False, workers=1)
app = Dash(__name__, background_callback_manager=manager)
app.layout = html.Div([html.Button(id="ic-go"), html.Div(id="ic-out")])


@app.callback(Output("ic-out", "children"), Input("ic-go", "n_clicks"), background=True, prevent_initial_call=True)
def where(n):
    return f"{n} ran in pid {os.getpid()}"


server = app.server
