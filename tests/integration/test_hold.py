"""``bgcb.manager(hold=...)``: results in the first answer or a held poll, cancel at every
moment, a bound on held requests, and a free event loop, on every server and backend.

Runs when the suite runs with ``BGCB_TEST_HOLD`` set (nox runs it both ways).
The feature app's first wait is 1 s (``hold_first``) so that a test can act
inside it; the assertions count requests and states, never durations.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from bgcb_testing import DashClient

QUIET = [("quiet-out", "children")]
QUIET_CANCEL = ("quiet-cancel", "n_clicks")


@pytest.fixture(autouse=True)
def _hold_on(feature_app) -> None:
    if not feature_app.HOLD:
        pytest.skip("the suite runs without hold (set BGCB_TEST_HOLD=seconds)")


def _until(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.01)


def _in_thread(fn: Callable[[], Any]) -> tuple[threading.Thread, dict[str, Any]]:
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.update(value=fn()), daemon=True)
    thread.start()
    return thread, box


def test_quick_job_is_in_the_first_answer(client: DashClient) -> None:
    run = client.run([("simple-out", "children")], [("simple-btn", "n_clicks", 7)])
    assert run.requests == 1 and run.polls == 0
    assert run.output("simple-out", "children") == "done 7"
    assert {"cacheKey", "job"} <= set(run.handles), "the renderer keeps the handles it would have polled with"


def test_cache_hit_is_in_the_first_answer(client: DashClient) -> None:
    outputs = [("cache-out", "children")]
    inputs, state = [("cache-btn", "n_clicks", 1)], [("cache-in", "value", "hold"), ("cache-ignored", "value", "x")]
    first = client.run(outputs, inputs, state)
    again = client.run(outputs, inputs, state)
    assert again.requests == 1
    assert again.output("cache-out", "children") == first.output("cache-out", "children")


def test_progress_and_set_props_arrive_from_held_answers(client: DashClient) -> None:
    run = client.run([("props-out", "children")], [("props-btn", "n_clicks", 3)], interval=1.0)
    merged: dict = {}
    for side in run.side_updates:
        for cid, props in side.items():
            merged.setdefault(cid, {}).update(props)
    assert merged == {"props-a": {"children": "a1", "title": "t1"}, "props-b": {"children": "b1"}}
    run = client.run([("prog-out", "children")], [("prog-btn", "n_clicks", 4)], interval=1.0)
    assert run.output("prog-out", "children") == "progressed 4" and run.progress


def test_a_job_without_progress_takes_at_most_three_requests(client: DashClient) -> None:
    """At the renderer's default interval (1 s) a 1.2 s job ends inside a held poll."""
    run = client.run(QUIET, [("quiet-btn", "n_clicks", 12)], interval=1.0)
    assert run.output("quiet-out", "children") == "quiet 12"
    assert run.requests <= 3, run.requests


def test_cancel_while_the_first_request_is_held(client: DashClient, feature_app) -> None:
    """The page cannot name the job yet; the click still reaches it through the gate."""
    holding = feature_app.manager.holding
    if not client.end_id:  # Dash before 4.4: no page identity, so a job with cancel inputs is not held at first
        handles = client.start(QUIET, [("quiet-btn", "n_clicks", 40)])
        assert holding.held == 0
        client.cancel(QUIET_CANCEL, handles["job"])
        assert client.poll(handles, QUIET, [("quiet-btn", "n_clicks", 40)]).status == 204
        return
    thread, box = _in_thread(lambda: client.request(QUIET, [("quiet-btn", "n_clicks", 40)]))
    _until(lambda: holding.held == 1, "the first request is held")
    client.request([("quiet-cancel", "id")], [("quiet-cancel", "n_clicks", 1)])  # no cancelJob: no handle yet
    thread.join(10)
    assert box["value"].status == 204, "the held answer ends as cancelled, with no update"


def test_cancel_while_a_poll_is_held(client: DashClient, feature_app) -> None:
    holding = feature_app.manager.holding
    handles = client.start(QUIET, [("quiet-btn", "n_clicks", 40)])
    thread, box = _in_thread(lambda: client.poll(handles, QUIET, [("quiet-btn", "n_clicks", 40)]))
    _until(lambda: holding.held == 1, "the poll is held")
    client.cancel(QUIET_CANCEL, handles["job"])
    thread.join(10)
    assert box["value"].status == 204


def test_cancel_between_polls(client: DashClient) -> None:
    handles = client.start(QUIET, [("quiet-btn", "n_clicks", 40)])
    client.cancel(QUIET_CANCEL, handles["job"])
    assert client.poll(handles, QUIET, [("quiet-btn", "n_clicks", 40)]).status == 204


def test_held_requests_are_bounded(client: DashClient, feature_app) -> None:
    """Past ``hold_max`` a poll is answered at once, as without hold."""
    outputs, holding = [("bound-out", "children")], feature_app.bounded_manager.holding
    jobs = [client.start(outputs, [("bound-btn", "n_clicks", 30)]) for _ in range(2)]
    answers: queue.Queue = queue.Queue()
    for handles in jobs:
        threading.Thread(
            target=lambda h=handles: answers.put(client.poll(h, outputs, [("bound-btn", "n_clicks", 30)])), daemon=True
        ).start()
    quick = answers.get(timeout=10)
    assert quick.status == 200 and "response" not in quick.body, "the unheld poll answers 'still running'"
    assert holding.held == 1, "the other poll is still held"
    answers.get(timeout=10)


def test_a_held_request_leaves_the_server_free(client: DashClient, feature_app, live_server) -> None:
    """On FastAPI and Quart a held poll must not block the event loop; on Flask it keeps one thread."""
    holding = feature_app.manager.holding
    handles = client.start(QUIET, [("quiet-btn", "n_clicks", 30)])
    thread, _ = _in_thread(lambda: client.poll(handles, QUIET, [("quiet-btn", "n_clicks", 30)]))
    _until(lambda: holding.held == 1, "the poll is held")
    other = DashClient.http(live_server.url).load()
    assert other.dependencies(), "the page loads while a poll is held"
    assert other.run([("simple-out", "children")], [("simple-btn", "n_clicks", 2)]).output("simple-out", "children")
    assert holding.held == 1, "both answered while the poll was still held"
    client.cancel(QUIET_CANCEL, handles["job"])
    thread.join(10)


def test_firing_again_while_the_first_request_is_held_ends_the_held_job(client: DashClient, feature_app) -> None:
    """What ``oldJob`` does for a job the page knows, the gate does for the one it does not know yet."""
    if not client.end_id:
        pytest.skip("Dash before 4.4: a first request with cancel inputs is not held")
    holding = feature_app.manager.holding
    thread, box = _in_thread(lambda: client.request(QUIET, [("quiet-btn", "n_clicks", 40)]))
    _until(lambda: holding.held == 1, "the first request is held")
    second = client.request(QUIET, [("quiet-btn", "n_clicks", 41)])
    thread.join(10)
    assert box["value"].status == 204, "the first job ended as cancelled"
    assert second.status == 200 and "job" in second.body
    client.cancel(QUIET_CANCEL, second.body["job"])
