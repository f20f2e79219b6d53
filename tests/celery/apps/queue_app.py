"""An app for the queue features on Celery: jobs run again later (``retry_later``, ``retries=``) and an
owner's running limit (``max_running_per_owner``).

Two backends of their own (queue and key prefix each), so that each test's worker serves only its jobs:
``bgcb-qr`` (plain first in first out: retries) and ``bgcb-qc`` (owners from the ``X-User`` header, one
running job per owner). Callbacks log ``name event time`` lines to the file given in ``qa-log``.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import dash
from dash import Dash, Input, Output, State, dcc, html

import bgcb
from bgcb_celery import celery_app_of

URLS = {"result_url": os.environ["CEL_REDIS_URL"], "broker_url": os.environ["CEL_REDIS_URL"]}
RETRY = {"queue": "bgcb-qr", "prefix": "bgcb-qr", **URLS}
CAPS = {"queue": "bgcb-qc", "prefix": "bgcb-qc", **URLS}

later_manager = bgcb.manager("celery", **RETRY)
flaky_manager = bgcb.manager("celery", retries=2, retry_delay=0.2, **RETRY)
capped_manager = bgcb.manager("celery", owner=bgcb.owner_header("X-User"), max_running_per_owner=1, **CAPS)
retry_celery = celery_app_of(later_manager)
caps_celery = celery_app_of(capped_manager)

app = Dash(__name__, background_callback_manager=later_manager)


@app.server.errorhandler(Exception)
def _show_error(exc):
    return f"{type(exc).__name__}: {exc}", 500


app.layout = html.Div(
    [dcc.Input(id="qa-log"), dcc.Input(id="qa-name")]
    + [html.Button(id=f"{name}-btn") for name in ("later", "quick", "flaky", "slow", "clater")]
    + [html.Div(id=f"{name}-out") for name in ("later", "quick", "flaky", "slow", "clater")]
)


def log(path: str, name: str, event: str) -> None:
    with open(path, "a") as fh:
        fh.write(f"{name} {event} {time.time():.6f}\n")


def runs(path: str, name: str) -> int:
    """How many runs of ``name`` started before this one."""
    file = Path(path)
    return sum(1 for line in file.read_text().splitlines() if line.startswith(f"{name} start")) if file.exists() else 0


def _again(n, path, name, seconds):
    """Run again ``seconds`` later the first time, without holding the worker; then succeed."""
    first = runs(path, name) == 0
    log(path, name, "start")
    if first:
        log(path, name, "deferred")
        log(path, name, "end")
        bgcb.retry_later(seconds, "not ready yet")
    log(path, name, "end")
    return f"{name} done"


@dash.callback(
    Output("later-out", "children"),
    Input("later-btn", "n_clicks"),
    State("qa-log", "value"),
    State("qa-name", "value"),
    background=True,
    prevent_initial_call=True,
)
def later(n, path, name):
    return _again(n, path, name, 1.0)


@dash.callback(
    Output("quick-out", "children"),
    Input("quick-btn", "n_clicks"),
    State("qa-log", "value"),
    State("qa-name", "value"),
    background=True,
    prevent_initial_call=True,
)
def quick(n, path, name):
    log(path, name, "start")
    time.sleep(0.3)
    log(path, name, "end")
    return f"{name} done"


@dash.callback(
    Output("flaky-out", "children"),
    Input("flaky-btn", "n_clicks"),
    State("qa-log", "value"),
    State("qa-name", "value"),
    background=True,
    manager=flaky_manager,
    prevent_initial_call=True,
)
def flaky(n, path, name):
    before = runs(path, name)
    log(path, name, "start")
    if before < 2:
        raise ValueError(f"flaky failure {before + 1}")
    return f"{name} done after {before + 1} runs"


@dash.callback(
    Output("slow-out", "children"),
    Input("slow-btn", "n_clicks"),
    State("qa-log", "value"),
    State("qa-name", "value"),
    background=True,
    manager=capped_manager,
    prevent_initial_call=True,
)
def slow(n, path, name):
    log(path, name, "start")
    time.sleep(1.0)
    log(path, name, "end")
    return f"{name} done"


@dash.callback(
    Output("clater-out", "children"),
    Input("clater-btn", "n_clicks"),
    State("qa-log", "value"),
    State("qa-name", "value"),
    background=True,
    manager=capped_manager,
    prevent_initial_call=True,
)
def capped_later(n, path, name):
    return _again(n, path, name, 1.5)
