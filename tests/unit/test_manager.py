"""The Dash manager with the in-process backend, through Flask's test client
(the bgcb_manager/bgcb_client fixtures a Dash user gets from bgcb-testing)."""

from __future__ import annotations

import time

import dash
import pytest
from dash import Dash, Input, Output, html

import bgcb
from bgcb import provider
from bgcb.dash_manager import DashManager


class Recorder:
    """An observer plugin: records job events."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str]] = []

    @bgcb.hookimpl
    def bgcb_job_submitted(self, job_id, job):
        self.events.append(("submitted", job_id))

    @bgcb.hookimpl
    def bgcb_job_started(self, job_id, job):
        self.events.append(("started", job_id))

    @bgcb.hookimpl
    def bgcb_job_finished(self, job_id, job, outcome, state, seconds):
        self.events.append((f"finished:{state.value}", job_id))

    @bgcb.hookimpl
    def bgcb_job_cancelled(self, job_id, job):
        self.events.append(("cancelled", job_id))


def _app(manager) -> Dash:
    app = Dash(__name__, background_callback_manager=manager)
    app.layout = html.Div([html.Button(id="m-btn"), html.Div(id="m-out"), html.Div(id="m-bar")])

    @app.callback(
        Output("m-out", "children"),
        Input("m-btn", "n_clicks"),
        background=True,
        progress=[Output("m-bar", "children")],
        prevent_initial_call=True,
    )
    def work(set_progress, n):
        for i in range(3):
            set_progress(str(i))
            dash.set_props("m-bar", {"title": str(i)})
            time.sleep(0.02)
        return f"m {n}"

    return app


def test_one_backend_read_per_poll(bgcb_client) -> None:
    backend = provider.load("testing", fresh=True)
    calls: list[tuple[str, bool]] = []
    backend.pm.add_hookcall_monitoring(lambda name, impls, kw: calls.append((name, kw.get("drain", False))), lambda *a: None)
    manager = DashManager(backend)
    run = bgcb_client(_app(manager)).run([("m-out", "children")], [("m-btn", "n_clicks", 1)])
    assert run.output("m-out", "children") == "m 1"
    polls = [c for c in calls if c == ("bgcb_read", True)]
    assert polls and len(polls) == run.polls, "Dash's four calls per poll must share one backend read"
    manager.close()


def test_observers_hear_job_events(bgcb_client) -> None:
    manager = DashManager(provider.load("testing", fresh=True))
    client = bgcb_client(_app(manager))
    recorder = Recorder()  # registered after the backend was loaded: still hears every job
    provider.register_observer(recorder)
    try:
        run = client.run([("m-out", "children")], [("m-btn", "n_clicks", 2)])
        job = run.job.split("~")[0]
        kinds = [kind for kind, jid in recorder.events if jid == job]
        assert kinds == ["submitted", "started", "finished:succeeded"]
    finally:
        provider.unregister_observer(recorder)
    client.run([("m-out", "children")], [("m-btn", "n_clicks", 3)])
    assert len(recorder.events) == 3, "an unregistered observer hears nothing more"
    manager.close()


def test_fixtures_run_a_background_callback(bgcb_manager, bgcb_client) -> None:
    run = bgcb_client(_app(bgcb_manager)).run([("m-out", "children")], [("m-btn", "n_clicks", 5)])
    assert run.output("m-out", "children") == "m 5"
    assert [p["m-bar.children"] for p in run.progress]
    titles = {u["m-bar"]["title"] for u in run.side_updates}
    assert "2" in titles


def test_bad_on_retrigger_is_explained() -> None:
    with pytest.raises(bgcb.ConfigurationError, match="keep"):
        bgcb.manager("testing", on_retrigger="sometimes")


def test_cli_jobs_lists_queued_and_running(capsys) -> None:
    from bgcb.cli_inspect import jobs_command as _jobs

    backend = provider.load("testing", fresh=True, workers=1)
    from bgcb.jobs import Job

    ids = [backend.submit(Job(callback="0" * 64, args=[])) for _ in range(2)]
    listing = dict(backend.jobs())
    assert set(ids) >= set(listing) or listing == {}
    backend.close()

    class Args:
        backend = "testing"

    assert _jobs(Args()) == 0
    assert "STATE" in capsys.readouterr().out
