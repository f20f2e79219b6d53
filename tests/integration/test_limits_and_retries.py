"""Queue limits, running caps, retries and retry-later, through a real Dash app served over HTTP,
on the backend named by ``$BGCB_BACKEND`` (``testing`` by default)."""

from __future__ import annotations

import time
import uuid

import pytest

from bgcb_testing import DashClient


def _job(handles: dict) -> str:
    return str(handles["job"]).split("~")[0]


def _until(check, what: str, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _needs(backend, capability: str) -> None:
    if capability not in backend.capabilities():
        pytest.skip(f"backend {backend.name!r} does not declare {capability!r}")


def test_past_an_owners_limits_a_job_is_refused_with_a_message_and_nothing_queued_is_lost(live_server, feature_app) -> None:
    """``max_running_per_owner=1, max_queued_per_owner=2``: carol's first job runs, her next two wait
    (workers are free, but her cap is reached), her fourth is refused at once through ``on_error``;
    dave's job still starts; carol's waiting jobs then all run."""
    from bgcb.jobs import State

    backend = feature_app.limited_manager.backend
    _needs(backend, "running_limits")
    outputs = [("limited-out", "children")]

    def click(client: DashClient, n: int, tenths: int) -> dict:
        return client.start(outputs, [("limited-btn", "n_clicks", n)], [("limited-in", "value", tenths)])

    carol = DashClient.http(live_server.url, headers={"X-Bgcb-User": "carol"}).load()
    first = _job(click(carol, 1, 150))  # 15 s: it runs until the test cancels it
    _until(lambda: backend.status(first).state is State.RUNNING, "carol's first job never started")
    waiting = [_job(click(carol, n, 1)) for n in (2, 3)]
    time.sleep(0.5)  # free workers would have taken them by now, were it not for her cap
    assert [backend.status(j).state for j in waiting] == [State.QUEUED, State.QUEUED]

    refused = carol.run(outputs, [("limited-btn", "n_clicks", 4)], [("limited-in", "value", 1)], timeout=10)
    text = refused.output("limited-out", "children")
    print(f"refused: {text}; after {refused.requests} request(s)")
    assert refused.final.status == 200 and text.startswith("limited: ") and "2 jobs waiting" in text, text
    assert [backend.status(j).state for j in waiting] == [State.QUEUED, State.QUEUED], "a refusal touched queued jobs"

    dave = DashClient.http(live_server.url, headers={"X-Bgcb-User": "dave"}).load()
    theirs = _job(click(dave, 1, 1))
    _until(lambda: backend.status(theirs).state is State.SUCCEEDED, "dave's job waited behind carol's cap")
    assert backend.status(waiting[0]).state is State.QUEUED, "carol's cap let a second job of hers run"

    backend.cancel(first)
    for job in waiting:
        _until(lambda job=job: backend.status(job).state is State.SUCCEEDED, "a waiting job of carol's was lost")
    a, b = (backend.status(j) for j in waiting)
    assert a.finished_at is not None and b.started_at is not None and b.started_at >= a.finished_at - 0.05, (a, b)


def test_a_failed_job_runs_again_up_to_retries(client: DashClient, feature_app) -> None:
    """``retries=2``: a callback that fails twice succeeds on its third run; the page shows no error."""
    from bgcb.jobs import State

    backend = feature_app.retry_manager.backend
    _needs(backend, "deferral")
    token = uuid.uuid4().hex
    run = client.run([("flaky-out", "children")], [("flaky-btn", "n_clicks", 1)], [("flaky-in", "value", token)], timeout=30)
    assert run.output("flaky-out", "children") == "flaky ok on run 3"
    status = backend.status(_job(run.handles))
    assert status.state is State.SUCCEEDED and status.attempt == 3, status


def test_a_retry_later_job_frees_its_worker_while_it_waits(client: DashClient, feature_app) -> None:
    """As many jobs as there are workers each ask to run again in 4 s; meanwhile another job runs
    and ends (it could not, were a worker holding any of them); then each succeeds on its second run."""
    from bgcb.jobs import State

    backend = feature_app.manager.backend
    _needs(backend, "deferral")
    workers = backend.capacity() or 2
    outputs = [("later-out", "children")]
    later = []
    for n in range(workers):
        handles = client.start(outputs, [("later-btn", "n_clicks", n + 1)], [("later-in", "value", f"{uuid.uuid4().hex}:4")])
        later.append((handles, _job(handles)))
    _until(lambda: all(backend.status(j).retry_at for _, j in later), "the jobs did not ask to run again")
    due = min(backend.status(j).retry_at or 0 for _, j in later)
    meanwhile = client.run([("simple-out", "children")], [("simple-btn", "n_clicks", 7)], timeout=10)
    ended = time.time()
    assert meanwhile.output("simple-out", "children") == "done 7"
    print(f"retry later: another job ended {due - ended:.2f} s before the {workers} waiting jobs were due")
    assert ended < due, "the other job had to wait for the retrying jobs"
    assert all(backend.status(j).state is State.QUEUED for _, j in later)
    for handles, job in later:
        run = client.run(outputs, [("later-btn", "n_clicks", 1)], [("later-in", "value", "x")], handles=handles, timeout=30)
        assert run.output("later-out", "children") == "later ok on run 2"
        assert backend.status(job).state is State.SUCCEEDED
