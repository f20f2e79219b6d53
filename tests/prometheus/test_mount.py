"""``bgcb_prometheus.mount(app)`` on each server Dash runs on: Flask (Dash 2.18+), FastAPI and Quart (Dash 4.4)."""

from __future__ import annotations

import inspect
import urllib.request
from collections.abc import Iterator

import dash
import pytest
from dash import Dash, Input, Output, html
from prom_harness import scrape, value

import bgcb
import bgcb_prometheus
from bgcb_testing import DashClient, LiveServer

SERVERS = ["flask", "fastapi", "quart"]


def _app(kind: str) -> Dash:
    if kind != "flask" and "backend" not in inspect.signature(Dash).parameters:
        pytest.skip(f"Dash {dash.__version__} has no {kind} backend (Dash 4.4+)")
    options = {} if kind == "flask" else {"backend": kind}
    app = Dash(__name__, background_callback_manager=bgcb.manager("testing", workers=1), **options)
    app.layout = html.Div([html.Button(id="go"), html.Div(id="out")])

    @app.callback(Output("out", "children"), Input("go", "n_clicks"), background=True, prevent_initial_call=True)
    def answer(n_clicks: int) -> str:
        return f"done {n_clicks}"

    return app


@pytest.fixture(params=SERVERS)
def served(request) -> Iterator[LiveServer]:
    app = _app(request.param)
    bgcb_prometheus.mount(app)
    bgcb_prometheus.mount(app)  # again: nothing more
    bgcb_prometheus.mount(app.server, path="/internal/metrics")  # a second path, on the server itself
    server = LiveServer(app)
    yield server
    server.stop()


def test_metrics_are_served_beside_the_app(served: LiveServer) -> None:
    before = scrape(served.url + "/metrics")
    run = DashClient.http(served.url).load().run([("out", "children")], [("go", "n_clicks", 3)])
    assert run.output("out", "children") == "done 3"
    after = scrape(served.url + "/metrics")
    outcome = {"callback": "out.children", "outcome": "succeeded"}
    assert value(after, "bgcb_jobs_finished_total", **outcome) == value(before, "bgcb_jobs_finished_total", **outcome) + 1
    assert value(after, "bgcb_jobs_submitted_total", callback="out.children") >= 1
    assert ("bgcb_jobs_queued", (("backend", "testing"),)) in after
    request = urllib.request.Request(served.url + "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
        assert resp.read().decode().rstrip().endswith("# EOF")
    assert value(scrape(served.url + "/internal/metrics"), "bgcb_jobs_finished_total", **outcome) >= 1
    with urllib.request.urlopen(served.url + "/", timeout=10) as resp:
        assert resp.status == 200, "the app still answers"


def test_a_server_without_routing_is_refused() -> None:
    with pytest.raises(TypeError, match="cannot add a route to object"):
        bgcb_prometheus.mount(object())
