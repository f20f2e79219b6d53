"""Hostile requests, generated: any callback input, job handle, cache key, oldJob or cancelJob a browser could send.

Through a real Dash app (Flask's test client, the in-process backend), on
each Dash version the nox ``tests`` session installs. Whatever arrives, bgcb
answers without crashing (a 500 only as its deliberate "unknown job" error),
and another user's job is never touched.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import bgcb  # noqa: E402
from bgcb.jobs import State  # noqa: E402
from bgcb_testing import DashClient  # noqa: E402

ECHO = [("fz-out", "children")]
SLOW = [("fz-slow-out", "children")]
#: JSON values as a browser can send them (no NaN: JSON has none).
JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=30,
)
HANDLE = st.text(max_size=80) | st.from_regex(r"[A-Za-z0-9_-]{24}(~[0-9a-f]{64})?", fullmatch=True)
SLOW_OK = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=SLOW_OK)


@pytest.fixture(scope="module")
def app() -> Iterator[object]:
    from dash import Dash, Input, Output, html
    from dash import State as DashState

    manager = bgcb.manager("testing", workers=2)
    dash_app = Dash(__name__, background_callback_manager=manager)
    dash_app.bgcb_fuzz_manager = manager  # type: ignore[attr-defined]

    @dash_app.server.errorhandler(Exception)
    def _show(exc):
        """Callback errors with their text (as debug mode shows them), so a test can tell bgcb's answer from a crash."""
        return f"{type(exc).__name__}: {exc}", 500

    dash_app.server.secret_key = "fuzz"
    dash_app.layout = html.Div(
        [html.Button(id="fz-btn"), html.Div(id="fz-in"), html.Div(id="fz-out")]
        + [html.Button(id="fz-slow-btn"), html.Button(id="fz-cancel"), html.Div(id="fz-slow-out")]
    )

    @dash_app.callback(Output("fz-out", "children"), Input("fz-btn", "n_clicks"), DashState("fz-in", "children"), background=True)
    def echo(n_clicks, value):
        return json.dumps(value, sort_keys=True)

    @dash_app.callback(
        Output("fz-slow-out", "children"),
        Input("fz-slow-btn", "n_clicks"),
        background=True,
        cancel=[Input("fz-cancel", "n_clicks")],
        progress=[Output("fz-slow-out", "title")],
    )
    def slow(set_progress, n_clicks):
        for i in range(600):
            set_progress(str(i))
            time.sleep(0.05)
        return "slow finished"

    yield dash_app
    manager.close()


@pytest.fixture(scope="module")
def victim(app) -> Iterator[tuple[DashClient, dict]]:
    """Another user's running job, which no fuzzed request may touch."""
    client = DashClient.wsgi(app).load()
    handles = client.start(SLOW, [("fz-slow-btn", "n_clicks", 1)])
    yield client, handles
    client.cancel(("fz-cancel", "n_clicks"), handles["job"])


def _sane(resp) -> None:
    """A deliberate answer: no update, a normal one, or bgcb's 'unknown job' error; never a crash."""
    if resp.status == 500:
        assert "unknown to the backend" in resp.text, resp.text[:2000]
    else:
        assert resp.status in (200, 204), (resp.status, resp.text[:2000])


def _untouched(victim: tuple[DashClient, dict], app) -> None:
    job = victim[1]["job"].split("~")[0]
    state = app.bgcb_fuzz_manager.backend.status(job).state
    assert state in (State.QUEUED, State.RUNNING), f"another user's job was touched: it is {state.value}"


@FUZZ
@given(value=JSON)
def test_any_input_runs_or_fails_only_its_callback(app, value) -> None:
    client = DashClient.wsgi(app).load()
    run = client.run(ECHO, [("fz-btn", "n_clicks", 1)], [("fz-in", "children", value)], interval=0.005, timeout=30)
    _sane(run.final)
    if run.final.status == 200:
        assert json.loads(run.output("fz-out", "children")) == json.loads(json.dumps(value, sort_keys=True))


@FUZZ
@given(job=HANDLE, cache_key=st.text(max_size=80))
@example(job="é~00", cache_key="ü")
def test_forged_poll_handles_are_answered_and_touch_no_job(app, victim, job, cache_key) -> None:
    client = DashClient.wsgi(app).load()
    query = {"cacheKey": cache_key, "job": job}
    resp = client.request(ECHO, [("fz-btn", "n_clicks", None)], [("fz-in", "children", None)], query=query)
    _sane(resp)
    _untouched(victim, app)


@FUZZ
@given(old=st.lists(HANDLE, max_size=3), cancel=st.lists(HANDLE, max_size=3), value=JSON)
@example(old=[], cancel=["~\x80"], value=None)  # found by this test: Dash 4.4's signature check raised on non-ASCII
def test_forged_old_and_cancel_jobs_touch_no_other_users_job(app, victim, old, cancel, value) -> None:
    client = DashClient.wsgi(app).load()
    first = client.request(ECHO, [("fz-btn", "n_clicks", 1)], [("fz-in", "children", value)], query={"oldJob": old})
    _sane(first)
    _sane(client.request([("fz-cancel", "id")], [("fz-cancel", "n_clicks", 1)], query={"cancelJob": cancel}))
    _untouched(victim, app)
